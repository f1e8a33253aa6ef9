"""A CSR index of (user, item) pairs: per-user lookups, membership, in-batch collisions."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from pyg_cf.errors import ConfigError

__all__ = ["UserItemIndex", "check_pairs"]

# (id(edge_index), device of the index) -> (weakref to edge_index, its version counter,
# num_users, num_items, index)
_Key = tuple[int, torch.device]
_CACHE: dict[_Key, tuple[Any, int, int, int, UserItemIndex]] = {}
_CACHE_SIZE = 16


def _cache_device(device: torch.device | str) -> torch.device:
    """``device`` with its index filled in (``'cuda'`` is the current CUDA device), so that
    one device has one cache key."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _dropper(key: _Key) -> Callable[[Any], None]:
    """A weakref callback removing cache entry ``key`` when its tensor is freed."""

    def drop(_: Any) -> None:
        _CACHE.pop(key, None)

    return drop


def check_pairs(ei: Tensor, num_users: int, num_items: int, name: str) -> None:
    """A :class:`ConfigError` unless ``ei`` is a ``[2, E]`` integer tensor of (user, item)
    ids in ``[0, num_users) x [0, num_items)`` (an item id past the end would otherwise be
    read as an item of the next user)."""
    if ei.dim() != 2 or ei.size(0) != 2:
        raise ConfigError(
            f"{name} must be a [2, E] tensor of (user, item) ids, got shape {tuple(ei.shape)}"
        )
    if ei.is_floating_point() or ei.is_complex() or ei.dtype == torch.bool:
        raise ConfigError(f"{name} must hold integer ids, got dtype {ei.dtype}")
    if ei.numel() == 0:
        return
    lo, hi = ei.amin(dim=1).tolist(), ei.amax(dim=1).tolist()
    if min(lo) < 0 or hi[0] >= num_users or hi[1] >= num_items:
        raise ConfigError(
            f"{name} ids out of range for {num_users} users / {num_items} items: users in "
            f"[{lo[0]}, {hi[0]}], items in [{lo[1]}, {hi[1]}]"
        )


