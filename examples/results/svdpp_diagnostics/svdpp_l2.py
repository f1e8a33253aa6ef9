"""Experiment: user-side SVD++ [a0, 0] + SSM with the reference code's reg (validation protocol)."""

import dataclasses
import importlib.util
import json
import sys

spec = importlib.util.spec_from_file_location("reproduce", "examples/reproduce.py")
mod = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = mod
spec.loader.exec_module(mod)
a0 = float(sys.argv[1])
l2 = float(sys.argv[2])
tau = float(sys.argv[3])
budget = float(sys.argv[4])
cell = dataclasses.replace(
    mod.BY_ID["t2-svdpp-ssm"],
    id=f"x-svdpp-a{a0}-l2{l2}-t{tau}",
    l2=l2,
    model_kwargs={"alpha0": a0, "alpha1": 0.0},
)
rec = mod.run_cell(cell, budget, overrides={"tau": tau})
json.dump(rec, open(f"runs/s7/{cell.id}.json", "w"), indent=1)
print(rec["test"])
