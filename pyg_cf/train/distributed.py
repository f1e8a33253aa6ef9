r"""Data-parallel training with :mod:`torch.distributed`, launched by ``torchrun``.

Every process (rank :math:`r` of :math:`W`) holds a full replica of the model. The
training edges are shuffled with the same seeded generator on every rank, cut into
*global* batches of ``config.batch_size`` and each global batch :math:`\mathcal{B}` is
sharded across ranks, rank :math:`r` taking rows :math:`r, r+W, r+2W, \dots`
(:math:`\mathcal{B}_r`). Each rank computes the loss of its shard; before every optimizer
step the gradients are averaged with one bucketed ``all_reduce`` (what
:class:`~torch.nn.parallel.DistributedDataParallel` does), weighted so that the step
follows the gradient of the global batch mean:

.. math::
    \mathbf{g} = \sum_{r=0}^{W-1} \frac{|\mathcal{B}_r|}{|\mathcal{B}|}\,
        \nabla \Big( \frac{1}{|\mathcal{B}_r|} \sum_{(u,i) \in \mathcal{B}_r}
        \ell(u, i) \Big)
      = \nabla \frac{1}{|\mathcal{B}|} \sum_{(u,i) \in \mathcal{B}} \ell(u, i).

Evaluation is sharded by users (rank :math:`r` ranks the users :math:`u \equiv r
\pmod W`) and the per-user metric sums are gathered with ``all_reduce``.

* ``mode='full'``: the full-graph propagation is replicated (every rank needs all final
  embeddings); negatives are drawn for the global batch from the shared generator and
  each rank keeps its rows, so for losses that are a mean of per-row terms (BPR, sampled
  softmax with sampled negatives, full softmax, pointwise losses) training equals
  single-process training with the same seed up to floating-point summation order.
  So does an in-batch loss whose forward is the mean of per-row terms (``CFLoss.row_mean``:
  SSM, BSL): every rank scores its rows against all the global batch's positives (the
  ``[B, B]`` scores are formed on every rank, beside the replicated propagation). Another
  in-batch loss sees only the rank's own rows as negatives (as with DDP in general).
* ``mode='sampled'``: each rank samples the K-hop neighborhood (and negatives) of its
  own shard only, so the propagation cost per rank falls with :math:`W`. The random
  stream of each step (the rank's sampling generator and torch's global generators, which
  user dropout and the ``'pyg'`` sampler backend draw from) is derived from the shared
  generator, so checkpoints and resumes stay exact on every rank.

Launch (one process per GPU with NCCL, or CPU processes with gloo)::

    torchrun --nproc_per_node=4 -m pyg_cf.train.distributed \
        --dataset gowalla --model lightgcn --loss bpr --epochs 100 --batch-size 8192

See ``docs/scaling.md``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import fields, replace
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_cf.__main__ import fan_outs
from pyg_cf.data.graph import held_out_edges, train_edges
from pyg_cf.errors import ConfigError
from pyg_cf.loader.interaction_loader import CFBatch
from pyg_cf.losses.base import CFLoss, LossBatch, forward_is_row_mean, negative_sets
from pyg_cf.metrics.ranking import evaluate_scores
from pyg_cf.nn.models import GraphCF
from pyg_cf.train.config import TrainConfig
from pyg_cf.train.trainer import Callback, Trainer, history_records

__all__ = [
    "DistributedTrainer",
    "init_distributed",
    "main",
    "shard_rows",
    "slice_loss_batch",
]

log = logging.getLogger(__name__)

_METRICS = ("recall", "precision", "hitrate", "ndcg")


def init_distributed(backend: str | None = None, timeout_s: float = 600.0) -> tuple[int, int]:
    """Join the process group described by ``torchrun``'s environment variables.

    Args:
        backend: ``'nccl'`` (GPUs), ``'gloo'`` (CPU) or ``None``: NCCL when CUDA is
            available, else gloo.
        timeout_s: Collective timeout; a rank that fails (e.g. a non-finite loss) makes the
            others stop after this long instead of hanging forever.

    Returns:
        ``(rank, world_size)``; ``(0, 1)`` without initialising anything when the process
        was not started by ``torchrun`` (no ``WORLD_SIZE`` in the environment).
    """
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "WORLD_SIZE" not in os.environ:
        return 0, 1
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError(
                "backend 'nccl' needs CUDA, and torch sees no CUDA device here: use 'gloo'"
            )
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def shard_rows(n: int, rank: int, world_size: int, device: torch.device | None = None) -> Tensor:
    """Rows ``rank, rank + W, ...`` of a batch of ``n`` rows: this rank's shard."""
    return torch.arange(rank, n, world_size, device=device)


