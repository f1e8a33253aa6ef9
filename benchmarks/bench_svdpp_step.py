"""Training-step time of one-sided SVD++: full graph, its batch rows, exact neighborhood.

User-side SVD++ (users aggregate their items, items keep their own embeddings; α0 = 1,
α1 = 0 as the chosen Gowalla cells) with BPR, one uniform negative, L2 1e-4, Adam lr 1e-3,
batch 2048, LightGCN's user-uniform sampler — the ``t2-svdpp-bpr-1.0`` reproduction cell.
Same run, same graph, the same steps (fan-out -1, so every variant computes the same
embeddings and gradients for the batch):

* ``TrainConfig(mode='full')`` with ``Trainer.rows_only = False``: every step propagates
  over the whole training graph, then gathers the batch's rows;
* ``mode='full'`` as it runs by default: only the batch's user rows of the product are
  formed (``GraphCF.embed_rows``, :func:`~pyg_cf.nn.spmm.spmm_rows`), from the same graph;
* ``mode='sampled'``, fan-out ``[-1]``: the batch's 1-hop neighborhood, only users drawing
  (the trainer passes ``targets=('user',)`` for a one-sided model), the batch's rows
  formed over the subgraph (``GraphCF.embed_rows`` with its arguments);
* the same through ``forward()`` over the subgraph, then gathered (``rows_only=False``);
* the same, both sides drawing (``targets=('user', 'item')``, what the sampler did before):
  the popular positive items bring their whole user lists.

The table reports the median ms/step over interleaved rounds and the ratio to the full
graph, plus the mean subgraph size.

    python benchmarks/bench_svdpp_step.py            # Gowalla
    python benchmarks/bench_svdpp_step.py --quick    # small synthetic graph
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
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
from pyg_cf.nn.spmm import ROWS_MAX_SHARE


def variant(
    data: Any, mode: str, both_sides: bool, seed: int, rows_only: bool = True
) -> tuple[Callable[[], None], Any]:
    tr = bpr_trainer(
        data, "svdpp-user", seed, {"alpha0": 1.0, "alpha1": 0.0}, reject_positives=True,
        mode=mode, sampling="user", num_neighbors=(-1,) if mode == "sampled" else None,
    )  # fmt: skip
    tr.rows_only = rows_only
    if both_sides:  # the sampler as it was: items draw their users too
        assert tr.loader.sampler is not None
        tr.loader.sampler.targets = ("user", "item")
    return trainer_stepper(tr), tr


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument(
        "--steps", type=positive_int, default=10, help="timed steps per variant and round"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = p.parse_args()
    setup(args)
    data = bench_data(args)
    if args.quick:
        args.steps, args.rounds = 3, 1
    names = [
        "full graph (forward, then the batch's rows)",
        "full graph, the batch's rows only (default)",
        "exact neighborhood, users draw (one-sided)",
        "exact neighborhood, users draw, forward then gather (rows_only=False)",
        "exact neighborhood, both sides draw",
    ]
    runs = [
        variant(data, "full", False, args.seed, rows_only=False),
        variant(data, "full", False, args.seed),
        variant(data, "sampled", False, args.seed),
        variant(data, "sampled", False, args.seed, rows_only=False),
        variant(data, "sampled", True, args.seed),
    ]
    trainers = {n: tr for n, (_, tr) in zip(names, runs, strict=True)}
    edges: dict[str, list[int]] = {n: [] for n in names}
    degree = torch.bincount(train_edges(data)[0], minlength=data["user"].num_nodes)

    def count_edges(name: str) -> None:
        cb = trainers[name].last_batch
        if cb is not None and cb.subgraph is not None:
            n = int(cb.subgraph[("user", "rates", "item")].edge_index.size(1))
        else:
            n = train_edges(data).size(1)
            if cb is not None and trainers[name].rows_only:  # the batch users' rows ...
                rows = int(degree[cb.users].sum())
                n = rows if rows <= ROWS_MAX_SHARE * n else n  # ... unless spmm_rows fell back
        edges[name].append(n)

    steps = {n: fn for n, (fn, _) in zip(names, runs, strict=True)}
    times = time_interleaved(steps, args.rounds, args.steps, after=count_edges)
    ms = {k: median(v) * 1e3 for k, v in times.items()}
    base = ms[names[0]]
    rows = [[n, ms[n], ms[n] / base, sum(edges[n]) / len(edges[n]), len(times[n])] for n in names]
    header = [
        "variant", "ms/step (median)", "÷ full graph", "edges propagated (mean)", "steps timed"
    ]  # fmt: skip
    main_table = table(header, rows)
    print(main_table)
    e = train_edges(data).size(1)
    info = (
        f"Graph: {data.name}, {data['user'].num_nodes} users, {data['item'].num_nodes} "
        f"items, {e} training interactions; user-side SVD++ (α0 1, α1 0), d={DIM}, batch "
        f"{BATCH} (user-uniform draws), BPR (1 uniform negative), L2 {L2}, Adam lr {LR}. "
        f"Steps/epoch: {math.ceil(e / BATCH)}."
    )
    path = write_results(
        args.name or "bench_svdpp_step",
        "One-sided SVD++ training step: full graph, batch rows, exact neighborhood",
        ["## Training step", "", info, "", main_table],
        args.results_dir,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
