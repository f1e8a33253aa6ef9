"""ML-1M, LightGCN K=3 + in-batch SSM (tau 0.15, cos), lr 5e-3, seed 0: N epochs in
mode='sampled' (fan-out 10,10,10) or 'full'.

Usage: ``python ml1m_one_epoch.py LABEL EPOCHS MODE``; prints one JSON line.

Run 2026-12-05 (2-core AMD EPYC; ``results.jsonl``): 'new' = this checkout after the
neighbor sampler fix, 'old' = commit 85af3c3 (a worktree first on PYTHONPATH), both at 1
thread side by side; 'full' = mode='full' at 2 threads.
"""

import json
import sys
import time

import torch
from torch_geometric import seed_everything

from pyg_cf import datasets
from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer


def main() -> None:
    label, epochs, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    data = datasets.load("ml-1m", val_ratio=0.1, seed=0)
    seed_everything(0)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=64, num_layers=3)
    cfg = TrainConfig(
        epochs=epochs,
        lr=5e-3,
        mode=mode,
        num_neighbors=[10, 10, 10] if mode == "sampled" else None,
        progress=False,
        seed=0,
    )
    tr = Trainer(model, data, get_loss("ssm", tau=0.15, similarity="cos"), cfg)
    start = time.time()
    tr.fit()
    wall = time.time() - start
    res = {k: round(v, 4) for k, v in tr.evaluate("test").items()}
    print(
        json.dumps(
            {"variant": label, "wall_s": round(wall), "threads": torch.get_num_threads(), **res}
        )
    )


if __name__ == "__main__":
    main()
