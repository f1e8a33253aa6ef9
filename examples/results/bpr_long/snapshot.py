"""Snapshot of the resumable LightGCN + BPR CPU pair, from its checkpoints.

The pair (the cell's validation run and its refit ahead on the full training split) runs
across sessions and writes its records only when validation early-stops; until then its
numbers live in the git-ignored checkpoints under ``runs/repro_checkpoints/``. This copies
every evaluation of both runs (validation and test Recall@20 / NDCG@20, loss, the best
validation epoch so far) into ``cpu_progress.json`` beside this file, so that the numbers
the results pages quote before the cell finishes are in the repository::

    python examples/results/bpr_long/snapshot.py

A snapshot never replaces one that reached further (a run restarted from epoch 1 after its
checkpoints were lost) unless ``--force`` is given. ``--out NAME`` writes ``NAME`` beside this
file instead (the rerun of 2026-12-07 writes ``rerun_progress.json``, keeping the lost runs'
``cpu_progress.json`` as it was).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
RUN = "x-t1-lightgcn-bpr-seed=0-100000s"
CKPT = Path(os.environ.get("PYG_CF_REPRO_CHECKPOINTS", ROOT / "runs" / "repro_checkpoints"))
RUNS = {
    "validation": (
        CKPT / RUN / "last.pt",
        "python examples/results/probe.py t1-lightgcn-bpr seed 0 1000 examples/results/bpr_long "
        "100000",
    ),
    "refit_ahead": (
        CKPT / RUN / "refit-epochs=1000,reject_positives=True" / "last.pt",
        "python examples/results/probe.py t1-lightgcn-bpr seed 0 1000 examples/results/bpr_long "
        "100000 --refit-ahead 1000",
    ),
}
KEYS = ("val_recall@20", "val_ndcg@20", "test_recall@20", "test_ndcg@20")


def machine() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        name = next(ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln)
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__}"


def run_summary(path: Path, command: str) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    evals = [
        {"epoch": int(r["epoch"]), "loss": r["loss"], **{k: r[k] for k in KEYS if k in r}}
        for r in state["history"]
        if "test_recall@20" in r
    ]
    scored = [r for r in evals if "val_ndcg@20" in r]
    best = max(scored, key=lambda r: r["val_ndcg@20"]) if scored else None
    return {
        "command": command,
        "epoch": int(state["epoch"]),
        "training_s": float(sum(r.get("train_s", 0.0) for r in state["history"])),
        "best_epoch_so_far": best["epoch"] if best else None,
        "evaluations_without_improvement": int(state["bad_evals"]) if best else None,
        "evaluations": evals,
    }


def main() -> int:
    if not any(path.exists() for path, _ in RUNS.values()):
        print(f"no checkpoint of the pair under {CKPT / RUN}: nothing to snapshot")
        return 1
    runs = {name: run_summary(path, cmd) for name, (path, cmd) in RUNS.items() if path.exists()}
    args = sys.argv[1:]
    out_name = args[args.index("--out") + 1] if "--out" in args[:-1] else "cpu_progress.json"
    saved = HERE / Path(out_name).name
    if saved.exists() and "--force" not in args:
        before = json.loads(saved.read_text())
        behind = [
            f"{name} at epoch {run['epoch']} < {before[name]['epoch']} saved"
            for name, run in runs.items()
            if name in before and run["epoch"] < before[name]["epoch"]
        ]
        if behind:  # a restarted run: keep the furthest snapshot unless told otherwise
            print(f"not overwriting {saved.name} ({'; '.join(behind)}); --force to replace it")
            return 1
    out = {
        "note": "progress of an unfinished cell (t1-lightgcn-bpr): no epoch is chosen until "
        "validation early-stops (patience 20 evaluations, 5 epochs apart)",
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        **runs,
    }
    saved.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {saved}")
    for name in RUNS:
        if name in out:
            last = out[name]["evaluations"][-1]
            print(f"{name}: epoch {out[name]['epoch']}, last evaluation {last}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
