"""Probe: MF + CCL (table 6) with one loss argument changed, validation protocol.

The cell ``t6-mf-ccl`` with ``KEY=VALUE`` overriding its loss arguments, ``EPOCHS`` epochs,
test metrics at each evaluation (read only; the choice would be made on validation).
Compare with the same epochs of ``results/repro/t6-mf-ccl.json`` (same seed and split).

    python examples/results/ccl_margin_probe/probe.py margin 0.8 20
    python examples/results/ccl_margin_probe/probe.py margin 0.7 200 1500  # a budget (s)
"""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("reproduce", "examples/reproduce.py")
mod = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = mod
spec.loader.exec_module(mod)
if len(sys.argv) not in (4, 5):
    sys.exit(__doc__)
key, value, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
budget = float(sys.argv[4]) if len(sys.argv) > 4 else None
suffix = f"-{budget:g}s" if budget else ""
out = Path(__file__).parent / f"mf-ccl-{key}={value:g}-{epochs}ep{suffix}.json"
if out.exists():
    sys.exit(f"{out} exists: nothing to do")
cell = dataclasses.replace(
    mod.BY_ID["t6-mf-ccl"], id=f"x-mf-ccl-{key}={value:g}{suffix}", epochs=epochs
)
rec = mod.run_cell(cell, budget, overrides={key: value})
out.write_text(json.dumps(rec, indent=1))
print(rec["test"])
