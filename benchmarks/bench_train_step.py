"""Training-step time: pyg-cf (full-graph cached CSR; neighbor-sampled) vs PyG's LightGCN.

Same run, same graph, K=3, d=64, batch 2048, BPR with one uniform negative, Adam:

* ours, ``TrainConfig(mode='full')``: cached pre-normalized CSR adjacency + cached transpose,
  the layer sums formed only at the batch's rows (``Trainer.rows_only``, the default) with
  the last hop from the rows' slices of the adjacency (``GraphCF.slice_rows``, the CPU's
  default), the same with whole-table last hops (``slice_rows=False``, a GPU's default),
  and with ``rows_only=False`` (``forward()`` over whole tables, then gathered);
* ours, ``TrainConfig(mode='sampled')`` with two fan-out settings;
* ``torch_geometric.nn.models.LightGCN`` as in PyG's ``examples/lightgcn.py`` (BPR through
  ``recommendation_loss``), fed a plain ``edge_index``, a torch CSR adjacency and (when
  torch-sparse is installed) a ``SparseTensor``; and "tuned" as a careful user would run it:
  the adjacency normalized once (``normalize=False`` in the layers, which otherwise run
  ``gcn_norm`` in every layer of every step) and a fused Adam step (ours is fused too);
* the propagation kernel alone (forward + backward of one hop): our cached torch CSR SpMM vs
  torch-sparse's SpMM, which is how the cached path's backend was chosen.

Each variant runs ``--steps`` timed steps after a warm-up step, in ``--rounds`` interleaved
rounds; the table reports the median ms/step and ratios to PyG. The sampled rows propagate
over each batch's sampled neighborhood (other, approximate work); their ratios to PyG's
full-graph step say what the sampling costs or saves, not a like-for-like comparison.

    python benchmarks/bench_train_step.py            # Gowalla
    python benchmarks/bench_train_step.py --quick    # small synthetic graph
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
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
    sync,
    table,
    time_interleaved,
    trainer_stepper,
    write_results,
)

from pyg_cf.data.graph import train_edges

K = 3


def ours(
    data: Any,
    mode: str,
    fanout: tuple[int, ...] | None,
    seed: int,
    graphs: bool = False,
    rows_only: bool = True,
    slice_rows: bool | None = None,
) -> Callable[[], None] | None:
    tr = bpr_trainer(
        data, "lightgcn", seed, {"num_layers": K}, mode=mode, num_neighbors=fanout,
        cuda_graphs=graphs,
    )  # fmt: skip
    tr.rows_only = rows_only
    tr.model.slice_rows = slice_rows
    step = trainer_stepper(tr)

    if graphs:  # the warm-up steps and the capture are not timed
        for _ in range(5):
            step()
        graphed = tr._graphed_step()
        if graphed is None or graphed.failed or not graphed.captures:
            print("CUDA graph capture failed (see the warning above): variant left out")
            return None
    return step


def pyg_lightgcn(data: Any, kind: str, seed: int, tuned: bool = False) -> Callable[[], None] | None:
    """PyG's ``LightGCN`` as its example trains it; ``tuned``: the adjacency normalized once
    (``normalize=False`` in the layers, which otherwise run ``gcn_norm`` in every layer of
    every step) and a fused Adam step (as ours), the same numbers."""
    from torch_geometric.nn.models import LightGCN

    dev = _common.DEVICE
    ei = train_edges(data).to(dev)
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    n = nu + ni
    full = torch.cat([torch.stack([ei[0], ei[1] + nu]), torch.stack([ei[1] + nu, ei[0]])], 1)
    if kind == "edge_index":
        adj: Any = full
    elif kind == "csr":
        from torch_geometric.utils import to_torch_csr_tensor

        adj = to_torch_csr_tensor(full.flip(0), size=(n, n))  # adj_t
    else:
        try:
            from torch_sparse import SparseTensor
        except ImportError:
            return None
        adj = SparseTensor(row=full[1], col=full[0], sparse_sizes=(n, n))  # adj_t
    if tuned:
        from torch_geometric.nn.conv.gcn_conv import gcn_norm

        normed = gcn_norm(adj, None, n, add_self_loops=False)
        adj = normed[0] if isinstance(normed, tuple) else normed  # (adj_t, None) for torch's
    torch.manual_seed(seed)
    model = LightGCN(n, embedding_dim=DIM, num_layers=K, normalize=not tuned).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=tuned or None)
    g = torch.Generator(device=dev).manual_seed(seed)

    def step() -> None:
        idx = torch.randint(ei.size(1), (BATCH,), generator=g, device=dev)
        u, pos = ei[0, idx], ei[1, idx] + nu
        neg = torch.randint(ni, (BATCH,), generator=g, device=dev) + nu
        eli = torch.stack([torch.cat([u, u]), torch.cat([pos, neg])])
        pos_rank, neg_rank = model(adj, eli).chunk(2)
        loss = model.recommendation_loss(pos_rank, neg_rank, node_id=eli.unique(), lambda_reg=L2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        float(loss.detach())

    return step


def kernels(data: Any, repeat: int) -> list[list[Any]]:
    """One hop, forward + backward: our cached CSR SpMM vs torch-sparse's SpMM."""
    from pyg_cf.nn import CachedAdjacency, bipartite_norm, spmm_cached

    ei = train_edges(data).to(_common.DEVICE)
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    w = bipartite_norm(ei, (nu, ni), 0.5, 0.5)
    x = torch.randn(ni, DIM, requires_grad=True, device=_common.DEVICE)
    adj = CachedAdjacency(ei[0], ei[1], w, nu, ni)  # items -> users

    def hop(f: Callable[[], torch.Tensor]) -> Callable[[], None]:
        return lambda: f().sum().backward()

    runs: dict[str, Callable[[], None]] = {
        "pyg-cf cached torch CSR (int32, cached transpose)": hop(lambda: spmm_cached(adj, x))
    }
    try:
        from torch_sparse import SparseTensor
        from torch_sparse import matmul as ts_matmul

        st = SparseTensor(row=ei[0], col=ei[1], value=w, sparse_sizes=(nu, ni))
        st.storage.colptr()  # cache the transpose structures, as PyG would
        st.storage.csr2csc()
        runs["torch-sparse SparseTensor matmul"] = hop(lambda: ts_matmul(st, x))
    except ImportError:
        pass
    # one hop each in turn, ``repeat`` rounds: a drifting load hits both alike
    times = time_interleaved(runs, repeat, 1)
    rows: list[list[Any]] = [[name, median(t) * 1e3] for name, t in times.items()]
    if len(rows) == 1:
        rows.append(["torch-sparse SparseTensor matmul", "not installed"])
    base = rows[0][1]
    return [[r[0], r[1], (r[1] / base) if isinstance(r[1], float) else "-"] for r in rows]


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument(
        "--steps", type=positive_int, default=5, help="timed steps per variant and round"
    )
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--edge-index-steps", type=int, default=2, help="steps of the slow variant")
    p.add_argument("--fanouts", default="10,10,10;5,5,5", help="two sampled settings")
    args = p.parse_args()
    try:
        fanouts = [tuple(int(v) for v in f.split(",")) for f in args.fanouts.split(";")]
    except ValueError:
        p.error(f"--fanouts must look like '10,10,10;5,5,5', got {args.fanouts!r}")
    setup(args)
    data = bench_data(args)
    if args.quick:
        args.steps, args.rounds, args.edge_index_steps = 2, 1, 1
    variants: list[tuple[str, Callable[[], None] | None, int]] = [
        ("pyg-cf full graph (cached CSR)", ours(data, "full", None, args.seed), args.steps),
        (
            # the other choice than the device's default (slicing on the CPU only)
            "pyg-cf full graph, last hop over whole tables (slice_rows=False, a GPU's default)"
            if _common.DEVICE.type == "cpu"
            else "pyg-cf full graph, last hop from row slices (slice_rows=True, the CPU's default)",
            ours(data, "full", None, args.seed, slice_rows=_common.DEVICE.type != "cpu"),
            args.steps,
        ),
        (
            "pyg-cf full graph, layer sums over whole tables (rows_only=False)",
            ours(data, "full", None, args.seed, rows_only=False),
            args.steps,
        ),
    ]
    if _common.DEVICE.type == "cuda":
        variants.append(
            (
                "pyg-cf full graph, CUDA graph replay",
                ours(data, "full", None, args.seed, graphs=True),
                args.steps,
            )
        )
    for f in fanouts:
        variants.append(
            (f"pyg-cf sampled {list(f)}", ours(data, "sampled", f, args.seed), args.steps)
        )
    variants += [
        ("PyG LightGCN, edge_index", pyg_lightgcn(data, "edge_index", args.seed), 0),
        ("PyG LightGCN, torch CSR", pyg_lightgcn(data, "csr", args.seed), args.steps),
        ("PyG LightGCN, SparseTensor", pyg_lightgcn(data, "sparse", args.seed), args.steps),
        (
            "PyG LightGCN, torch CSR, tuned (normalized once, fused Adam)",
            pyg_lightgcn(data, "csr", args.seed, tuned=True),
            args.steps,
        ),
        (
            "PyG LightGCN, SparseTensor, tuned (normalized once, fused Adam)",
            pyg_lightgcn(data, "sparse", args.seed, tuned=True),
            args.steps,
        ),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for _name, fn, _ in variants:  # warm-up (builds caches)
        if fn is not None:
            fn()
    for _ in range(args.rounds):
        for name, fn, steps in variants:
            if fn is None:
                continue
            n = steps or args.edge_index_steps
            for _ in range(n):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()  # ours reads the loss before backward + step: wait for those too
                times[name].append(time.perf_counter() - t0)
    ms = {k: median(v) * 1e3 if v else math.nan for k, v in times.items()}
    best = {k: min(v) * 1e3 if v else math.nan for k, v in times.items()}
    csr = ms["PyG LightGCN, torch CSR"]
    sp = ms["PyG LightGCN, SparseTensor"]
    rows = []
    for name, fn, _ in variants:
        if fn is None:
            rows.append([name, "not installed", "-", "-", "-", "-", 0])
            continue
        r_sp = ms[name] / sp if sp == sp else "-"
        b_sp = best[name] / best["PyG LightGCN, SparseTensor"] if sp == sp else "-"
        rows.append([name, ms[name], ms[name] / csr, r_sp, best[name], b_sp, len(times[name])])
    header = [
        "variant",
        "ms/step (median)",
        "÷ PyG CSR",
        "÷ PyG SparseTensor",
        "ms/step (best)",
        "÷ PyG SparseTensor (best)",
        "steps timed",
    ]
    main_table = table(header, rows)
    kern = table(["one hop fwd+bwd", "ms", "÷ ours"], kernels(data, 3 if args.quick else 10))
    print(main_table)
    print()
    print(kern)
    e = train_edges(data).size(1)
    info = (
        f"Graph: {data.name}, {data['user'].num_nodes} users, {data['item'].num_nodes} "
        f"items, {e} training interactions; K={K}, d={DIM}, batch {BATCH}, BPR (1 uniform "
        f"negative), L2 {L2}, Adam lr {LR}. Steps/epoch: {math.ceil(e / BATCH)}."
    )
    sections = [
        "## Training step",
        "",
        info,
        "",
        main_table,
        "",
        "## Propagation kernel (the cached path's backend choice)",
        "",
        kern,
    ]
    path = write_results(
        args.name or "bench_train_step", "Training step time", sections, args.results_dir
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