def slice_loss_batch(
    batch: LossBatch, rows: Tensor, shard: tuple[int, int] | None = None
) -> LossBatch:
    """The rows ``rows`` of a :class:`LossBatch` (``[B, ...]`` fields are indexed,
    ``in_batch_collision`` on both axes, catalogue-wide fields are kept).

    ``G`` shared sets of negatives (``neg_emb`` ``[G, M, d]``, set ``g`` owned by the
    ``g``-th block of rows, :func:`~pyg_cf.losses.base.negative_sets`) are kept as they are
    when the slice's own block layout gives each row the set it had, else gathered per row
    (``[len(rows), M, d]``). ``shard = (rank, world_size)`` says that ``rows`` are
    :func:`shard_rows` of the batch, so the layout is checked on the host without reading
    ``rows``; without it the sets are always gathered."""
    n = batch.users.numel()
    changes: dict[str, Any] = {}
    for f in fields(batch):
        v = getattr(batch, f.name)
        if not isinstance(v, Tensor) or f.name == "all_item_emb":
            continue
        if f.name == "in_batch_collision":
            changes[f.name] = v[rows][:, rows]
        elif f.name == "neg_emb" and v.dim() == 3 and 1 < v.size(0) < n:
            changes[f.name] = _sets_of_rows(v, rows, n, shard)
        elif v.dim() >= 1 and v.size(0) == n:
            changes[f.name] = v[rows]
    return replace(batch, **changes)


