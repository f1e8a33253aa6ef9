"""Full-softmax loss step (the "SM" of the sampled-softmax paper) on Gowalla's shapes.

One forward and backward of the loss over the whole catalogue, batch 2048, d=64, cosine
similarity, τ 0.1, from leaf ``[B, d]`` user and ``[I, d]`` item tensors (the model's
propagation is the same for both and left out):

* peer: the usual formulation in reference codes and RecBole-style trainers,
  ``F.cross_entropy(normalize(u) @ normalize(items).T / tau, pos)``: the ``[B, I]`` logits
  are divided by τ and the positive's logit is picked out of them;
* ours: ``get_loss("softmax", tau=0.1)``: τ scales the ``[B, d]`` user side before the
  product and the positive's score is its own ``[B]`` dot product, so no ``[B, I]`` division
  or gather (nor their ``[B, I]`` gradients) is formed. Same value (the table shows both).

Second table: the batches an epoch is cut into. With ``sampling='edge'`` (a shuffled pass
over the training interactions) a batch of 2048 holds about as many distinct users; with
``sampling='user_blocks'`` (the same pass, grouped by user) it holds a few dozen whole users,
and the loss forms one ``[I]`` logit row per distinct user; ``user_block_size=N`` cuts each
user into shuffled blocks of at most N rows (more distinct users per batch, more direct
updates per user and epoch). All on Gowalla's training interactions
(``pyg_cf.datasets.load('gowalla')``: the bundled ``datasets/`` or ``$PYG_CF_DATA``), same
loss, user embeddings gathered from one table (as the trainer does).

    python benchmarks/bench_softmax.py --threads 1
    python benchmarks/bench_softmax.py --quick
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
import torch.nn.functional as F
from _common import (
    base_parser,
    median,
    positive_int,
    setup,
    table,
    time_interleaved,
    timeit,
    write_results,
)

from pyg_cf.losses import LossBatch, get_loss


def measure(b: int, n_items: int, steps: int, seed: int, d: int = 64, tau: float = 0.1) -> list:
    """``[B, items, peer ms, ours ms, ratio, loss peer, loss ours]`` for one shape."""
    loss = get_loss("softmax", tau=tau, similarity="cos")
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, generator=g).requires_grad_()
    items = torch.randn(n_items, d, generator=g).requires_grad_()
    pos = torch.randint(n_items, (b,), generator=g)
    values: dict[str, float] = {}

    def peer() -> None:
        logits = F.normalize(u, dim=-1) @ F.normalize(items, dim=-1).t() / tau
        value = F.cross_entropy(logits, pos)
        value.backward()
        values["peer"] = float(value.detach())

    def ours() -> None:
        batch = LossBatch(
            users=torch.arange(b), pos_items=pos, user_emb=u, pos_emb=items[pos],
            all_item_emb=items,
        )  # fmt: skip
        value = loss(batch)
        value.backward()
        values["ours"] = float(value.detach())

    # one step each in turn (after a warm-up each): a drifting load hits both alike
    times = time_interleaved({"peer": peer, "ours": ours}, rounds=steps, steps=1)
    t_peer, t_ours = (median(times[k]) * 1e3 for k in ("peer", "ours"))
    return [b, n_items, t_peer, t_ours, t_ours / t_peer, f"{values['peer']:.6f}",
            f"{values['ours']:.6f}"]  # fmt: skip


# user blocks cut into blocks of at most this many rows per user (more direct updates)
BLOCK_SIZES = (("user_blocks", 16), ("user_blocks", 8), ("user_blocks", 4))


def measure_blocks(
    edge_index: torch.Tensor, num_users: int, num_items: int, b: int, steps: int, seed: int,
    d: int = 64, tau: float = 0.1,
) -> list[list]:  # fmt: skip
    """Rows ``[sampling, B, distinct users per batch, ms/step, ÷ edge, s per epoch]``."""
    from pyg_cf.loader import InteractionLoader

    loss = get_loss("softmax", tau=tau, similarity="cos")
    g = torch.Generator().manual_seed(seed)
    table_u = torch.randn(num_users, d, generator=g).requires_grad_()
    items = torch.randn(num_items, d, generator=g).requires_grad_()
    rows: list[list] = []
    for sampling, size in (("edge", None), ("user_blocks", None), *BLOCK_SIZES):
        loader = InteractionLoader(
            edge_index, num_users, num_items, batch_size=b, sampling=sampling,
            user_block_size=size, generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        batches = [bt for _, bt in zip(range(steps + 1), loader.index_batches())]
        distinct = [torch.unique(edge_index[0, bt]).numel() for bt in batches]
        queue = iter(batches)

        def step(queue: Iterator[torch.Tensor] = queue) -> None:
            idx = next(queue)
            users, pos = edge_index[0, idx], edge_index[1, idx]
            batch = LossBatch(
                users=users, pos_items=pos, user_emb=table_u[users], pos_emb=items[pos],
                all_item_emb=items,
            )  # fmt: skip
            loss(batch).backward()

        ms = median(timeit(step, repeat=steps, warmup=1)) * 1e3
        name = sampling if size is None else f"{sampling}, user_block_size={size}"
        rows.append([name, b, sum(distinct) / len(distinct), ms, 0.0, ms * len(loader) / 1e3])
    for r in rows:
        r[4] = r[3] / rows[0][3]
    return rows


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps per variant")
    args = p.parse_args()
    setup(args, cuda=False)  # times the CPU only
    if args.quick:
        shapes = [(256, 2000)]
        args.steps = 2
    else:  # Gowalla's catalogue; ML-1M's for the small end
        shapes = [(2048, 40981), (2048, 3043)]
    rows = [measure(b, n, args.steps, args.seed) for b, n in shapes]
    header = ["B", "items", "peer ms/step", "ours ms/step", "÷ peer", "loss peer", "loss ours"]
    tab = table(header, rows)
    print(tab)
    edges, what = _training_edges(args.quick)
    block_rows = measure_blocks(*edges, b=256 if args.quick else 2048, steps=args.steps,
                                seed=args.seed)  # fmt: skip
    header_b = ["sampling", "B", "distinct users / batch", "ms/step", "÷ edge", "s / epoch (loss)"]
    tab_b = table(header_b, block_rows)
    print(tab_b)
    info = (
        "Full softmax, cosine, τ 0.1, d=64: forward + backward of the loss from leaf "
        f"tensors; median of {args.steps} steps after one warm-up step each, peer and ours "
        "interleaved (one step of each in turn) in one process."
    )
    path = write_results(
        args.name or "bench_softmax",
        "Full-softmax loss step",
        [
            "## Loss step over the whole catalogue",
            "",
            info,
            "",
            tab,
            "",
            "## Batches of an epoch: edge order vs user blocks (whole or capped)",
            "",
            f"The loss step above (ours) on {what}: {args.steps} consecutive batches of each "
            "sampling (median ms after one warm-up batch); 's / epoch' multiplies by the "
            "epoch's batch count (loss only, the model's propagation excluded).",
            "",
            tab_b,
        ],
        args.results_dir,
    )
    print(f"wrote {path}")


def _training_edges(quick: bool) -> tuple[tuple[torch.Tensor, int, int], str]:
    """``((edge_index, num_users, num_items), description)``: Gowalla's training pairs, or
    a random power-law graph when ``quick`` or the data is absent."""
    if not quick:
        from pyg_cf import datasets
        from pyg_cf.data.graph import train_edges

        try:
            data = datasets.load("gowalla")
        except (FileNotFoundError, OSError):
            pass
        else:
            n_u, n_i = data["user"].num_nodes, data["item"].num_nodes
            return (train_edges(data), n_u, n_i), f"Gowalla's training interactions ({n_i} items)"
    g = torch.Generator().manual_seed(0)
    n_u, n_i, e = 300, 2000, 6000
    users = (torch.rand(e, generator=g).pow(3) * n_u).long()
    items = torch.randint(n_i, (e,), generator=g)
    ei = torch.unique(torch.stack([users, items]), dim=1)
    return (ei, n_u, n_i), f"a random graph ({n_u} users, {n_i} items)"


if __name__ == "__main__":
    main()
