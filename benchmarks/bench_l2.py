"""Training-step time of the L2 penalty on layer 0: dense vs sparse lookups.

``TrainConfig(l2_reg=λ)`` adds :math:`\\frac{\\lambda}{2B}\\big(\\sum_u \\|e_u^{(0)}\\|^2 +
\\sum_i \\|e_i^{(0)}\\|^2 + \\sum_j \\|e_j^{(0)}\\|^2\\big)` over the batch's users, positives and
negatives. Looked up through ``nn.Embedding`` (dense gradients, as PyG's
``LightGCN.recommendation_loss`` does), each lookup's backward zero-fills a table-sized
gradient and autograd adds it to the forward pass's: table-sized work a step for an
O(batch) penalty. The trainer now looks up each table once with sparse gradients on the CPU,
which autograd adds into the dense gradient in place. Same run, same steps, Gowalla, full
graph, BPR (one uniform negative, positives rejected), Adam lr 1e-3, batch 2048, d=64:

* ``l2_reg=0`` (no penalty: the floor);
* ``l2_reg=1e-4``, dense lookups (one per users, positives, negatives: the trainer before);
* ``l2_reg=1e-4``, sparse lookups (one per table: the trainer now, on the CPU).

for MF, LightGCN (K=3) and user-side SVD++ (α0 1, α1 0). The table reports the median
ms/step over interleaved rounds, the ratio to the dense penalty and the penalty's cost over
the floor.

    python benchmarks/bench_l2.py            # Gowalla
    python benchmarks/bench_l2.py --quick    # small synthetic graph
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from _common import (
    base_parser,
    bench_data,
    median,
    setup,
    table,
    time_interleaved,
    trainer_stepper,
    write_results,
)

from pyg_cf.data.graph import train_edges
from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer

DIM, BATCH, LR, L2 = 64, 2048, 1e-3, 1e-4
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "MF": ("mf", {}),
    "LightGCN": ("lightgcn", {"num_layers": 3}),
    "SVD++ (user side)": ("svdpp-user", {"alpha0": 1.0, "alpha1": 0.0}),
}
PENALTIES = ["none", "dense lookups", "sparse lookups"]


def variant(
    data: Any, kind: str, kw: dict[str, Any], penalty: str, seed: int
) -> Callable[[], None]:
    torch.manual_seed(seed)
    model = GraphCF.from_data(data, kind, embedding_dim=DIM, **kw)
    cfg = TrainConfig(
        batch_size=BATCH, lr=LR, l2_reg=0.0 if penalty == "none" else L2, mode="full",
        progress=False, device=str(_common.DEVICE),
    )  # fmt: skip
    tr = Trainer(model, data, get_loss("bpr", reject_positives=True), cfg)
    if penalty != "none":
        tr._sparse_l2 = penalty == "sparse lookups"
    tr.generator.manual_seed(seed)
    return trainer_stepper(tr)


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = p.parse_args()
    setup(args, cuda=False)
    data = bench_data(args)
    if args.quick:
        args.steps, args.rounds = 2, 1
    runs = {
        (m, pen): variant(data, kind, kw, pen, args.seed)
        for m, (kind, kw) in MODELS.items()
        for pen in PENALTIES
    }
    times = time_interleaved(runs, args.rounds, args.steps)
    ms = {k: median(v) * 1e3 for k, v in times.items()}
    rows = []
    for m in MODELS:
        floor, dense = ms[(m, "none")], ms[(m, "dense lookups")]
        for pen in PENALTIES:
            t = ms[(m, pen)]
            cost = "-" if pen == "none" else f"{t - floor:+.1f} ms"
            rows.append([m, pen, t, t / dense, cost, len(times[(m, pen)])])
    header = ["model", "L2 penalty", "ms/step (median)", "÷ dense", "over no L2", "steps timed"]
    main_table = table(header, rows)
    print(main_table)
    e = train_edges(data).size(1)
    info = (
        f"Graph: {data.name}, {data['user'].num_nodes} users, {data['item'].num_nodes} "
        f"items, {e} training interactions; full graph, d={DIM}, batch {BATCH}, BPR (1 "
        f"uniform negative, positives rejected), L2 {L2}, Adam lr {LR}. Steps/epoch: "
        f"{math.ceil(e / BATCH)}."
    )
    path = write_results(
        args.name or "bench_l2",
        "L2 penalty on layer 0: dense vs sparse lookups",
        ["## Training step", "", info, "", main_table],
        args.results_dir,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
