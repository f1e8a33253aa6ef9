"""The training loop: full-graph or neighbor-sampled propagation, any registered loss,
all-ranking evaluation."""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from pyg_cf.data.graph import degrees, held_out_edges, train_edges
from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.loader.interaction_loader import CFBatch, InteractionLoader
from pyg_cf.losses.base import CFLoss, LossBatch, negative_sets
from pyg_cf.losses.negatives import NegativeSampler
from pyg_cf.metrics.ranking import check_ks, evaluate
from pyg_cf.nn.models import GraphCF
from pyg_cf.train.checkpoint import _cpu_copy, callback_settings, loss_settings
from pyg_cf.train.config import TrainConfig
from pyg_cf.train.cuda_graph import GraphedStep
from pyg_cf.train.memory import MMAP_THRESHOLD_MAX, retain_freed_memory
from pyg_cf.train.optim import LazyAdam

__all__ = ["Callback", "NonFiniteLossError", "Trainer", "history_records", "seed_everything"]

log = logging.getLogger(__name__)


class NonFiniteLossError(PygCFError):
    """The loss became NaN or infinite."""


def history_records(history: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a :meth:`Trainer.fit` history as plain dicts (for JSON): a value a row
    lacks (the metrics of an epoch without evaluation, ``best`` of one that set none) is
    left out rather than written as ``NaN``, which strict JSON parsers refuse."""
    return [
        {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        for row in history.to_dict(orient="records")
    ]


def _param_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype of ``model``'s first floating parameter (``None`` without one)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds third-party code using the global state
    torch.manual_seed(seed)


def _negative_sets(index: Tensor, shared: bool | int) -> tuple[Tensor, int]:
    """``(sets, rows)``: the negatives ``index`` ``[B, M]`` as the loss scores them, one
    ``[M]`` set per block of ``rows`` rows for shared negatives (``[G, M]``), else every
    row's own (``rows = 1``)."""
    rows = negative_sets(index.size(0), int(shared))[1] if shared else 1
    # the first row of each block holds its set
    return (index[::rows] if rows > 1 else index), rows


def _takes_subgraph(embed_rows: Callable[..., Any]) -> bool:
    """Whether a model's ``embed_rows`` accepts :meth:`~pyg_cf.nn.GraphCF.forward`'s
    subgraph arguments (:meth:`~pyg_cf.nn.GraphCF.embed_rows` does; another model's may
    take only ``(users, items, check)``)."""
    try:
        params = inspect.signature(embed_rows).parameters
    except (TypeError, ValueError):
        return False
    names = ("edge_index", "user_nodes", "item_nodes", "edge_weight")
    return all(n in params for n in names) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def _gather_items(
    table: Tensor, pos: Tensor, index: Tensor | None, shared: bool | int, cos: bool
) -> tuple[Tensor, Tensor | None, bool]:
    """``(pos_emb, neg_emb, unit)``: the ``[B, d]`` rows of ``table`` at the positives
    ``pos`` and the ``[B, M, d]`` rows at the negatives ``index`` ``[B, M]`` (``None``
    without negatives); for shared negatives the ``[G, M, d]`` rows of the ``G`` sets
    (``G = 1`` for ``shared=True``; no ``[B, M, d]`` copy, forward or backward).

    For cosine losses (``cos``) the negatives are gathered from the L2-normalised table
    (``unit=True``) whenever that is less work than normalising the gathered rows: always
    for per-row negatives (``[I, d]`` rows once instead of ``[B, M, d]``), for sets when
    ``G * M`` exceeds the table's rows. Otherwise positives and negatives are gathered in
    one ``index_select``, whose backward is one ``index_add`` into one table-sized gradient
    (two gathers cost two table-sized zero-fills and an addition a step).
    """
    if index is None:
        return table.index_select(0, pos), None, False
    sets, rows = _negative_sets(index, shared)
    unit = cos and sets.numel() > (table.size(0) if rows > 1 else 0)
    shape = (*sets.shape, table.size(-1))
    if unit:
        neg = F.normalize(table, dim=-1).index_select(0, sets.reshape(-1)).view(shape)
        return table.index_select(0, pos), neg, True
    # index_select (backward: index_add, no host sync, capturable) gathers rows faster
    # than advanced indexing
    both = table.index_select(0, torch.cat([pos, sets.reshape(-1)]))
    return both[: pos.numel()], both[pos.numel() :].view(shape), False


class Callback:
    """Hooks called by :class:`Trainer`; override what you need."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (1-based)."""

    def on_batch_end(self, trainer: Trainer, batch: LossBatch, loss: Tensor) -> None:
        """After each optimizer step."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        """After the epoch's evaluation; ``row`` is the history row (may be extended)."""


class Trainer:
    """Trains a :class:`~pyg_cf.nn.GraphCF` (or any module with the same ``forward``
    contract) with a registered loss and evaluates it all-ranking.

    ``config.mode`` picks how a step propagates: over the whole training graph
    (``'full'``, exact, the adjacency normalized and cached once) or over the batch's
    sampled K-hop neighborhood (``'sampled'``, :class:`~pyg_cf.loader.InteractionLoader`
    with ``config.num_neighbors``); the model and loss are the same in both. Evaluation
    always propagates over the full graph. A full-graph step of a model with
    ``embed_rows(users, items, check)`` (:meth:`~pyg_cf.nn.GraphCF.embed_rows`) forms the
    final embeddings only at the batch's rows (unless the loss scores every item, the L2
    penalty needs every hop, or the batch gathers more item rows than there are items), and
    so does a sampled step, at the batch's rows of its subgraph, when ``embed_rows`` also
    takes :meth:`~pyg_cf.nn.GraphCF.forward`'s subgraph arguments;
    setting :attr:`rows_only` to ``False`` runs ``forward()`` and gathers instead (the same
    values and gradients up to float rounding, slower).

    Selection is on the validation split when ``data`` has one (early stopping on
    ``config.monitor``, best weights restored at the end). Without a validation split the
    run lasts ``config.epochs`` epochs and the final weights are kept: the test split is
    reported, never used to choose.

    Args:
        model: The model.
        data: A pyg-cf data object.
        loss: A :class:`~pyg_cf.losses.CFLoss` (e.g. ``get_loss("ssm", tau=0.1)``).
        config: A :class:`TrainConfig`.
        callbacks: Extra :class:`Callback` objects (e.g. temperature schedules).
    """

    def __init__(
        self,
        model: GraphCF,
        data: HeteroData,
        loss: CFLoss,
        config: TrainConfig | None = None,
        callbacks: list[Callback] | None = None,
    ) -> None:
        if config is not None and not isinstance(config, TrainConfig):
            raise ConfigError(
                f"config must be a TrainConfig (e.g. TrainConfig(**settings)), "
                f"got {type(config).__name__}"
            )
        self.config = config or TrainConfig()
        if not isinstance(loss, CFLoss):
            raise ConfigError(f"loss must be a CFLoss (use get_loss), got {type(loss).__name__}")
        nu, ni = data["user"].num_nodes, data["item"].num_nodes
        if (model.num_users, model.num_items) != (nu, ni):
            raise ConfigError(
                f"model is built for {model.num_users} users / "
                f"{model.num_items} items but the data has {nu} / {ni}"
            )
        # checked here, not at the first evaluation an epoch (or hours) into the run
        check_ks(self.config.ks, ni, "the number of items")
        if self.config.l2_layers == "all" and not (
            callable(getattr(model, "layers", None)) and callable(getattr(model, "combine", None))
        ):
            raise ConfigError(
                f"l2_layers='all' needs a model with layers() and combine() (GraphCF); "
                f"{type(model).__name__} has not"
            )
        self.device = torch.device(self.config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device='cuda' but CUDA is not available")
        self.data = data
        self.model = model.to(self.device)
        self.retains_cpu_memory = self._tune_allocator()
        self.loss = loss.to(self.device)
        # as built, before any schedule changes them: a checkpoint checks them on resume
        self.loss_settings = loss_settings(self.loss)
        self.callbacks = list(callbacks or [])
        # ... and the callbacks' settings (those without a state_dict), compared likewise
        self._callback_settings = [(cb, callback_settings(cb)) for cb in self.callbacks]
        self.train_ei = train_edges(data).to(self.device)
        self.model.set_graph(self.train_ei)
        self.num_users, self.num_items = nu, ni
        self.has_val = held_out_edges(data, "val").numel() > 0
        self.seen = UserItemIndex(self.train_ei, nu, ni)
        # the layer-0 L2 lookups give sparse gradients on the CPU (see _l2_sum); on a GPU
        # table-sized fills are cheap and the dense lookups are safe to capture in a graph.
        # Another model's layer0(users, items) is called as the contract says.
        self._sparse_l2 = self.device.type == "cpu" and isinstance(self.model, GraphCF)
        # full-graph steps embed only the batch's rows (GraphCF.embed_rows: the layer sums
        # at those rows, no table-sized ones); False: forward() then gather, the reference
        # path (same values and gradients up to float rounding; benchmarks time both)
        self.rows_only = callable(getattr(self.model, "embed_rows", None))
        # ... and sampled steps too when it takes forward()'s subgraph arguments
        self._rows_on_subgraph = self.rows_only and _takes_subgraph(self.model.embed_rows)
        _, item_deg = degrees(data)
        self.sampler = NegativeSampler(
            ni,
            item_deg.to(self.device),
            kind=getattr(loss, "sampler", "uniform"),
            beta=getattr(loss, "pop_beta", 1.0),
            positives=self.seen if getattr(loss, "reject_positives", False) else None,
        )
        self.generator = torch.Generator(device=self.device)
        self.loader = self._make_loader()
        # sparse_grad: the embedding tables whose lookups give sparse gradients during a
        # step (set per step and put back: the model is the caller's, see _sparse_lookups)
        self._sparse_tables: list[torch.nn.Embedding] = []
        self.optimizer = self._make_optimizer()
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.best_score = -math.inf
        self.best_state: dict[str, Tensor] | None = None
        # the loss's parameters and buffers at the best evaluation (a learned BCE bias):
        # restored with the model's, so that both describe the same epoch
        self.best_loss_state: dict[str, Tensor] | None = None
        self.bad_evals = 0
        # an evaluation off the eval_every schedule (only the last epoch's, forced by the
        # epoch count or the time budget): the early-stopping state before it and the keys
        # it added to its history row, so that a resume that trains on (more epochs, a longer
        # budget) can drop it, as the uninterrupted run never made it
        self.unscheduled_eval: dict[str, Any] | None = None
        self.collisions: int | Tensor = 0  # a device tensor once a batch is masked
        self.last_batch: CFBatch | None = None
        self._graphed: GraphedStep | None = None
        # mean L2 penalty per step of the last epoch (None without ``l2_reg``); the loss that
        # train_epoch returns excludes it, as the history's "loss" does
        self.last_epoch_l2: float | None = None
        self._l2_total = torch.zeros((), device=self.device)
        # the last epoch's model and loss state (CPU copies) while fit() has the selected
        # best ones in place: a later fit() that trains on starts from them, as a resume
        # from the last checkpoint does (save_checkpoint writes them as the model's)
        self._last_state: dict[str, Any] | None = None
        # the checkpoint this trainer last wrote or loaded (absolute path), which a
        # non-finite loss may name as the last good one
        self._checkpoint: str | None = None

    def _make_loader(self) -> InteractionLoader:
        cfg, model = self.config, self.model
        fanout: tuple[int, ...] | None = None
        targets: tuple[str, ...] = ("user", "item")
        if cfg.mode == "sampled":
            if self.loss.negatives == "all":
                raise ConfigError(
                    f"loss {type(self.loss).__name__} scores every item (negatives='all'), "
                    "which needs mode='full'"
                )
            hops = int(getattr(model, "num_layers", 0))
            into_users = bool(getattr(model, "propagate_users", True))
            into_items = bool(getattr(model, "propagate_items", True))
            if not (into_users or into_items):
                hops = 0
            else:  # a one-sided model (SVD++): only its receiving side draws neighbors
                targets = tuple(t for t, on in (("user", into_users), ("item", into_items)) if on)
            fanout = cfg.num_neighbors if cfg.num_neighbors is not None else (10,) * hops
            if len(fanout) < hops:
                log.warning(
                    "num_neighbors has %d hops but the model propagates %d: the outer "
                    "layers see partial neighborhoods",
                    len(fanout),
                    hops,
                )
        return InteractionLoader(
            self.train_ei,
            self.num_users,
            self.num_items,
            batch_size=cfg.batch_size,
            num_neighbors=fanout,
            negative_sampler=self.sampler,
            positives=self.seen,
            mask_in_batch=self.loss.negatives == "in-batch"
            and bool(getattr(self.loss, "mask_collisions", False)),
            alpha0=float(getattr(model, "alpha0", 0.5)),
            alpha1=float(getattr(model, "alpha1", 0.5)),
            degree_correction=cfg.degree_correction,
            backend=cfg.sampler_backend,
            generator=self.generator,
            max_steps=cfg.max_steps_per_epoch,
            sampling=cfg.sampling,
            user_block_size=cfg.user_block_size,
            targets=targets,
            # a float64 model's subgraph weights in float64 (full fan-outs then equal the
            # full graph to rounding); float32 otherwise, half precision included
            dtype=torch.float64 if _param_dtype(model) == torch.float64 else torch.float32,
        )

    def _tune_allocator(self) -> bool:
        """Apply :func:`~pyg_cf.train.memory.retain_freed_memory` if the config asks
        (``None``: on the CPU once an embedding table reaches glibc's mmap threshold)."""
        want = self.config.retain_cpu_memory
        if want is None:
            biggest = max(
                (p.numel() * p.element_size() for p in self.model.parameters()), default=0
            )
            want = self.device.type == "cpu" and biggest >= MMAP_THRESHOLD_MAX
        return bool(want) and retain_freed_memory()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = list(self.model.parameters())
        # a loss's own trainable parameters (e.g. a learned logit bias) train with the model
        loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        if not self.config.sparse_grad:
            params += loss_params
            # capturable: its step can be recorded in a CUDA graph (config.cuda_graphs)
            capturable = self.config.cuda_graphs
            try:  # one fused kernel per step instead of ~6 passes over the embeddings
                return torch.optim.Adam(
                    params, lr=self.config.lr, fused=True, capturable=capturable
                )
            except (RuntimeError, TypeError, ValueError):  # pragma: no cover - old torch
                return torch.optim.Adam(params, lr=self.config.lr, capturable=capturable)
        if loss_params:
            raise ConfigError(
                f"sparse_grad=True needs a loss without trainable parameters; "
                f"{type(self.loss).__name__} has {len(loss_params)}"
            )
        embeddings = [m for m in self.model.modules() if isinstance(m, torch.nn.Embedding)]
        if {id(p) for p in params} != {id(m.weight) for m in embeddings}:
            raise ConfigError("sparse_grad=True needs a model whose parameters are all embeddings")
        # not m.sparse = True for good: the flag would stay on the caller's model, and a
        # later dense trainer's Adam would fail on its sparse gradients
        self._sparse_tables = embeddings
        return LazyAdam(params, lr=self.config.lr)

    @contextlib.contextmanager
    def _sparse_lookups(self) -> Iterator[None]:
        """The embedding tables' lookups give sparse gradients inside the block
        (``config.sparse_grad``); their ``sparse`` flags are put back after it, so the model
        is left as it was found. A lookup reads the flag when it runs: the backward pass
        after the block still gets sparse gradients."""
        tables = self._sparse_tables
        before = [m.sparse for m in tables]
        for m in tables:
            m.sparse = True
        try:
            yield
        finally:
            for m, flag in zip(tables, before):
                m.sparse = flag

    # -- batches ---------------------------------------------------------------------------
    def batches(self) -> Iterator[Tensor]:
        """Index batches over the training edges (see ``TrainConfig.sampling``)."""
        return self.loader.index_batches()

    def make_batch(self, idx: Tensor) -> tuple[LossBatch, Tensor]:
        """Embeddings and negatives of one batch, and the L2 penalty.

        In ``'full'`` mode the model propagates over the whole training graph; in
        ``'sampled'`` mode over the batch's K-hop neighborhood (same model, same call).
        """
        return self.embed_batch(self.collate(idx))

    def _negatives(self, rows: int) -> tuple[int, bool | int]:
        """``(num_negatives, shared)`` of a batch of ``rows`` rows for the loss."""
        num_neg = self.loss.num_negatives if self.loss.negatives == "sampled" else 0
        shared: bool | int = (num_neg > 0) and getattr(self.loss, "shared_negatives", False)
        if shared and negative_sets(rows, int(shared))[1] == 1:
            shared = False  # as many sets as rows: negatives per row
        return num_neg, shared

    def collate(self, idx: Tensor) -> CFBatch:
        """The ids of one batch: users, positives, sampled negatives (and in ``'sampled'``
        mode the batch's neighborhood)."""
        num_neg, shared = self._negatives(idx.numel())
        cb = self.loader.collate(idx, num_negatives=num_neg, shared=shared)
        self.last_batch = cb
        # not in place: fit() keeps the epoch's starting count (a device tensor) to subtract
        self.collisions = self.collisions + cb.num_collisions
        return cb

    def embed_batch(self, cb: CFBatch) -> tuple[LossBatch, Tensor]:
        """The :class:`~pyg_cf.losses.LossBatch` of ``cb`` (the model's forward pass) and
        the L2 penalty: pure tensor work, which :class:`~pyg_cf.train.cuda_graph.GraphedStep`
        can capture. With ``config.sparse_grad`` the embedding lookups give sparse
        gradients."""
        if not self._sparse_tables:
            return self._embed_batch(cb)
        with self._sparse_lookups():
            return self._embed_batch(cb)

    def _embed_batch(self, cb: CFBatch) -> tuple[LossBatch, Tensor]:
        _, shared = self._negatives(cb.users.numel())
        cos = getattr(self.loss, "similarity", None) == "cos"
        unit = False
        users, pos, neg = cb.users, cb.pos_items, cb.neg_items
        neg_emb = all_item_emb = None
        inputs = cb.model_inputs()  # {} (the whole graph) or the batch's sampled subgraph
        hs: tuple[list[Tensor], list[Tensor]] | None = None
        keep_hops = self.config.l2_reg > 0 and self.config.l2_layers == "all"
        sets = None if neg is None else _negative_sets(neg, shared)[0]
        sampled = cb.subgraph is not None
        if sampled:  # the rows' local ids in the subgraph
            assert cb.user_index is not None and cb.pos_index is not None
            row_users, row_pos = cb.user_index, cb.pos_index
            row_sets = None if cb.neg_index is None else _negative_sets(cb.neg_index, shared)[0]
            table_rows = int(inputs["item_nodes"].numel())
        else:
            row_users, row_pos, row_sets, table_rows = users, pos, sets, self.num_items
        if (
            self.rows_only
            and (not sampled or self._rows_on_subgraph)
            and not keep_hops
            and self.loss.negatives != "all"
            and pos.numel() + (0 if sets is None else sets.numel()) <= table_rows
        ):
            # the batch's rows only (GraphCF.embed_rows): no table-sized layer sums; the
            # loss normalises cosine negatives itself (no more rows than the table has)
            items = row_pos if row_sets is None else torch.cat([row_pos, row_sets.reshape(-1)])
            user_emb, item_emb = self.model.embed_rows(row_users, items, check=False, **inputs)
            pos_emb = item_emb[: pos.numel()]
            if sets is not None:
                neg_emb = item_emb[pos.numel() :].view(*sets.shape, item_emb.size(-1))
        else:
            if keep_hops:  # keep every hop
                hs = self.model.layers(**inputs)
                u_out, i_out = self.model.combine(*hs)
            else:
                u_out, i_out = self.model(**inputs)
            if cb.subgraph is None:
                # index_select: backward is an index_add (no host sync, capturable)
                user_emb = u_out.index_select(0, users)
                pos_emb, neg_emb, unit = _gather_items(i_out, pos, neg, shared, cos)
                if self.loss.negatives == "all":
                    all_item_emb = i_out
            else:
                assert cb.user_index is not None and cb.pos_index is not None
                user_emb = u_out.index_select(0, cb.user_index)
                pos_emb, neg_emb, unit = _gather_items(
                    i_out, cb.pos_index, cb.neg_index, shared, cos
                )
        if self.config.user_dropout > 0 and self.model.training:
            user_emb = F.dropout(user_emb, self.config.user_dropout, training=True)
        extra: dict[str, Any] = {}
        if "positives" in getattr(LossBatch, "__dataclass_fields__", {}):
            extra["positives"] = self.seen
        batch = LossBatch(
            users=users,
            pos_items=pos,
            user_emb=user_emb,
            pos_emb=pos_emb,
            neg_items=neg,
            neg_emb=neg_emb,
            neg_unit=unit,
            neg_log_prob=cb.neg_log_prob,
            all_item_emb=all_item_emb,
            in_batch_collision=cb.in_batch_collision,
            **extra,
        )
        reg = torch.zeros((), device=self.device)
        if self.config.l2_reg > 0:
            reg = self.config.l2_reg * self._l2_sum(cb, hs, shared) / (2 * users.numel())
        return batch, reg

    def batch_loss(self, batch: LossBatch) -> Tensor:
        """The loss of the step's :class:`~pyg_cf.losses.LossBatch` (``self.loss(batch)``;
        a distributed trainer may take a subset of its rows)."""
        return self.loss(batch)

    def _l2_sum(
        self, cb: CFBatch, hs: tuple[list[Tensor], list[Tensor]] | None, shared: int | None
    ) -> Tensor:
        """Sum of the squared norms ``l2_reg`` penalises: layer 0 looked up by global id
        (``hs is None``), or every hop of ``hs`` in the ids of the propagated tensors.
        Negatives count once per row that scores them (a shared set once per row of its
        block).

        Layer 0 takes one lookup per table (positives and negatives together), with sparse
        gradients on the CPU (``_sparse_l2``): three dense lookups cost three table-sized
        zero-fills and additions a step, a large share of an MF step
        (``benchmarks/bench_table_grads.py``)."""
        b = cb.users.numel()
        users, pos, neg = cb.users, cb.pos_items, cb.neg_items
        if hs is not None and cb.subgraph is not None:  # local ids of the subgraph
            assert cb.user_index is not None and cb.pos_index is not None
            users, pos, neg = cb.user_index, cb.pos_index, cb.neg_index
        count: Tensor | None = None
        if neg is not None and shared:
            rows = negative_sets(b, int(shared))[1]
            neg = neg[::rows]  # one set per block of rows
            count = torch.full((neg.size(0),), float(rows), device=self.device)
            count[-1] = b - rows * (neg.size(0) - 1)
            count = count.view(-1, *[1] * (neg.dim() - 1))
        sq_neg: Tensor | None = None
        if hs is None:
            items = pos if neg is None else torch.cat([pos, neg.reshape(-1)])
            u0, i0 = (
                self.model.layer0(users, items, sparse=True)
                if self._sparse_l2
                else self.model.layer0(users, items)
            )
            sq = i0.pow(2).sum(-1)
            total = u0.pow(2).sum() + sq[: pos.numel()].sum()
            if neg is not None:
                sq_neg = sq[pos.numel() :].view(neg.shape)
        else:
            hs_u, hs_i = hs
            total = torch.stack(
                [h.index_select(0, users).pow(2).sum() for h in hs_u]
                + [h.index_select(0, pos).pow(2).sum() for h in hs_i]
            ).sum()
            if neg is not None:
                sq_neg = torch.stack([h[neg].pow(2).sum(-1) for h in hs_i]).sum(0)
        if sq_neg is None:
            return total
        return total + (sq_neg if count is None else count * sq_neg).sum()

    # -- loop ------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        """One pass over the training edges; returns the mean loss (without the L2 penalty,
        whose mean per step is then in :attr:`last_epoch_l2`)."""
        self.model.train()
        total, n = 0.0, 0
        show = self.config.progress if self.config.progress is not None else sys.stderr.isatty()
        it = self.batches()
        bar = tqdm(
            it, total=self._steps(), desc=f"epoch {self.epoch}", disable=not show, leave=False
        )
        graphed = self._graphed_step()
        if graphed is not None:  # capture anew: the epoch's schedule may have changed state
            graphed.reset()
        # the L2 penalty is summed on the device (read once, after the epoch: no host sync)
        self._l2_total, self.last_epoch_l2 = torch.zeros((), device=self.device), None
        for step, idx in enumerate(bar):
            batch, loss, value = self.train_step(idx, step)
            for cb in self.callbacks:
                cb.on_batch_end(self, batch, loss)
            total += value
            n += 1
            if show and step % 20 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        if self.config.l2_reg > 0:
            self.last_epoch_l2 = float(self._l2_total) / max(n, 1)
        return total / max(n, 1)

    def train_step(self, idx: Tensor, step: int = 0) -> tuple[LossBatch, Tensor, float]:
        """One optimizer step on the training-edge columns ``idx``; returns the batch, its
        loss (without the L2 penalty) and the loss's value.

        Eagerly, a non-finite loss raises :class:`NonFiniteLossError` before the step is
        taken. With ``config.cuda_graphs`` the step is a CUDA graph replay whenever ``idx``
        has the shape of the recorded batch (the graph is recorded on the first such batch
        of each epoch, see :class:`~pyg_cf.train.cuda_graph.GraphedStep`); the loss is
        checked after the step, and the returned batch and loss are the graph's buffers,
        overwritten by the next replay. ``step`` numbers the batch in error messages.
        """
        cb = self.collate(idx)
        graphed = self._graphed_step()
        out = graphed(cb) if graphed is not None else None
        if out is not None:  # already stepped, inside the graph
            batch, loss, reg = out
            self._l2_total += reg.detach()  # before the next replay overwrites it
            value = float(loss.detach())
            if not math.isfinite(value):
                self._raise_non_finite(value, step, stepped=True)
            return batch, loss, value
        batch, reg = self.embed_batch(cb)
        loss = self.batch_loss(batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            self._raise_non_finite(value, step, stepped=False)
        self.optimizer.zero_grad(set_to_none=True)
        (loss + reg).backward()
        self.optimizer.step()
        self._l2_total += reg.detach()
        return batch, loss, value

    def _raise_non_finite(self, value: float, step: int, stepped: bool) -> None:
        last = (
            os.path.join(self.config.checkpoint_dir, "last.pt")
            if self.config.checkpoint_dir is not None
            else None
        )
        # only a checkpoint of this run: another run's last.pt in the folder is not one
        if self._checkpoint is not None and os.path.exists(self._checkpoint):
            kept = f"the last good checkpoint is {self._checkpoint}"
        elif last is not None:
            kept = f"no checkpoint was written yet (it would be {last})"
        elif stepped:  # a CUDA graph replay steps before the loss can be read
            kept = "set checkpoint_dir to keep a last good checkpoint"
        else:
            kept = "no step was taken with it (set checkpoint_dir to keep a last good checkpoint)"
        raise NonFiniteLossError(
            f"loss is {value} at epoch {self.epoch}, batch {step}; {kept}; lower the "
            "learning rate or check the inputs"
        )

    def _graph_step(self, cb: CFBatch) -> tuple[LossBatch, Tensor, Tensor]:
        """One whole training step of ``cb`` (what a CUDA graph captures): its batch, loss
        and L2 penalty."""
        batch, reg = self.embed_batch(cb)
        loss = self.batch_loss(batch)
        (loss + reg).backward()
        self.optimizer.step()
        return batch, loss, reg.detach()

    def _graphed_step(self) -> GraphedStep | None:
        """The CUDA-graph step runner when ``config.cuda_graphs`` (made on first use, after
        any checkpoint was loaded: the optimizer is switched to its capturable form)."""
        if not self.config.cuda_graphs:
            return None
        if self._graphed is None:
            for group in self.optimizer.param_groups:  # a loaded state may say otherwise
                group["capturable"] = True
            # eager steps (warm-up, short batches) are expected with a capturable optimizer
            self.optimizer._warned_capturable_if_run_uncaptured = True  # type: ignore[attr-defined]
            self._graphed = GraphedStep(
                self._graph_step,
                lambda: self.optimizer.zero_grad(set_to_none=True),
                device=self.device,  # capture on the trainer's device, not the current one
            )
        return self._graphed

    def _steps(self) -> int:
        return len(self.loader)

    @torch.no_grad()
    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        """The model's final user and item embeddings in eval mode, without grad."""
        self.model.eval()
        u, i = self.model()
        return u.detach(), i.detach()

    def _embeddings_or_final(
        self, embeddings: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, Tensor]:
        """Caller-given final embeddings, checked against the data, or a forward pass."""
        if embeddings is None:
            return self.final_embeddings()
        u, i = embeddings
        nu, ni = self.data["user"].num_nodes, self.data["item"].num_nodes
        if (
            u.dim() != 2
            or i.dim() != 2
            or (u.size(0), i.size(0)) != (nu, ni)
            or u.size(1) != i.size(1)
        ):
            raise ConfigError(
                f"embeddings must be ([{nu}, d], [{ni}, d]) (users, items), "
                f"got {tuple(u.shape)} and {tuple(i.shape)}"
            )
        return u, i

    @torch.no_grad()
    def evaluate(
        self,
        split: str = "test",
        similarity: str | None = None,
        embeddings: tuple[Tensor, Tensor] | None = None,
    ) -> dict[str, float]:
        """All-ranking metrics on ``split`` with the current weights, under ``similarity``
        (``None``: the configured ``test_similarity``). ``embeddings``: the output of
        :meth:`final_embeddings` when the caller already has it (one forward pass for
        several evaluations)."""
        u, i = self._embeddings_or_final(embeddings)
        sim = similarity or self.config.test_similarity
        return evaluate(u, i, self.data, split, ks=self.config.ks, similarity=sim)

    @torch.no_grad()
    def _evaluate_logged(self, split: str) -> tuple[dict[str, float], dict[str, float]]:
        """``split``'s metrics under the test similarity, and the history entries under
        it and every extra similarity (``<split>_<metric>``, ``<split>_<sim>_<metric>``),
        all from one forward pass."""
        emb = self.final_embeddings()
        main = self.evaluate(split, embeddings=emb)
        row = {f"{split}_{k}": v for k, v in main.items()}
        for sim in self.config.extra_test_similarities:
            extra = self.evaluate(split, sim, embeddings=emb)
            row.update({f"{split}_{sim}_{k}": v for k, v in extra.items()})
        return main, row

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping ended (or, resumed from its checkpoint, had ended) the
        run: not its epoch schedule, not its time budget."""
        return self.has_val and self._patience_spent()

    @property
    def budget_reached(self) -> bool:
        """Whether ``config.time_budget_s`` had run out when the last epoch so far ended:
        the clock the epoch loop reads before its evaluation (``elapsed_s`` less the
        evaluation's ``eval_s``), so a run resumed from its last checkpoint under the same
        budget stops where the uninterrupted run stopped."""
        budget = self.config.time_budget_s
        if budget is None or not self.history:
            return False
        last = self.history[-1]
        return bool(last["elapsed_s"] - last.get("eval_s", 0.0) >= budget)

    def _drop_unscheduled_eval(self) -> None:
        """Undo the last epoch's off-schedule evaluation before training on: restore the
        early-stopping state from before it and take its metrics (and its time) out of the
        history row, so that a run resumed with more epochs or a longer budget selects,
        stops and logs as the uninterrupted run does. Callbacks saw the row as it was."""
        undo = self.unscheduled_eval
        assert undo is not None
        self.best_score = undo["best_score"]
        self.best_state = undo["best_state"]
        self.best_loss_state = undo["best_loss_state"]
        self.bad_evals = undo["bad_evals"]
        if self.history:
            row = self.history[-1]
            row["elapsed_s"] = row["elapsed_s"] - row.get("eval_s", 0.0)
            for k in undo["keys"]:
                row.pop(k, None)
        self.unscheduled_eval = None

    def _patience_spent(self) -> bool:
        """Early stopping's verdict after an evaluation: ``config.patience`` evaluations
        (at least one) without improvement, at or after ``config.min_epochs``."""
        cfg = self.config
        return (
            cfg.patience is not None
            and self.bad_evals > 0
            and self.bad_evals >= cfg.patience
            and self.epoch >= cfg.min_epochs
        )

    def fit(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
        """Train until ``epochs``, early stopping or the time budget; returns the history
        (one row per epoch: the mean loss without the L2 penalty, ``l2`` — the mean L2
        penalty per step, when ``l2_reg`` > 0; reference codes such as LightGCN's log their
        sum — time, and metrics at evaluation epochs).

        With a validation split the model (and loss) end with the selected best weights;
        the last epoch's are kept aside, and a later ``fit()`` on this trainer that trains
        on (e.g. after raising ``config.epochs``) puts them back first: it continues the
        run exactly as a resume from the last checkpoint does
        (:func:`~pyg_cf.train.load_checkpoint`, which drops them, as
        :func:`~pyg_cf.train.load_weights` does: the model then holds other weights)."""
        cfg = self.config
        if self.epoch == 0:
            seed_everything(cfg.seed)
            self.generator.manual_seed(cfg.seed)
        if self.epoch > cfg.epochs:
            log.warning(
                "the run is at epoch %d, past epochs=%d (resumed with fewer epochs?): "
                "nothing to train",
                self.epoch,
                cfg.epochs,
            )
        trains_on = self.epoch < cfg.epochs and not self.budget_reached
        if self.unscheduled_eval is not None and trains_on:
            self._drop_unscheduled_eval()
        t_start = time.perf_counter() - (self.history[-1]["elapsed_s"] if self.history else 0.0)
        # a run resumed from the checkpoint of its early stop, or of its time budget's end,
        # stays stopped (another epoch could move the weights the run would have kept)
        stopped = self.stopped_early or self.budget_reached
        if self._last_state is not None and not stopped and self.epoch < cfg.epochs:
            # an earlier fit() restored the best weights: train on from the last epoch's,
            # as the optimizer's moments and the random state are the last epoch's too
            self.model.load_state_dict(self._last_state["model"])
            self.loss.load_state_dict(self._last_state["loss"])
            self._last_state = None
        while not stopped and self.epoch < cfg.epochs:
            self.epoch += 1
            lr = cfg.lr_at(self.epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            for cb in self.callbacks:
                cb.on_epoch_start(self, self.epoch)
            t0 = time.perf_counter()
            collisions = self.collisions
            loss = self.train_epoch()
            row: dict[str, Any] = {
                "epoch": self.epoch,
                "loss": loss,
                "train_s": time.perf_counter() - t0,
            }
            if self.last_epoch_l2 is not None:  # reference codes log loss + this
                row["l2"] = self.last_epoch_l2
            if self.loader.mask_in_batch:  # in-batch negatives that were own positives
                row["in_batch_collisions"] = int(self.collisions - collisions)  # one read
            if cfg.lr_milestones:
                row["lr"] = lr
            tau = getattr(self.loss, "tau", None)
            if isinstance(tau, float):
                row["tau"] = tau
            last = self.epoch == cfg.epochs or (
                cfg.time_budget_s is not None and time.perf_counter() - t_start >= cfg.time_budget_s
            )
            stop = False
            scheduled = bool(cfg.eval_every and self.epoch % cfg.eval_every == 0)
            if scheduled or last:
                t1 = time.perf_counter()
                keys_before = set(row)
                undo = {
                    "best_score": self.best_score,
                    "best_state": self.best_state,
                    "best_loss_state": self.best_loss_state,
                    "bad_evals": self.bad_evals,
                }
                if self.has_val:
                    val, logged = self._evaluate_logged("val")
                    row.update(logged)
                    score = val[cfg.monitor]
                    if score > self.best_score:
                        self.best_score, self.bad_evals = score, 0
                        self.best_state = copy.deepcopy(self.model.state_dict())
                        self.best_loss_state = copy.deepcopy(self.loss.state_dict())
                        row["best"] = True
                    else:
                        self.bad_evals += 1
                        stop = self._patience_spent()
                if cfg.eval_test or not self.has_val:
                    row.update(self._evaluate_logged("test")[1])
                row["eval_s"] = time.perf_counter() - t1
                self.unscheduled_eval = (
                    None if scheduled else {**undo, "keys": sorted(set(row) - keys_before)}
                )
            row["elapsed_s"] = time.perf_counter() - t_start
            for cb in self.callbacks:
                cb.on_epoch_end(self, self.epoch, row)
            self.history.append(row)
            log.info(
                " ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )
            if on_epoch is not None:
                on_epoch(row)
            if cfg.checkpoint_dir is not None and "eval_s" in row:
                from pyg_cf.train.checkpoint import save_checkpoint

                save_checkpoint(self, os.path.join(cfg.checkpoint_dir, "last.pt"))
            if stop or last:
                break
        if self.has_val and self.best_state is not None:
            if self._last_state is None:  # else the model holds the best weights already
                self._last_state = {
                    "model": _cpu_copy(self.model.state_dict()),
                    "loss": _cpu_copy(self.loss.state_dict()),
                }
            self.model.load_state_dict(self.best_state)
            if self.best_loss_state is not None:
                self.loss.load_state_dict(self.best_loss_state)
        return pd.DataFrame(self.history)
