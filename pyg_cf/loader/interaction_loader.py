r"""Mini-batches of training interactions with negatives and their K-hop neighborhood."""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_cf.data.graph import REV_EDGE, USER_ITEM
from pyg_cf.data.pairs import UserItemIndex, check_pairs
from pyg_cf.errors import ConfigError
from pyg_cf.loader.csr import BipartiteCSR
from pyg_cf.loader.neighbor_sampler import (
    BipartiteNeighborSampler,
    check_targets,
    check_weight_dtype,
)
from pyg_cf.losses.base import negative_sets, spread_sets
from pyg_cf.losses.negatives import NegativeSampler

__all__ = ["CFBatch", "InteractionLoader"]


@dataclass
class CFBatch:
    r"""One batch of training interactions.

    Attributes:
        edge_ids: ``[B]`` columns of the training ``edge_index`` in this batch.
        users: ``[B]`` global user ids.
        pos_items: ``[B]`` global ids of the positive items.
        neg_items: ``[B, M]`` global ids of sampled negatives, or ``None``.
        neg_log_prob: ``[B, M]`` log-probability of each negative under the sampler.
        in_batch_collision: ``[B, B]`` mask, ``True`` at ``(r, c)``, ``r != c``, when
            ``pos_items[c]`` is a training positive of ``users[r]`` (an in-batch negative
            that must not be used as one), or ``None``.
        num_collisions: Number of ``True`` entries of ``in_batch_collision`` (a 0-d
            tensor on the batch's device when there is a mask: reading it is left to the
            caller, e.g. once an epoch, since on a GPU it is a host synchronisation).
        subgraph: The batch's K-hop neighborhood as a :class:`HeteroData` in local ids
            (``['user'].n_id`` / ``['item'].n_id`` map them to global ids; both edge types
            carry ``edge_index``, ``e_id`` and ``edge_weight``), or ``None`` for
            full-graph batches.
        user_index: ``[B]`` local ids of ``users`` in ``subgraph``.
        pos_index: ``[B]`` local ids of ``pos_items``.
        neg_index: ``[B, M]`` local ids of ``neg_items``.
    """

    edge_ids: Tensor
    users: Tensor
    pos_items: Tensor
    neg_items: Tensor | None = None
    neg_log_prob: Tensor | None = None
    in_batch_collision: Tensor | None = None
    num_collisions: int | Tensor = 0
    subgraph: HeteroData | None = None
    user_index: Tensor | None = None
    pos_index: Tensor | None = None
    neg_index: Tensor | None = None

    def model_inputs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`pyg_cf.nn.GraphCF.forward` that propagate over the
        subgraph (an empty dict for a full-graph batch)."""
        if self.subgraph is None:
            return {}
        sub = self.subgraph
        return {
            "edge_index": sub[USER_ITEM].edge_index,
            "user_nodes": sub["user"].n_id,
            "item_nodes": sub["item"].n_id,
            "edge_weight": (sub[USER_ITEM].edge_weight, sub[REV_EDGE].edge_weight),
        }

    def to(self, device: torch.device | str) -> CFBatch:
        """A copy with every tensor (and the subgraph) on ``device``; this batch is left
        as it is (:meth:`HeteroData.to` works in place, so the subgraph is copied first)."""
        changes: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, HeteroData):
                changes[f.name] = copy.copy(v).to(device)
            elif isinstance(v, Tensor):
                changes[f.name] = v.to(device)
        return replace(self, **changes)


SAMPLINGS = ("edge", "user", "user_blocks")


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    """Raise a :class:`ConfigError` naming ``name`` unless ``value`` is an integer (not a
    bool) ``>= minimum`` (or ``None`` when ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        kind = "an int or None" if allow_none else "an int"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


def check_user_block_size(user_block_size: int | None, sampling: str) -> None:
    """Raise a :class:`ConfigError` unless ``user_block_size`` is ``None`` or a positive
    integer given with ``sampling='user_blocks'``."""
    if user_block_size is None:
        return
    if isinstance(user_block_size, bool) or not isinstance(user_block_size, int):
        raise ConfigError(f"user_block_size must be an int or None, got {user_block_size!r}")
    if user_block_size < 1:
        raise ConfigError(f"user_block_size must be >= 1, got {user_block_size}")
    if sampling != "user_blocks":
        raise ConfigError(
            f"user_block_size only applies to sampling='user_blocks', got sampling={sampling!r}"
        )


class InteractionLoader:
    r"""Iterates over training interactions in shuffled mini-batches.

    Each :class:`CFBatch` holds the batch's (user, positive item) pairs, negatives and, when
    ``num_neighbors`` is given, the bipartite K-hop neighborhood of the batch's users,
    positive and negative items (see :class:`BipartiteNeighborSampler`), so that a model
    propagates only over that subgraph:

    .. code-block:: python

        loader = InteractionLoader.from_data(data, num_neighbors=[10, 10, 10],
                                             num_negatives=1)
        for batch in loader:
            user_emb, item_emb = model(**batch.model_inputs())
            u = user_emb[batch.user_index]
            pos, neg = item_emb[batch.pos_index], item_emb[batch.neg_index]

    Negatives: ``num_negatives`` items per row from ``negative_sampler`` (uniform by
    default; with ``reject_positives`` a user's own training positives are re-drawn, a
    bounded number of times: see ``reject_positives``), and/or in-batch negatives (the
    other rows' positives), whose collisions with a user's own positives are flagged in
    ``in_batch_collision`` when ``mask_in_batch`` is set. The loader counts them in
    :attr:`num_collisions`.

    Args:
        edge_index: ``[2, E]`` training (user, item) pairs.
        num_users: Number of users.
        num_items: Number of items.
        batch_size: Interactions per batch (an int ``>= 1``).
        num_neighbors: Fan-out per hop (``-1`` = all), or ``None`` for no subgraph
            (full-graph training).
        shuffle: Shuffle interactions each epoch (with ``'edge'``: a new permutation per
            epoch; with ``'user_blocks'``: a new user and block order). ``False`` gives
            the stored edge order (``'edge'``) or users in id order (``'user_blocks'``);
            it is refused with ``sampling='user'``, whose random draws with replacement
            have no unshuffled order.
        drop_last: Drop the last incomplete batch.
        num_negatives: Sampled negatives per row (an int ``>= 0``; 0: none).
        negative_sampler: A :class:`~pyg_cf.losses.negatives.NegativeSampler`; uniform
            when ``None``.
        reject_positives: Re-draw sampled negatives that are training positives of the
            row's user (with the default uniform sampler; a ``negative_sampler`` given
            here rejects by its own ``positives``, whatever this flag). Best effort, not
            a guarantee: after the sampler's ``max_rounds`` (default 5) re-draws,
            positives still drawn are kept silently (a user owning most of the catalogue
            keeps many), and :meth:`collate` with ``shared`` skips rejection altogether
            (shared sets are not per row). ``negative_sampler.last_collisions`` counts
            the positives left among the last batch's negatives, shared or not.
        mask_in_batch: Compute ``in_batch_collision`` for in-batch negatives.
        positives: The training pairs as a :class:`~pyg_cf.data.pairs.UserItemIndex`
            (built from ``edge_index`` when needed and not given).
        alpha0: Target-degree exponent of the subgraph's edge weights.
        alpha1: Source-degree exponent of the subgraph's edge weights.
        degree_correction: See :class:`BipartiteNeighborSampler`.
        backend: ``'torch'`` or ``'pyg'`` (see :class:`BipartiteNeighborSampler`).
        generator: Random generator of shuffling, negatives and neighbor sampling.
        max_steps: Cap on batches per epoch (an int ``>= 1``), or ``None`` for no cap.
        sampling: How an epoch's ``E`` rows are drawn. ``'edge'`` (default): a shuffled
            pass over the training interactions, so a user appears as often as it has
            interactions. ``'user'``: ``E`` draws of a user uniformly among users with
            training interactions, each with one of its interactions uniformly (with
            replacement; the sampler of LightGCN's reference code), so every user carries
            the same weight, as in the user-averaged Recall@K and NDCG@K.
            ``'user_blocks'``: every interaction once per epoch, as ``'edge'``, but
            grouped by user: users in a shuffled order, each user's interactions
            contiguous, cut into batches of ``batch_size`` rows, so a batch holds about
            ``batch_size / mean degree`` whole users. A full-catalogue softmax needs one
            log-sum-exp per distinct user of a batch
            (:class:`~pyg_cf.losses.SoftmaxLoss`), so on Gowalla (27 interactions per user)
            its ``[B, I]`` logits shrink about 27-fold. The epoch's objective is the same
            as with ``'edge'``, the optimisation path is not: a user's own embedding gets
            its direct gradient in one step per epoch instead of one per interaction (on
            Gowalla, LightGCN + full softmax learned less per epoch than in edge order).
        user_block_size: With ``sampling='user_blocks'``, cut each user's interactions
            into blocks of at most this many rows and shuffle the blocks independently, so
            a user with ``d`` interactions gets ``ceil(d / user_block_size)`` direct updates
            per epoch (a middle ground between whole-user blocks, ``None``, and ``'edge'``,
            which is ``user_block_size=1`` at a full softmax's full cost).
        targets: The node types the model propagates into (see
            :class:`BipartiteNeighborSampler`): ``('user',)`` for user-side SVD++,
            ``('item',)`` for item-side SVD++, both (default) for LightGCN.
        dtype: Floating type of the subgraph's edge weights, the model's dtype
            (``torch.float64`` for a ``.double()`` model; see
            :class:`BipartiteNeighborSampler`). Default ``torch.float32``.
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_users: int,
        num_items: int,
        batch_size: int = 2048,
        num_neighbors: Sequence[int] | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        num_negatives: int = 0,
        negative_sampler: NegativeSampler | None = None,
        reject_positives: bool = False,
        mask_in_batch: bool = False,
        positives: UserItemIndex | None = None,
        alpha0: float = 0.5,
        alpha1: float = 0.5,
        degree_correction: bool = True,
        backend: str = "torch",
        generator: torch.Generator | None = None,
        max_steps: int | None = None,
        sampling: str = "edge",
        user_block_size: int | None = None,
        targets: Sequence[str] = ("user", "item"),
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        check_user_block_size(user_block_size, sampling)
        targets = check_targets(targets)
        check_weight_dtype(dtype)
        _check_int("batch_size", batch_size, 1)
        _check_int("num_negatives", num_negatives, 0)
        _check_int("max_steps", max_steps, 1, allow_none=True)
        if sampling == "user" and not shuffle:
            raise ConfigError(
                "shuffle=False is not supported with sampling='user': its rows are random "
                "draws with replacement, which have no unshuffled order; use "
                "sampling='edge' or 'user_blocks' for a fixed order"
            )
        if not isinstance(edge_index, Tensor):
            raise ConfigError(
                f"edge_index must be a [2, E] tensor of (user, item) ids, got "
                f"{type(edge_index).__name__}"
            )
        check_pairs(edge_index, int(num_users), int(num_items), "edge_index")
        edge_index = edge_index.long()  # int32 input: batch ids and pair keys in int64
        self.edge_index = edge_index
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.num_negatives, self.mask_in_batch = int(num_negatives), mask_in_batch
        self.max_steps = None if max_steps is None else int(max_steps)
        self.generator = generator
        self.sampling = sampling
        self.user_block_size = user_block_size
        dev = edge_index.device
        self._by_user: tuple[Tensor, Tensor, Tensor] | None = None
        if sampling == "user":
            users = edge_index[0].long()
            deg = torch.bincount(users, minlength=self.num_users)
            rowptr = torch.zeros(self.num_users + 1, dtype=torch.long, device=dev)
            torch.cumsum(deg, 0, out=rowptr[1:])
            active = torch.nonzero(deg > 0).view(-1)
            # (columns of edge_index sorted by user, row pointers, users with interactions)
            self._by_user = (torch.argsort(users, stable=True), rowptr, active)
        needs_index = mask_in_batch or (reject_positives and negative_sampler is None)
        if positives is None and needs_index:
            positives = UserItemIndex(edge_index, self.num_users, self.num_items)
        self.positives = positives
        if negative_sampler is None:  # also for negatives asked for only at collate time
            negative_sampler = NegativeSampler(
                self.num_items, positives=positives if reject_positives else None
            )
        self.negative_sampler: NegativeSampler = negative_sampler
        self.sampler: BipartiteNeighborSampler | None = None
        if num_neighbors is not None:
            self.sampler = BipartiteNeighborSampler(
                BipartiteCSR(edge_index, self.num_users, self.num_items),
                num_neighbors,
                alpha0=alpha0,
                alpha1=alpha1,
                degree_correction=degree_correction,
                backend=backend,
                targets=targets,
                dtype=dtype,
            )
        self.num_collisions: int | Tensor = 0
        self._device = dev

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> InteractionLoader:
        """A loader over the training interactions of a pyg-cf data object."""
        from pyg_cf.data.graph import train_edges

        return cls(train_edges(data), data["user"].num_nodes, data["item"].num_nodes, **kwargs)

    def __len__(self) -> int:
        e = self.edge_index.size(1)
        n = e // self.batch_size if self.drop_last else math.ceil(e / self.batch_size)
        return n if self.max_steps is None else min(n, self.max_steps)

    def index_batches(self) -> Iterator[Tensor]:
        """Column indices of the training edges, one tensor per batch."""
        e = self.edge_index.size(1)
        if self._by_user is not None:
            order = self._user_uniform_draws(e)
        elif self.sampling == "user_blocks":
            order = self._user_blocks(e)
        elif self.shuffle:
            order = torch.randperm(e, device=self._device, generator=self.generator)
        else:
            order = torch.arange(e, device=self._device)
        for s in range(len(self)):
            yield order[s * self.batch_size : (s + 1) * self.batch_size]

    def _user_blocks(self, e: int) -> Tensor:
        """All ``e`` edge columns, users in a shuffled (or, without ``shuffle``, id)
        order and each user's interactions contiguous in a shuffled order; with
        ``user_block_size``, each user's run cut into blocks that are shuffled apart."""
        users = self.edge_index[0].long()
        if not self.shuffle:
            return torch.argsort(users, stable=True)
        if self.user_block_size is not None:
            return self._capped_user_blocks(users, e, self.user_block_size)
        dev, g = self._device, self.generator
        rank = torch.empty(self.num_users, dtype=torch.long, device=dev)
        rank[torch.randperm(self.num_users, device=dev, generator=g)] = torch.arange(
            self.num_users, device=dev
        )
        within = torch.randperm(e, device=dev, generator=g)  # shuffles each user's block
        return within[torch.argsort(rank[users[within]], stable=True)]

    def _capped_user_blocks(self, users: Tensor, e: int, size: int) -> Tensor:
        """Each user's interactions in a shuffled order, cut into blocks of at most
        ``size``; the blocks of all users in a shuffled order."""
        dev, g = self._device, self.generator
        within = torch.randperm(e, device=dev, generator=g)
        grouped = within[torch.argsort(users[within], stable=True)]  # by user, shuffled
        u = users[grouped]
        deg = torch.bincount(users, minlength=self.num_users)
        start = torch.cumsum(deg, 0) - deg  # first sorted position of each user
        nblocks = torch.div(deg + size - 1, size, rounding_mode="floor")
        first_block = torch.cumsum(nblocks, 0) - nblocks
        pos = torch.arange(e, device=dev) - start[u]
        block = first_block[u] + torch.div(pos, size, rounding_mode="floor")
        total = int(nblocks.sum())
        rank = torch.empty(total, dtype=torch.long, device=dev)
        rank[torch.randperm(total, device=dev, generator=g)] = torch.arange(total, device=dev)
        return grouped[torch.argsort(rank[block], stable=True)]

    def _user_uniform_draws(self, n: int) -> Tensor:
        """``n`` edge columns: a uniform user with interactions, then a uniform one of
        its interactions (vectorised; on the edges' device)."""
        assert self._by_user is not None
        by_user, rowptr, active = self._by_user
        if active.numel() == 0:
            return torch.empty(0, dtype=torch.long, device=self._device)
        pick = torch.randint(active.numel(), (n,), device=self._device, generator=self.generator)
        u = active[pick]
        start, deg = rowptr[u], rowptr[u + 1] - rowptr[u]
        r = torch.rand(n, device=self._device, generator=self.generator)
        off = (r * deg).long().clamp_max(deg - 1)
        return by_user[start + off]

    def __iter__(self) -> Iterator[CFBatch]:
        for idx in self.index_batches():
            yield self.collate(idx)

    def collate(
        self, idx: Tensor, num_negatives: int | None = None, shared: bool | int = False
    ) -> CFBatch:
        """The :class:`CFBatch` of training-edge columns ``idx``.

        Args:
            idx: ``[B]`` columns of ``edge_index``.
            num_negatives: Overrides the loader's ``num_negatives`` for this batch.
            shared: One set of negatives for all rows: ``neg_items`` (and ``neg_index``)
                are stride-0 expanded ``[B, M]`` views of one ``[M]`` draw; an integer
                ``G``: ``G`` sets, each repeated over its block of rows
                (:func:`~pyg_cf.losses.base.negative_sets`). Shared negatives are not
                rejected against the rows' positives, even with ``reject_positives``
                (``negative_sampler.last_collisions`` then counts the positives among
                them).
        """
        users, pos = self.edge_index[0, idx], self.edge_index[1, idx]
        m = self.num_negatives if num_negatives is None else num_negatives
        neg = neg_logp = None
        if m > 0:
            neg, neg_logp = self.negative_sampler.sample(users, m, self.generator, shared=shared)
        coll: Tensor | None = None
        ncoll: int | Tensor = 0
        if self.mask_in_batch:
            assert self.positives is not None
            coll = self.positives.in_batch_collisions(users, pos)
            ncoll = coll.sum()  # stays on the device: no host read per step
            self.num_collisions = self.num_collisions + ncoll
        batch = CFBatch(idx, users, pos, neg, neg_logp, coll, ncoll)
        if self.sampler is None:
            return batch
        rows = negative_sets(idx.numel(), int(shared))[1] if shared else 1
        neg_flat = None if neg is None else neg[::rows].reshape(-1)  # each set once
        items = pos if neg_flat is None else torch.cat([pos, neg_flat])
        sub = self.sampler.sample(users, items, self.generator)
        batch.subgraph = sub.to_hetero_data()
        batch.user_index = sub.local_users(users)
        batch.pos_index = sub.local_items(pos)
        if neg is not None and neg_flat is not None:
            local = sub.local_items(neg_flat).view(-1, neg.size(1))  # one row per set
            batch.neg_index = local if rows == 1 else spread_sets(local, rows, neg.size(0))
        return batch

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_edges={self.edge_index.size(1)}, "
            f"batch_size={self.batch_size}, sampler={self.sampler})"
        )
