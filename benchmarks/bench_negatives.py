"""Training-step time with many sampled negatives: one shared set per batch vs per-row sets.

MF (d=64) on Gowalla, batch 2048, one Adam step (forward, backward, update) per timing:

* per-row, reference way (the peer): every row draws its own ``M`` negatives; their raw
  embeddings are gathered into a ``[B, M, d]`` tensor, normalised there (cosine) and scored
  by a batched product, as the reference codes of SimpleX (CCL), BSL and Adap-τ do;
* per-row, ours (the default): the same negatives, gathered with ``index_select`` from the
  item table normalised once (``[I, d]`` work instead of ``[B, M, d]``), same loss value;
* shared (ours, ``shared_negatives=True``): one set of ``M`` negatives for the batch, its
  ``[M, d]`` rows scored by one ``[B, d] x [d, M]`` matrix product. Cheaper still, but it
  learns less per epoch (see ``examples/RESULTS.md``): a speed/quality trade-off;
* grouped (ours, ``shared_negatives=G``, ``--groups``, 16 by default): ``G`` sets of ``M``,
  each shared by a block of ``B / G`` rows, scored by ``G`` products. Close to the shared
  cost, while it learns nearly like per-row negatives (``examples/RESULTS.md``).

Loss values: the two per-row variants are equal for the same draw; shared negatives agree
in expectation.

    python benchmarks/bench_negatives.py --threads 1
    python benchmarks/bench_negatives.py --quick
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from _common import (
    base_parser,
    bench_data,
    median,
    positive_int,
    setup,
    table,
    time_interleaved,
    write_results,
)

from pyg_cf.losses import LossBatch, get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer


def reference_batch(tr: Trainer, idx: torch.Tensor) -> tuple[LossBatch, torch.Tensor]:
    """The reference codes' batch: raw per-row negative rows gathered by advanced indexing
    (the loss normalises the ``[B, M, d]`` tensor itself)."""
    cb = tr.loader.collate(idx, num_negatives=tr.loss.num_negatives)
    u_all, i_all = tr.model()
    batch = LossBatch(
        users=cb.users,
        pos_items=cb.pos_items,
        user_emb=u_all[cb.users],
        pos_emb=i_all[cb.pos_items],
        neg_items=cb.neg_items,
        neg_emb=i_all[cb.neg_items],
        neg_log_prob=cb.neg_log_prob,
    )
    return batch, torch.zeros(())


def stepper(tr: Trainer, reference: bool) -> tuple[Callable[[], None], list[float]]:
    """One optimizer step of ``tr`` per call, and a one-element list holding its last loss."""
    it = iter(tr.loader.index_batches())
    last = [0.0]

    def step() -> None:
        idx = next(it)
        batch, reg = reference_batch(tr, idx) if reference else tr.make_batch(idx)
        value = tr.loss(batch)
        tr.optimizer.zero_grad(set_to_none=True)
        (value + reg).backward()
        tr.optimizer.step()
        last[0] = float(value.detach())

    return step, last


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps per variant")
    p.add_argument("--groups", type=int, default=16, help="sets of the grouped variant")
    args = p.parse_args()
    setup(args, cuda=False)  # times the CPU only
    data = bench_data(args)
    if args.quick:
        settings = [("ssm", 64), ("mml", 32)]
        args.steps = 2
    else:
        settings = [("ssm", 256), ("ssm", 1024), ("mml", 100), ("mml", 800)]
    base = {
        "ssm": {"negatives": "sampled", "include_positive": False, "tau": 0.1},
        "mml": {},
    }
    rows = []
    for name, m in settings:
        steps: dict[str, Callable[[], None]] = {}
        lasts: dict[str, list[float]] = {}
        for variant in ("reference", "per-row", "shared", "grouped"):
            shared = {"shared": True, "grouped": args.groups}.get(variant, False)
            loss = get_loss(name, num_negatives=m, shared_negatives=shared, **base[name])
            torch.manual_seed(args.seed)
            model = GraphCF.from_data(data, "mf")
            cfg = TrainConfig(epochs=1, eval_every=0, progress=False, seed=args.seed)
            tr = Trainer(model, data, loss, cfg)
            steps[variant], lasts[variant] = stepper(tr, variant == "reference")
        # one step of each variant in turn (after a warm-up each): a drifting load hits all
        times = time_interleaved(steps, rounds=args.steps, steps=1)
        out = {v: (median(times[v]) * 1e3, lasts[v][0]) for v in steps}
        (t_ref, l_ref), (t_row, l_row), (t_sh, l_sh), (t_g, l_g) = out.values()
        losses = [f"{v:.4f}" for v in (l_ref, l_row, l_sh, l_g)]
        rows.append(
            [name, m, t_ref, t_row, t_row / t_ref, t_sh, t_sh / t_ref, t_g, t_g / t_ref, *losses]
        )
    header = [
        "loss",
        "M",
        "per-row, reference way ms/step (peer)",
        "per-row, ours ms/step",
        "÷ peer",
        "shared, ours ms/step",
        "÷ peer",
        f"{args.groups} sets, ours ms/step",
        "÷ peer",
        "loss ref.",
        "loss per-row",
        "loss shared",
        f"loss {args.groups} sets",
    ]
    tab = table(header, rows)
    print(tab)
    info = (
        f"Graph: {data.name}, MF d=64, batch 2048, uniform negatives, Adam; median of "
        f"{args.steps} steps after one warm-up step each, the variants interleaved (one step "
        "of each in turn) in one process."
    )
    path = write_results(
        args.name or "bench_negatives",
        "Sampled negatives: shared sets vs per-row sets",
        ["## Training step with M negatives", "", info, "", tab],
        args.results_dir,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
