"""Diagnostic: user-side SVD++ [a0, 0] + SSM, in-batch false negatives not masked."""

import dataclasses
import importlib.util
import json
import sys

spec = importlib.util.spec_from_file_location("reproduce", "examples/reproduce.py")
mod = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = mod
spec.loader.exec_module(mod)
a0 = float(sys.argv[1])
budget = float(sys.argv[2])
model = sys.argv[3] if len(sys.argv) > 3 else "svdpp-user"
cell = dataclasses.replace(
    mod.BY_ID["t4-user-0.5-0.0"],
    id=f"x-{model}-a{a0}-nomask",
    model=model,
    model_kwargs={"alpha0": a0, "alpha1": 0.0} if model != "mf" else {},
)
rec = mod.run_cell(cell, budget, overrides={"mask_collisions": False})
json.dump(rec, open(f"runs/s7/{cell.id}.json", "w"), indent=1)
print(rec["test"])
