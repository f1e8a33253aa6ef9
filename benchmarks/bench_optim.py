r"""Sparse Adam steps of one embedding table: ours (:class:`pyg_cf.train.optim.LazyAdam`) vs
:class:`torch.optim.SparseAdam`, the same update (the table and both moments are compared
after the timed steps; float32, the two order some operations differently).

A neighbor-sampled step (``TrainConfig(mode='sampled', sparse_grad=True)``) gives each
embedding table a sparse gradient over the rows of its subgraph: on the 9 M-interaction
graph of ``bench_scale.py`` ≈ 210 k of 500 k user rows and ≈ 125 k of 250 k item rows, of
64 floats. Two gradients are timed:

* ``lookup``: the rows of an embedding lookup of distinct sorted ids (what the subgraph's
  layer 0 gives: uncoalesced, but one row per id);
* ``repeats``: the same number of rows drawn with repeats, unsorted (what a batch's
  lookups give: coalescing sums them).

Each optimizer steps its own copy of the table, interleaved round by round; the table
reports the median ms per step and the ratio to SparseAdam. glibc's allocator is tuned as
the trainer tunes it for sparse gradients (:func:`pyg_cf.train.memory.retain_freed_memory`).

    python benchmarks/bench_optim.py --threads 1
    python benchmarks/bench_optim.py --quick
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, median, positive_int, setup, table, time_interleaved, write_results

from pyg_cf.train.memory import retain_freed_memory
from pyg_cf.train.optim import LazyAdam


def gradient(kind: str, num_rows: int, rows: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "lookup":
        ids = torch.randperm(num_rows, generator=g)[:rows].sort().values
    else:
        ids = torch.randint(num_rows, (rows,), generator=g)
    values = torch.randn(rows, dim, generator=g)
    return torch.sparse_coo_tensor(ids[None], values, (num_rows, dim))


def stepper(
    param: torch.nn.Parameter, opt: torch.optim.Optimizer, grad: torch.Tensor
) -> Callable[[], None]:
    def step() -> None:
        param.grad = grad
        opt.step()

    return step


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument("--rounds", type=positive_int, default=7, help="timed steps per optimizer")
    args = p.parse_args()
    setup(args, cuda=False)  # times the CPU only
    retained = retain_freed_memory()
    if args.quick:
        sizes, args.rounds = [(5_000, 2_000)], 2
    else:
        sizes = [(500_000, 210_000), (250_000, 125_000)]
    dim = 64
    rows_out = []
    for num_rows, rows in sizes:
        for kind in ("lookup", "repeats"):
            grad = gradient(kind, num_rows, rows, dim, args.seed)
            init = torch.randn(num_rows, dim, generator=torch.Generator().manual_seed(1)) * 0.1
            params = {name: torch.nn.Parameter(init.clone()) for name in ("SparseAdam", "ours")}
            opts: dict[str, torch.optim.Optimizer] = {
                "SparseAdam": torch.optim.SparseAdam([params["SparseAdam"]], lr=1e-3),
                "ours": LazyAdam([params["ours"]], lr=1e-3),
            }

            steps = {n: stepper(params[n], opts[n], grad) for n in opts}
            times = time_interleaved(steps, rounds=args.rounds, steps=1)
            pairs = [(params["ours"], params["SparseAdam"])] + [
                (
                    opts["ours"].state[params["ours"]][k],
                    opts["SparseAdam"].state[params["SparseAdam"]][k],
                )
                for k in ("exp_avg", "exp_avg_sq")
            ]
            diff = max(float((a - b).abs().max()) for a, b in pairs)
            t_peer, t_ours = (median(times[n]) * 1e3 for n in ("SparseAdam", "ours"))
            rows_out.append(
                [f"{num_rows} × {dim}", rows, kind, t_peer, t_ours, f"{t_ours / t_peer:.2f}",
                 f"{diff:.1e}"]
            )  # fmt: skip
            print(rows_out[-1], flush=True)
    header = [
        "table",
        "gradient rows",
        "gradient",
        "torch.optim.SparseAdam ms/step (peer)",
        "LazyAdam ms/step (ours)",
        "ratio",
        "largest difference (table, moments)",
    ]
    tab = table(header, rows_out)
    print(tab)
    sections = [
        "## One sparse Adam step of an embedding table",
        "",
        f"Median of {args.rounds} interleaved steps per optimizer (after one warm-up step each); "
        f"glibc allocator tuned as the trainer tunes it: {'yes' if retained else 'no'}.",
        "",
        tab,
    ]
    path = write_results(
        args.name or "bench_optim", "Sparse Adam steps", sections, args.results_dir
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
