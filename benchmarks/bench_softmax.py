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

    python benchmarks/bench_softmax.py --threads 1
    python benchmarks/bench_softmax.py --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
import torch.nn.functional as F
from _common import base_parser, median, setup, table, timeit, write_results

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

    t_peer = median(timeit(peer, repeat=steps, warmup=1)) * 1e3
    t_ours = median(timeit(ours, repeat=steps, warmup=1)) * 1e3
    return [b, n_items, t_peer, t_ours, t_ours / t_peer, f"{values['peer']:.6f}",
            f"{values['ours']:.6f}"]  # fmt: skip


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    args = p.parse_args()
    setup(args)
    if args.quick:
        shapes = [(256, 2000)]
        args.steps = 2
    else:  # Gowalla's catalogue; ML-1M's for the small end
        shapes = [(2048, 40981), (2048, 3043)]
    rows = [measure(b, n, args.steps, args.seed) for b, n in shapes]
    header = ["B", "items", "peer ms/step", "ours ms/step", "÷ peer", "loss peer", "loss ours"]
    tab = table(header, rows)
    print(tab)
    info = (
        "Full softmax, cosine, τ 0.1, d=64: forward + backward of the loss from leaf "
        f"tensors; median of {args.steps} steps after one warm-up step, both in one process."
    )
    path = write_results(
        args.name or "bench_softmax",
        "Full-softmax loss step",
        ["## Loss step over the whole catalogue", "", info, "", tab],
        args.results_dir,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
