"""Probe one hyperparameter of a reproduction cell under the validation protocol.

Runs the cell of ``examples/reproduce.py`` with one setting changed — a field of its
``Cell`` (``l2``, ``lr``, ``sampling``, …) or else one of its loss arguments — for ``EPOCHS``
epochs (or until its early stopping, or a ``BUDGET`` in seconds), on the same seed and
validation carve as the cell itself. The record (validation and test history; test is read,
never used for a choice) goes to ``OUT_DIR/<cell>-<key>=<value>-<epochs>ep[-<budget>s].json``;
compare it with the same epochs of ``results/repro/<cell>.json``.

    python examples/results/probe.py t2-mf-bpr l2 1e-5 65 examples/results/bpr_l2_probe
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any


def _reproduce() -> Any:
    spec = importlib.util.spec_from_file_location(
        "reproduce", Path(__file__).resolve().parents[1] / "reproduce.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = mod
    spec.loader.exec_module(mod)
    return mod


def _parse(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def probe(
    cell_id: str, key: str, value: Any, epochs: int, out_dir: Path, budget: float | None = None
) -> Path:
    """Train the probe (unless its record exists) and return the record's path."""
    mod = _reproduce()
    suffix = f"-{budget:g}s" if budget else ""
    tag = f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
    out = out_dir / f"{cell_id}-{tag}-{epochs}ep{suffix}.json"
    if out.exists():
        print(f"{out} exists: nothing to do")
        return out
    base = mod.BY_ID[cell_id]
    changes: dict[str, Any] = {"id": f"x-{cell_id}-{tag}{suffix}", "epochs": epochs}
    overrides = None
    if key in {f.name for f in dataclasses.fields(base)}:
        changes[key] = value
    else:  # a loss argument
        overrides = {key: value}
    rec = mod.run_cell(dataclasses.replace(base, **changes), budget, overrides=overrides)
    rec["probe"] = {"base_cell": cell_id, key: value}
    out_dir.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1))
    print(rec["test"])
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    cell_id, key, value, epochs, out_dir = sys.argv[1:6]
    probe(
        cell_id,
        key,
        _parse(value),
        int(epochs),
        Path(out_dir),
        float(sys.argv[6]) if len(sys.argv) > 6 else None,
    )