def _sets_of_rows(sets: Tensor, rows: Tensor, n: int, shard: tuple[int, int] | None) -> Tensor:
    if shard is not None and _shard_keeps_sets(n, sets.size(0), *shard):
        return sets  # e.g. 2048 rows, 16 sets of 128, W | 128: each shard keeps 16 blocks
    return sets[rows // negative_sets(n, sets.size(0))[1]]


@functools.lru_cache(maxsize=64)
def _shard_keeps_sets(n: int, num_sets: int, rank: int, world_size: int) -> bool:
    """Whether shard ``rank`` of ``n`` rows, laid out again over ``num_sets`` blocks, gives
    each row the set it had in the batch (decided once per batch size, not every step)."""
    own = torch.arange(rank, n, world_size) // negative_sets(n, num_sets)[1]  # global set
    k = own.numel()
    g, s = negative_sets(k, num_sets)
    return g == num_sets and torch.equal(own, torch.arange(k) // s)


class DistributedTrainer(Trainer):
    """A :class:`~pyg_cf.train.Trainer` whose steps are sharded over the ranks of a
    :mod:`torch.distributed` process group (see the module documentation).

    Call :func:`init_distributed` first (every rank builds the same model, data, loss and
    config; ``config.device`` should be ``f"cuda:{local_rank}"`` with NCCL). Parameters
    are broadcast from rank 0 at construction. ``config.batch_size`` is the *global*
    batch size. Only rank 0 of ``group`` writes checkpoints; every rank can resume from
    one (:func:`~pyg_cf.train.load_checkpoint`).

    Args:
        model: The model (replicated on every rank).
        data: The data (the same on every rank).
        loss: The loss.
        config: Settings; ``time_budget_s`` and ``sparse_grad`` are not supported (ranks
            must agree on when to stop, and sparse gradients are not averaged).
        callbacks: Callbacks; they run on every rank and see the rank's rows in
            ``on_batch_end`` (callbacks that accumulate per-row statistics, such as
            per-user adaptive temperatures, would need to all-reduce them) — the whole
            batch, the same on every rank, when :attr:`whole_batch_rows`.
        group: The process group (default: the world).
    """

    def __init__(
        self,
        model: GraphCF,
        data: HeteroData,
        loss: CFLoss,
        config: TrainConfig | None = None,
        callbacks: list[Callback] | None = None,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        if not dist.is_initialized():
            raise ConfigError(
                "DistributedTrainer needs torch.distributed: launch with torchrun and call "
                "pyg_cf.train.distributed.init_distributed() first"
            )
        cfg = config or TrainConfig()
        if cfg.time_budget_s is not None:
            raise ConfigError(
                "time_budget_s is not supported by DistributedTrainer (ranks would disagree "
                "on when to stop); use epochs"
            )
        if cfg.sparse_grad:
            raise ConfigError("sparse_grad=True is not supported by DistributedTrainer")
        if cfg.cuda_graphs:
            raise ConfigError("cuda_graphs=True is not supported by DistributedTrainer")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        if cfg.batch_size < self.world_size:
            raise ConfigError(
                f"batch_size ({cfg.batch_size}) is the global batch and must be at least the "
                f"number of processes ({self.world_size})"
            )
        super().__init__(model, data, loss, cfg, callbacks)
        with torch.no_grad():
            for t in [*self.model.parameters(), *self.model.buffers(), *self.loss.parameters()]:
                dist.broadcast(t, src=dist.get_global_rank(group, 0) if group else 0, group=group)
        self.local_generator = torch.Generator(device=self.device)
        self._weight = 1.0
        # split -> (its held-out pairs, their version, this rank's share of them)
        self._shares: dict[str, tuple[Tensor | None, int, Tensor]] = {}
        self.optimizer.register_step_pre_hook(self._average_gradients)

    # -- sharding --------------------------------------------------------------------------
    def batches(self) -> Iterator[Tensor]:
        """Global batches (the same on every rank); a last global batch smaller than the
        number of ranks is dropped."""
        for idx in super().batches():
            if idx.numel() < self.world_size:
                log.debug("dropping a last global batch of %d rows", idx.numel())
                continue
            yield idx

    def collate(self, idx: Tensor) -> CFBatch:
        """The ids of global batch ``idx`` this rank needs (see the module documentation):
        the whole batch in ``'full'`` mode (its rows are sliced after the forward pass),
        this rank's rows and their neighborhood in ``'sampled'`` mode."""
        rows = shard_rows(idx.numel(), self.rank, self.world_size, device=idx.device)
        self._weight = rows.numel() / idx.numel()
        if self.config.mode == "full":
            return super().collate(idx)
        seed = torch.randint(
            2**62, (1,), generator=self.generator, device=self.generator.device
        ).item()
        self.local_generator.manual_seed(int(seed) + self.rank)
        # torch's global generators (user dropout, the 'pyg' sampler backend) restart from
        # the shared stream too: ranks draw unequal amounts from them (shards differ in
        # size), and a checkpoint stores one rank's global state, so without this another
        # rank would resume from rank 0's state, not its own
        torch.manual_seed(int(seed) + 2**62 + self.rank)
        self.loader.generator = self.local_generator
        try:
            return super().collate(idx[rows])
        finally:
            self.loader.generator = self.generator

    @property
    def whole_batch_rows(self) -> bool:
        """Whether each rank scores its rows against the whole global batch: an in-batch
        loss whose forward is the mean of its rows' terms (``CFLoss.row_mean``: SSM, BSL)
        in ``'full'`` mode, where every rank has the whole batch's embeddings anyway."""
        return (
            self.config.mode == "full"
            and self.loss.negatives == "in-batch"
            and forward_is_row_mean(self.loss)
        )

    def embed_batch(self, cb: CFBatch) -> tuple[LossBatch, Tensor]:
        """This rank's rows of the batch's :class:`~pyg_cf.losses.LossBatch` (the whole
        batch when :attr:`whole_batch_rows`: :meth:`batch_loss` takes the rows)."""
        batch, reg = super().embed_batch(cb)
        if self.config.mode == "full" and not self.whole_batch_rows:
            n = cb.users.numel()
            rows = shard_rows(n, self.rank, self.world_size, device=cb.users.device)
            return slice_loss_batch(batch, rows, (self.rank, self.world_size)), reg
        return batch, reg

    def batch_loss(self, batch: LossBatch) -> Tensor:
        """The mean loss of this rank's rows; with :attr:`whole_batch_rows` each row's term
        is computed on the whole batch (every positive of it a negative, as in one
        process), then the rank's rows are kept."""
        if not self.whole_batch_rows:
            return super().batch_loss(batch)
        n = batch.users.numel()
        rows = shard_rows(n, self.rank, self.world_size, device=batch.users.device)
        return self.loss.per_row(batch).index_select(0, rows).mean()

    def _average_gradients(self, *_: Any) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        by_dtype: dict[torch.dtype, list[Tensor]] = {}
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if p.grad.is_sparse:
                raise ConfigError("sparse gradients cannot be averaged by DistributedTrainer")
            by_dtype.setdefault(p.grad.dtype, []).append(p)
        for group_params in by_dtype.values():
            flat = torch.cat([p.grad.reshape(-1) for p in group_params])  # type: ignore[union-attr]
            flat.mul_(self._weight)
            dist.all_reduce(flat, group=self.group)
            offset = 0
            for p in group_params:
                n = p.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
                offset += n

    def train_step(self, idx: Tensor, step: int = 0) -> tuple[LossBatch, Tensor, float]:
        """One step on this rank's shard of global batch ``idx``. The returned value (and
        the step's L2 penalty in the epoch's sum) is this rank's loss weighted by its share
        of the batch times the number of ranks, so that the ranks' average in
        :meth:`train_epoch` is the global batch's loss, as one process logs it, also when
        the shards differ in size (the gradients are weighted the same way)."""
        l2_before = self._l2_total.clone()
        batch, loss, value = super().train_step(idx, step)
        scale = self._weight * self.world_size
        if scale != 1.0:
            self._l2_total = l2_before + (self._l2_total - l2_before) * scale
        return batch, loss, value * scale

    def train_epoch(self) -> float:
        """One pass; returns the loss averaged over ranks (and sets ``last_epoch_l2`` to the
        ranks' average L2 penalty)."""
        loss = super().train_epoch()
        l2 = self.last_epoch_l2
        value = torch.tensor([loss, l2 or 0.0], dtype=torch.float64, device=self.device)
        dist.all_reduce(value, group=self.group)
        value /= self.world_size
        if l2 is not None:
            self.last_epoch_l2 = float(value[1])
        return float(value[0])

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(
        self,
        split: str = "test",
        similarity: str | None = None,
        embeddings: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, float]:
        """All-ranking metrics of ``split``, each rank ranking its shard of the users."""
        u, i = self._embeddings_or_final(embeddings)
        if (similarity or self.config.test_similarity) == "cos":
            u, i = F.normalize(u, dim=-1), F.normalize(i, dim=-1)
        it = i.t().contiguous()
        positives = held_out_edges(self.data, split)
        if positives.numel() == 0:
            raise ConfigError(f"data has no {split} positives")
        # the data's own tensors (and this rank's share, kept while its source is unchanged):
        # evaluate_scores caches their sorted indexes on u's device per source tensor, so an
        # evaluation every few epochs does not copy and sort the pairs again
        seen = [train_edges(self.data)]
        if split == "test":
            seen.append(held_out_edges(self.data, "val"))
        source, version, mine = self._shares.get(split, (None, -1, positives))
        if source is not positives or version != positives._version:
            mine = positives[:, positives[0] % self.world_size == self.rank]
            self._shares[split] = (positives, positives._version, mine)
        ks = self.config.ks
        keys = [f"{m}@{k}" for k in ks for m in _METRICS]
        sums = torch.zeros(len(keys) + 1, dtype=torch.float64, device=u.device)
        if mine.numel():
            res = evaluate_scores(
                lambda users: u[users] @ it,
                self.num_users,
                self.num_items,
                mine,
                seen,
                ks,
                device=u.device,
                per_user=True,
            )
            assert isinstance(res, tuple)
            per = res[1]
            for j, key in enumerate(keys):
                sums[j] = per[key].double().sum()
            sums[-1] = per["users"].numel()
        dist.all_reduce(sums, group=self.group)
        count = max(float(sums[-1]), 1.0)
        return {key: float(sums[j]) / count for j, key in enumerate(keys)}


# -- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``torchrun ... -m pyg_cf.train.distributed``.

    The model flags (``--model``, ``--layers``, ``--alpha0``, ``--alpha1``) and
    ``--loss-arg`` are those of ``python -m pyg_cf train``, read and checked the same way
    (:mod:`pyg_cf.__main__`)."""
    from pyg_cf.__main__ import _add_loss_arg, _add_model_arguments

    p = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m pyg_cf.train.distributed",
        description="Data-parallel graph-CF training (single process without torchrun).",
    )
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--root", default=None)
    p.add_argument("--val-ratio", type=float, default=0.0)
    _add_model_arguments(p)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--loss", default="bpr")
    _add_loss_arg(p)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=2048, help="global batch size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--mode", default="full", choices=["full", "sampled"])
    p.add_argument("--num-neighbors", type=fan_outs, default=None, help="comma-separated fan-outs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=None, choices=["nccl", "gloo"])
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--resume", default=None, help="checkpoint to resume from")
    p.add_argument("--output", default=None, help="JSON with history and metrics (rank 0)")
    p.add_argument("--save-embeddings", default=None, help="final embeddings .pt (rank 0)")
    return p


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as ``argv`` says, data-parallel when launched by ``torchrun``; returns the
    summary (also written to ``--output`` by rank 0).

    Raises:
        ConfigError: for a setting that the model or loss does not take (checked before
            the process group is joined and the data are loaded).
    """
    from pyg_cf import datasets
    from pyg_cf.__main__ import _key_values, _model_kwargs
    from pyg_cf.losses import get_loss
    from pyg_cf.train.checkpoint import load_checkpoint
    from pyg_cf.train.trainer import seed_everything

    args = build_parser().parse_args(argv)
    # the settings that need no data first, as in `python -m pyg_cf train`
    kw: dict[str, Any] = {"embedding_dim": args.dim, **_model_kwargs(args)}
    loss = get_loss(args.loss, **_key_values(args.loss_arg, "--loss-arg"))
    rank, world = init_distributed(args.backend)
    device = "cpu"
    if dist.is_initialized() and dist.get_backend() == "nccl":
        device = f"cuda:{torch.cuda.current_device()}"
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        l2_reg=args.l2,
        eval_every=args.eval_every,
        max_steps_per_epoch=args.max_steps,
        mode=args.mode,
        num_neighbors=args.num_neighbors,
        seed=args.seed,
        device=device,
        progress=False,
        patience=None,
        checkpoint_dir=args.checkpoint_dir,
    )
    data = datasets.load(args.dataset, root=args.root, val_ratio=args.val_ratio, seed=args.seed)
    seed_everything(args.seed)
    model = GraphCF.from_data(data, args.model, **kw)
    trainer: Trainer
    if world > 1:
        trainer = DistributedTrainer(model, data, loss, cfg)
    else:
        trainer = Trainer(model, data, loss, cfg)
    if args.resume:
        load_checkpoint(trainer, args.resume)
    hist = trainer.fit()
    # the model as fit() leaves it (best validation weights restored), the one saved below;
    # evaluation is a collective, so every rank runs it
    final = {}
    for split in ("val", "test"):
        if held_out_edges(data, split).numel():
            final.update({f"{split}_{k}": v for k, v in trainer.evaluate(split).items()})
    summary = {
        "world_size": world,
        "history": history_records(hist),
        "final": final,
    }
    if rank == 0:
        if args.output:
            with open(args.output, "w") as f:
                json.dump(summary, f, indent=2, default=float)
        if args.save_embeddings:
            u, i = trainer.model.embeddings()
            torch.save({"user": u.cpu(), "item": i.cpu()}, args.save_embeddings)
        print(json.dumps(summary["final"]), flush=True)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pyg_cf.train.distributed``: like ``python -m pyg_cf``, a
    :class:`~pyg_cf.errors.PygCFError` is printed as ``error: ...`` and exits with 2."""
    from pyg_cf.errors import PygCFError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(argv)
    except PygCFError as e:
        print(f"error: {e}", file=sys.stderr)
        if dist.is_initialized():
            dist.destroy_process_group()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
