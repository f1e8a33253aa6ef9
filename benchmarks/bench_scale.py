"""Neighbor-sampled training at scale: seconds per epoch and peak memory on synthetic
power-law user–item graphs of 1 M, 10 M and 50 M interactions.

Each size runs in its own process (so peak RSS is per size): build the graph, the trainer
(``mode='sampled'``, ``sparse_grad=True`` so that a step touches only its subgraph's
embedding rows), then time ``--steps`` training steps (LightGCN K=3, d=64, BPR with one
uniform negative, batch 2048) after a warm-up. Seconds per epoch are extrapolated from the
mean step time (steps per epoch = interactions / 2048); setup time (graph generation,
indexes) is reported separately. Peak memory is the process's maximum RSS during sampled
training (``torch.cuda.max_memory_allocated`` when run on CUDA). For sizes up to
``--full-max`` the exact full-graph step is timed afterwards for comparison (beyond it, its
saved activations alone would exceed the machine's memory).

The graph comes from :func:`pyg_cf.data.synthetic.power_law_bipartite`: Pareto(2) user
degrees scaled to the target number of interactions (20 per user on average), Pareto(1.5)
item popularity, half as many items as users, duplicate pairs redrawn; 10 % held out.

    python benchmarks/bench_scale.py                 # 1M, 10M, 50M
    python benchmarks/bench_scale.py --quick         # 20k, 60k
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    base_parser,
    peak_rss_gib,
    positive_int,
    setup,
    synthetic_data,
    table,
    write_results,
)

from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer


def timed_step(tr: Trainer, idx: torch.Tensor) -> float:
    """Wall seconds of one training step on batch ``idx`` (the loss read back)."""
    s0 = time.perf_counter()
    batch, reg = tr.make_batch(idx)
    loss = tr.loss(batch)
    tr.optimizer.zero_grad(set_to_none=True)
    (loss + reg).backward()
    tr.optimizer.step()
    float(loss.detach())
    return time.perf_counter() - s0


def single(
    num_edges: int,
    steps: int,
    fanout: tuple[int, ...],
    device: str,
    seed: int,
    full_max: int | None = None,
) -> dict:
    t0 = time.perf_counter()
    nu, ni = max(num_edges // 20, 10), max(num_edges // 40, 10)
    data = synthetic_data(num_edges, nu, ni, seed=seed)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=64, num_layers=3)
    cfg = TrainConfig(
        batch_size=2048,
        lr=1e-3,
        mode="sampled",
        num_neighbors=fanout,
        sparse_grad=True,
        progress=False,
        device=device,
        max_steps_per_epoch=2 * steps + 3,
    )
    tr = Trainer(model, data, get_loss("bpr"), cfg)
    setup_s = time.perf_counter() - t0
    it = tr.batches()
    times, sub_edges, sub_nodes, bounds, node_bounds = [], [], [], [], []
    # a step's subgraph has at most seeds · (f1 + f1·f2 + ...) edges whatever the graph's
    # size: each hop expands only the new frontier, by at most f_h edges per node (and so
    # at most seeds · (1 + f1 + f1·f2 + ...) nodes)
    reach = sum(math.prod(fanout[: h + 1]) for h in range(len(fanout)))
    for k in range(steps + 2):
        dt = timed_step(tr, next(it))
        if k >= 2:  # warm-up
            times.append(dt)
            sg = tr.last_batch.subgraph
            sub_edges.append(sg["user", "rates", "item"].num_edges)
            sub_nodes.append(sg["user"].num_nodes + sg["item"].num_nodes)
            cb = tr.last_batch
            items = (
                cb.pos_items
                if cb.neg_items is None
                else torch.cat([cb.pos_items, cb.neg_items.flatten()])
            )
            seeds = cb.users.unique().numel() + items.unique().numel()
            bounds.append(reach * seeds)
            node_bounds.append((1 + reach) * seeds)
    e = int(tr.train_ei.size(1))
    step_s = sum(times) / len(times)
    # the same steps through forward() over the whole subgraph, then the rows gathered
    # (Trainer.rows_only = False, the path before sampled steps formed the layer sums at
    # the batch's rows): one warm-up step, then as many timed ones
    tr.rows_only = False
    gather = []
    for k in range(steps + 1):
        dt = timed_step(tr, next(it))
        if k:
            gather.append(dt)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else peak_rss_gib()
    full_ms = None
    if full_max is not None and num_edges <= full_max:  # the exact full-graph step, for scale
        del tr
        model = GraphCF.from_data(data, "lightgcn", embedding_dim=64, num_layers=3)
        cfg = TrainConfig(batch_size=2048, lr=1e-3, progress=False, device=device)
        tr = Trainer(model, data, get_loss("bpr"), cfg)
        it = tr.batches()
        ft = []
        for k in range(3):
            dt = timed_step(tr, next(it))
            if k:
                ft.append(dt)
        full_ms = sum(ft) / len(ft) * 1e3
    return {
        "interactions": e,
        "users": nu,
        "items": ni,
        "setup_s": setup_s,
        "step_ms": step_s * 1e3,
        "gather_ms": sum(gather) / len(gather) * 1e3,
        "epoch_s": step_s * math.ceil(e / 2048),
        "sub_edges": sum(sub_edges) / len(sub_edges),
        "sub_nodes": sum(sub_nodes) / len(sub_nodes),
        "sub_node_frac": sum(sub_nodes) / len(sub_nodes) / (nu + ni),
        "sub_node_bound": sum(node_bounds) / len(node_bounds),
        "sub_edge_bound": sum(bounds) / len(bounds),
        "retained": tr.retains_cpu_memory,
        "peak_gib": mem,
        "full_ms": full_ms,
    }


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument("--sizes", default="1000000,10000000,50000000")
    p.add_argument("--steps", type=positive_int, default=20)
    p.add_argument("--fanout", default="5,5,5")
    p.add_argument(
        "--full-max",
        type=int,
        default=10_000_000,
        help="also time the full-graph step up to this many interactions",
    )
    p.add_argument("--single", type=int, default=None, help=argparse_hidden())
    args = p.parse_args()
    setup(args)
    # the benchmark measures the fan-out bound on a step's work: -1 (all neighbours) has none
    fanout = _int_list(p, "--fanout", args.fanout, minimum=1)
    _int_list(p, "--sizes", args.sizes, minimum=1)
    if args.single is not None:
        out = single(args.single, args.steps, fanout, args.device, args.seed, args.full_max)
        print("RESULT " + json.dumps(out))
        return
    if args.quick:
        args.sizes, args.steps = "20000,60000", 2
    rows = []
    results = []
    for size in _int_list(p, "--sizes", args.sizes, minimum=1):
        cmd = [sys.executable, __file__, "--single", str(size), "--steps", str(args.steps)]
        cmd += ["--fanout", args.fanout, "--device", args.device, "--seed", str(args.seed)]
        cmd += ["--full-max", str(args.full_max)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            rows.append([size, "failed", *["-"] * 15, f"rc={proc.returncode}"])
            continue
        r = json.loads(line[0][len("RESULT ") :])
        results.append(r)
        rows.append(
            [
                size,
                r["interactions"],
                f"{r['users']} / {r['items']}",
                r["setup_s"],
                r["step_ms"],
                r["gather_ms"],
                f"{r['step_ms'] / r['gather_ms']:.2f}",
                r["sub_edges"],
                r["sub_nodes"],
                f"{100 * r['sub_node_frac']:.0f} %",
                f"{100 * r['sub_edges'] / r['sub_edge_bound']:.0f} %",
                f"{100 * r['sub_nodes'] / r['sub_node_bound']:.0f} %",
                r["step_ms"] * 1e3 / max(r["sub_edges"], 1.0),
                r["step_ms"] * 1e3 / max(r["sub_nodes"], 1.0),
                r["epoch_s"],
                r["full_ms"] if r["full_ms"] is not None else "not run",
                r["peak_gib"],
                "yes" if r["retained"] else "no",
            ]
        )
        print(rows[-1], flush=True)
    header = [
        "target interactions",
        "train interactions",
        "users / items",
        "setup s",
        "ms/step",
        "ms/step, forward() then gather",
        "ratio",
        "subgraph edges/step",
        "subgraph nodes/step",
        "graph's nodes in the subgraph",
        "edges / fan-out bound",
        "nodes / fan-out bound",
        "µs per subgraph edge",
        "µs per subgraph node",
        "s/epoch (extrapolated)",
        "full-graph ms/step",
        "peak RSS GiB" if args.device == "cpu" else "peak CUDA GiB",
        "heap retained",
    ]
    tab = table(header, rows)
    lin = ""
    if len(results) >= 2:
        lines = []
        for a, b in itertools.pairwise(results):
            lines.append(
                f"- {a['interactions'] / 1e6:.1f} M → {b['interactions'] / 1e6:.1f} M: "
                f"interactions {b['interactions'] / a['interactions']:.2f}x, seconds per "
                f"epoch {b['epoch_s'] / a['epoch_s']:.2f}x; subgraph per step "
                f"{b['sub_edges'] / a['sub_edges']:.2f}x in edges and "
                f"{b['sub_nodes'] / a['sub_nodes']:.2f}x in nodes; cost per subgraph edge "
                f"{(b['step_ms'] / b['sub_edges']) / (a['step_ms'] / a['sub_edges']):.2f}x, "
                f"per subgraph node "
                f"{(b['step_ms'] / b['sub_nodes']) / (a['step_ms'] / a['sub_nodes']):.2f}x."
            )
        last = results[-1]
        per_node = [r["step_ms"] * 1e3 / r["sub_nodes"] for r in results]
        c = max(per_node)
        # seconds per epoch <= steps · c · node bound, and steps = ceil(E / 2048): linear in E
        per_m = ", ".join(f"{r['epoch_s'] / (r['interactions'] / 1e6):.0f}" for r in results)
        per_minter = c * 1e-6 * last["sub_node_bound"] / 2048 * 1e6
        lines.append(
            f"- Cost model: a step costs {min(per_node):.2f}–{c:.2f} µs per subgraph node over "
            f"these sizes (spread {100 * (c / min(per_node) - 1):.0f} %), and a step's subgraph "
            f"has at most (batch users + items) · (1 + Σ_h Π_(j≤h) f_j) nodes "
            f"({last['sub_node_bound']:.0f} here) whatever the graph's size. So seconds per "
            f"epoch ≤ ⌈E / 2048⌉ · {c:.2f} µs · {last['sub_node_bound']:.0f} ≈ "
            f"{per_minter:.0f} s per million interactions E: a bound linear in interactions, "
            f"which the measured epochs approach from below as the neighborhoods stop "
            f"overlapping ({per_m} s per million interactions here)."
        )
        lines.append(
            f"- Per-step work is bounded whatever the graph's size: a step's subgraph has at "
            f"most (batch users + items) · Σ_h Π_(j≤h) f_j edges ({last['sub_edge_bound']:.0f} "
            f"here); at {last['interactions'] / 1e6:.1f} M it is "
            f"{100 * last['sub_edges'] / last['sub_edge_bound']:.0f} % of that bound, so beyond "
            f"this size the step cost can grow by at most "
            f"{last['sub_edge_bound'] / last['sub_edges']:.2f}x more in subgraph edges: the "
            f"work of a step is bounded and that of an epoch asymptotically linear in "
            f"interactions (time also depends on the memory hierarchy, see the notes)."
        )
        lin = "\n".join(lines)
    print(tab)
    print(lin)
    sections = [
        "## Sampled training at scale",
        "",
        f"LightGCN K=3 d=64, BPR, batch 2048, fan-out {list(fanout)}, sparse "
        f"embedding gradients + LazyAdam (pyg_cf.train.optim); {args.steps} timed steps per "
        f"size after 2 warm-up steps, on {args.device}. ms/step: the trainer's default, the "
        f"layer sums formed at the batch's rows of its subgraph (GraphCF.embed_rows); then as "
        f"many steps (after one warm-up) through forward() over the whole subgraph and the "
        f"rows gathered (Trainer.rows_only = False), and the ratio of the two.",
        "",
        tab,
        "",
        lin,
    ]
    note = "graphs from pyg_cf.data.synthetic.power_law_bipartite"
    path = write_results(
        args.name or "bench_scale", "Sampled training at scale", sections, args.results_dir, note
    )
    print(f"wrote {path}")


def _int_list(p: argparse.ArgumentParser, flag: str, text: str, minimum: int) -> tuple[int, ...]:
    """``'1,2,3'`` as integers ≥ ``minimum``; a clear usage error (naming ``flag``) otherwise."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        p.error(f"{flag} must be comma-separated integers, got {text!r}")
    if any(v < minimum for v in values):
        p.error(f"{flag} entries must be >= {minimum}, got {text!r}")
    return values


def argparse_hidden() -> str:
    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
