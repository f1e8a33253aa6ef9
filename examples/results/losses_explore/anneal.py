"""Continue a saved MF + Adap-tau run with a lower learning rate (the lr-annealing test
behind ``--lr-milestones``): ``python anneal.py CHECKPOINT LR EXTRA_EPOCHS``."""

import sys

import torch

from pyg_cf import datasets
from pyg_cf.losses import get_loss
from pyg_cf.losses.temperature import get_temperature_schedule
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer
from pyg_cf.train.checkpoint import load_checkpoint


def main() -> None:
    ck, lr, extra = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    data = datasets.load("gowalla")
    model = GraphCF.from_data(data, "mf")
    loss = get_loss(
        "ssm",
        similarity="cos",
        negatives="sampled",
        num_negatives=1024,
        shared_negatives=True,
        include_positive=False,
    )
    sched = get_temperature_schedule("adap-tau", warmup_epochs=2)
    cfg = TrainConfig(epochs=80, eval_every=1, patience=1000, test_similarity="cos")
    tr = Trainer(model, data, loss, cfg, callbacks=[sched])
    epoch = load_checkpoint(tr, ck)
    # a constant lower rate from here on (what --lr-milestones now does by configuration)
    tr.config.lr, tr.config.epochs = lr, epoch + extra
    print("resumed after", epoch, "lr", lr, flush=True)
    tr.fit(
        on_epoch=lambda r: print(
            r["epoch"],
            round(r["loss"], 4),
            round(r.get("tau0", 0), 4),
            round(r["test_recall@20"], 4),
            round(r["test_ndcg@20"], 4),
            flush=True,
        )
    )


if __name__ == "__main__":
    main()
