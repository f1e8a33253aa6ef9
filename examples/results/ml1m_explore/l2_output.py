"""ML-1M probe (issue 8): LightGCN + cosine SSM with an L2 penalty on the *propagated*
embeddings of the batch, not only on layer 0.

The Adap-τ authors' LightGCN penalises every layer's embeddings of the batch's users and
positives, ``l2 * (||e_u||^2 + ||e_i||^2) / (2B)`` summed over layers, with l2 up to 1e-1
(their yelp2018 / amazon-book commands). On a dense graph the propagated layers of all nodes
share one direction (scaled by sqrt(degree)); a penalty on them removes that shared part,
which a layer-0 penalty does not. This probe penalises the batch's *final* embeddings (the
layer mean, before the loss normalises them), the simplest version of the idea.

Usage (repository root): ``OMP_NUM_THREADS=1 python examples/results/ml1m_explore/l2_output.py
NAME L2 [EPOCHS]``; writes NAME.json / prints one line per epoch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from pyg_cf import datasets
from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer, seed_everything

HERE = Path(__file__).resolve().parent


class OutputL2Trainer(Trainer):
    """Adds ``lam * (||user_emb||^2 + ||pos_emb||^2) / (2B)`` on the final embeddings."""

    lam = 0.0

    def embed_batch(self, cb):  # type: ignore[no-untyped-def]
        batch, reg = super().embed_batch(cb)
        b = batch.users.numel()
        extra = batch.user_emb.pow(2).sum() + batch.pos_emb.pow(2).sum()
        return batch, reg + self.lam * extra / (2 * b)


def main() -> None:
    name, lam = sys.argv[1], float(sys.argv[2])
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    data = datasets.load("ml-1m", val_ratio=0.1, seed=0)
    seed_everything(0)
    model = GraphCF.from_data(data, "lightgcn", num_layers=3, embedding_dim=64)
    loss = get_loss(
        "ssm",
        tau=0.15,
        similarity="cos",
        negatives="sampled",
        num_negatives=1024,
        shared_negatives=16,
        include_positive=False,
    )
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=2048,
        lr=1e-3,
        eval_every=1,
        patience=5,
        seed=0,
        extra_test_similarities=("cos",),
        progress=False,
    )
    trainer = OutputL2Trainer(model, data, loss, cfg)
    trainer.lam = lam
    t0 = time.perf_counter()

    def report(row):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            u, i = model.embeddings()
        print(
            f"epoch {row['epoch']} loss {row['loss']:.4f} val R@20 {row['val_recall@20']:.4f} "
            f"N@20 {row['val_ndcg@20']:.4f} test R@20 {row['test_recall@20']:.4f} "
            f"N@20 {row['test_ndcg@20']:.4f} test(cos) R@20 {row['test_cos_recall@20']:.4f} "
            f"|u| {u.norm(dim=1).mean():.3f} |i| {i.norm(dim=1).mean():.3f} "
            f"{time.perf_counter() - t0:.0f}s",
            flush=True,
        )

    hist = trainer.fit(on_epoch=report)
    out = {"l2_output": lam, "epochs": len(hist), "history": hist.to_dict(orient="records")}
    (HERE / f"{name}.json").write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