class UserItemIndex:
    """(user, item) pairs in CSR form, for vectorised lookups on any device.

    Args:
        edge_index: ``[2, E]`` pairs (users in row 0); duplicates are kept as given.
        num_users: Number of users.
        num_items: Number of items (the stride of the pair keys).

    Raises:
        ConfigError: unless ``edge_index`` is a ``[2, E]`` integer tensor of ids in
            ``[0, num_users) x [0, num_items)`` (see :func:`check_pairs`; an item id past
            the end would alias an item of the next user).
    """

    def __init__(self, edge_index: Tensor, num_users: int, num_items: int) -> None:
        check_pairs(edge_index, int(num_users), int(num_items), "edge_index")
        # int64 keys: user * num_items + item overflows int32 beyond 2^31 pairs (Amazon-Book)
        users, items = edge_index[0].long(), edge_index[1].long()
        self.num_users, self.num_items = int(num_users), int(num_items)
        keys, perm = torch.sort(users * self.num_items + items)
        self.keys = keys
        self.col = items[perm]
        self.counts = torch.bincount(users, minlength=self.num_users)
        self.rowptr = torch.zeros(self.num_users + 1, dtype=torch.long, device=users.device)
        torch.cumsum(self.counts, 0, out=self.rowptr[1:])

    @classmethod
    def cached(cls, edge_index: Tensor, num_users: int, num_items: int) -> UserItemIndex:
        """The index of ``edge_index``, built once and reused while that very tensor is alive
        and unmodified (it is keyed by object identity and checked against the tensor's
        in-place version counter), so that repeated evaluations of the same split skip the
        sort. At most a few indexes are kept."""
        return cls.cached_on(edge_index, edge_index.device, num_users, num_items)

    @classmethod
    def cached_on(
        cls,
        edge_index: Tensor,
        device: torch.device | str,
        num_users: int,
        num_items: int,
    ) -> UserItemIndex:
        """Like :meth:`cached`, for the index of ``edge_index`` on ``device`` (which may be
        another device than ``edge_index``'s): the pairs are copied there and sorted once,
        and the index is reused while the source tensor is alive and unmodified. The key is
        ``(source tensor, device)``; the cache holds only a weak reference to the source
        (its entries go with it) and the index, not the device copy of the pairs."""
        device = _cache_device(device)
        key = (id(edge_index), device)
        hit = _CACHE.get(key)
        if hit is not None:
            ref, version, nu, ni, index = hit
            if (
                ref() is edge_index
                and version == edge_index._version
                and (nu, ni) == (int(num_users), int(num_items))
            ):
                return index
        version = edge_index._version  # before the copy: an edit during it is seen next time
        index = cls(edge_index.to(device), num_users, num_items)
        _CACHE.pop(key, None)  # re-inserted last: the eviction below is oldest-first
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (
            weakref.ref(edge_index, _dropper(key)),
            version,
            int(num_users),
            int(num_items),
            index,
        )
        return index

    def to(self, device: torch.device | str) -> UserItemIndex:
        out = object.__new__(UserItemIndex)
        out.num_users, out.num_items = self.num_users, self.num_items
        out.keys, out.col, out.counts, out.rowptr = (
            t.to(device) for t in (self.keys, self.col, self.counts, self.rowptr)
        )
        return out

    def gather(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """``(row, item)`` for every listed item of ``users``; ``row`` is the position in
        ``users``."""
        start = self.rowptr[users]
        cnt = self.counts[users]
        total = int(cnt.sum())
        row = torch.repeat_interleave(
            torch.arange(users.numel(), device=users.device), cnt, output_size=total
        )
        offs = torch.arange(total, device=users.device) - torch.repeat_interleave(
            torch.cumsum(cnt, 0) - cnt, cnt, output_size=total
        )
        return row, self.col[start[row] + offs]

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        """Boolean membership of the broadcast pairs ``(users, items)``. A pair with an id
        outside ``[0, num_users)`` or ``[0, num_items)`` is not a member (its flat key
        ``user * num_items + item`` could otherwise equal a listed pair's, e.g.
        ``(u, num_items)`` and ``(u + 1, 0)``)."""
        users, items = users.long(), items.long()
        q = users * self.num_items + items
        if self.keys.numel() == 0:
            return torch.zeros_like(q, dtype=torch.bool)
        flat = q.reshape(-1)
        pos = torch.searchsorted(self.keys, flat).clamp_(max=self.keys.numel() - 1)
        inside = (users >= 0) & (users < self.num_users) & (items >= 0) & (items < self.num_items)
        return (self.keys[pos] == flat).view(q.shape) & inside

    def in_batch_collisions(
        self, users: Tensor, items: Tensor, method: str | None = None
    ) -> Tensor:
        """``[B, B]`` mask, ``True`` at ``(r, c)``, ``r != c``, when ``items[c]`` is a listed
        item of ``users[r]`` (an in-batch negative that is really a positive).

        Args:
            users: ``[B]`` user ids.
            items: ``[B]`` item ids.
            method: ``'gather'``: one look-up per listed item of the batch's users, not
                ``B^2`` searches, but variable-sized steps (``torch.unique``, a length read:
                host synchronisations on a GPU); ``'dense'``: ``B^2`` binary searches of
                fixed shape, no synchronisation; ``None`` (default): ``'dense'`` on a GPU
                while ``B^2 <= 2^24`` (≈ 270 MB of temporaries), else ``'gather'``.
        """
        if method is None:
            small = users.numel() * items.numel() <= 2**24
            method = "dense" if users.device.type != "cpu" and small else "gather"
        if method == "dense":
            mask = self.contains(users.view(-1, 1), items.view(1, -1))
            mask.fill_diagonal_(False)
            return mask
        if method != "gather":
            raise ValueError(f"method must be 'gather', 'dense' or None, got {method!r}")
        uniq_u, inv_u = torch.unique(users, return_inverse=True)
        uniq, inverse = torch.unique(items, return_inverse=True)
        slot = torch.full((self.num_items,), -1, dtype=torch.long, device=items.device)
        slot[uniq] = torch.arange(uniq.numel(), device=items.device)
        row, it = self.gather(uniq_u)
        col = slot[it]
        # items not in the batch (slot -1) go to a dummy last column, sliced off below: the
        # same pairs as keeping only col >= 0, without boolean-mask indexing (host syncs)
        col = torch.where(col >= 0, col, uniq.numel())
        per_pair = torch.zeros(
            uniq_u.numel(), uniq.numel() + 1, dtype=torch.bool, device=users.device
        )
        per_pair[row, col] = True
        mask = per_pair[:, :-1][inv_u][:, inverse]
        mask.fill_diagonal_(False)
        return mask
