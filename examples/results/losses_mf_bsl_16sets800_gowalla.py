"""Experiment: t6-mf-bsl with 16 sets of shared negatives instead of one (validation protocol)."""

import importlib.util
import json
import sys

spec = importlib.util.spec_from_file_location("reproduce", "examples/reproduce.py")
mod = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = mod
spec.loader.exec_module(mod)
rec = mod.run_cell(mod.BY_ID["t6-mf-bsl"], 2700, overrides={"shared_negatives": 16})
json.dump(rec, open("runs/s6/bsl16.json", "w"), indent=1)
print(rec["test"])
