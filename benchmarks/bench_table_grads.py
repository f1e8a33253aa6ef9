r"""Table-sized gradient work per training step: the L2 penalty's lookups, the item gathers.

A step's embedding gather is O(batch), but a dense gradient through it is table-sized: its
backward zero-fills a gradient as large as the table and autograd adds it to the others.
Two places did that more often than needed:

* ``TrainConfig(l2_reg=λ)`` adds :math:`\frac{\lambda}{2B}\big(\sum_u \|e_u^{(0)}\|^2 +
  \sum_i \|e_i^{(0)}\|^2 + \sum_j \|e_j^{(0)}\|^2\big)` over the batch's users, positives
  and negatives. Looked up through ``nn.Embedding`` (dense gradients, as PyG's
  ``LightGCN.recommendation_loss`` does), each of the three lookups costs a table-sized
  fill and addition; the trainer now looks up each table once with sparse gradients on the
  CPU, which autograd adds into the dense gradient in place.
* the positives' and the negatives' rows of the propagated item table were two
  ``index_select`` calls (two table-sized fills and index_adds, and an addition); the
  trainer now gathers them in one.

Same run, same steps, Gowalla, full graph, BPR (one uniform negative, positives rejected),
Adam lr 1e-3, batch 2048, d=64, for MF, LightGCN (K=3) and user-side SVD++ (α0 1, α1 0):

* no L2, one gather (the floor);
* L2 1e-4 with dense lookups, one per table, and two gathers (the baseline; the trainer
  before 2026-12-06 made three dense lookups — users, positives, negatives — so it was
  slower than this baseline and the ratios below understate the change);
* L2 1e-4 with sparse lookups and two gathers;
* L2 1e-4 with sparse lookups and one gather (the trainer of 2026-12-06, on the CPU);
* L2 1e-4 with sparse lookups and the batch's rows (the trainer now: since 2026-12-07 a
  full-graph step takes ``GraphCF.embed_rows``, ``Trainer.rows_only``, which for LightGCN
  forms the layer sums only at the batch's rows and for MF / SVD++ runs the forward and
  gathers users and items once each).

The gather variants run with ``rows_only=False`` (the forward-then-gather path they
describe; with the rows path the trainer's ``_gather_items`` is not called at all).

The table reports the median ms/step over interleaved rounds and the ratio to the
baseline.

    python benchmarks/bench_table_grads.py            # Gowalla
    python benchmarks/bench_table_grads.py --quick    # small synthetic graph
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BATCH,
    DIM,
    L2,
    LR,
    base_parser,
    bench_data,
    bpr_trainer,
    median,
    positive_int,
    setup,
    table,
    time_interleaved,
    trainer_stepper,
    write_results,
)

from pyg_cf.data.graph import train_edges
from pyg_cf.train import trainer as trainer_mod

MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "MF": ("mf", {}),
    "LightGCN": ("lightgcn", {"num_layers": 3}),
    "SVD++ (user side)": ("svdpp-user", {"alpha0": 1.0, "alpha1": 0.0}),
}
VARIANTS = {  # name: (l2_reg, sparse L2 lookups, item gathers: 2, 1 or 0 = the batch rows)
    "no L2, one gather": (0.0, True, 1),
    "L2, dense lookups, two gathers (baseline)": (L2, False, 2),
    "L2, sparse lookups, two gathers": (L2, True, 2),
    "L2, sparse lookups, one gather": (L2, True, 1),
    "L2, sparse lookups, batch rows (now)": (L2, True, 0),
}

ONE_GATHER = trainer_mod._gather_items  # the trainer's own


def two_gathers(
    table: Tensor, pos: Tensor, index: Tensor | None, shared: bool | int, cos: bool
) -> tuple[Tensor, Tensor | None, bool]:
    """The trainer's item gather before 2026-12-06: positives and negatives apart."""
    _, neg, unit = ONE_GATHER(table, pos[:0], index, shared, cos)
    return table.index_select(0, pos), neg, unit


def variant(data: Any, kind: str, kw: dict[str, Any], name: str, seed: int) -> Callable[[], None]:
    l2, sparse, gathers = VARIANTS[name]
    tr = bpr_trainer(data, kind, seed, kw, reject_positives=True, l2_reg=l2, mode="full")
    tr._sparse_l2 = sparse
    tr.rows_only = gathers == 0
    step = trainer_stepper(tr)
    if gathers < 2:
        return step

    def step_two_gathers() -> None:
        trainer_mod._gather_items = two_gathers
        try:
            step()
        finally:
            trainer_mod._gather_items = ONE_GATHER

    return step_two_gathers


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument(
        "--steps", type=positive_int, default=8, help="timed steps per variant and round"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = p.parse_args()
    setup(args, cuda=False)
    data = bench_data(args)
    if args.quick:
        args.steps, args.rounds = 2, 1
    runs = {
        (m, name): variant(data, kind, kw, name, args.seed)
        for m, (kind, kw) in MODELS.items()
        for name in VARIANTS
    }
    times = time_interleaved(runs, args.rounds, args.steps)
    ms = {k: median(v) * 1e3 for k, v in times.items()}
    rows = []
    before = "L2, dense lookups, two gathers (baseline)"
    for m in MODELS:
        for name in VARIANTS:
            t = ms[(m, name)]
            rows.append([m, name, t, t / ms[(m, before)], len(times[(m, name)])])
    header = ["model", "variant", "ms/step (median)", "÷ baseline", "steps timed"]
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
        args.name or "bench_table_grads",
        "Table-sized gradient work per step: L2 lookups and item gathers",
        ["## Training step", "", info, "", main_table],
        args.results_dir,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
