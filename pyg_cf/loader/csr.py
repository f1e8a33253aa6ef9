r"""Both CSR orderings of a user–item interaction graph, with full-graph degrees."""

from __future__ import annotations

import torch
from torch import Tensor

from pyg_cf.errors import DataFormatError

__all__ = ["BipartiteCSR"]


class BipartiteCSR:
    r"""User-major and item-major CSR arrays of the training interactions.

    Edges are kept in one *canonical* order, sorted by ``(user, item)``; a canonical edge
    id :math:`e` indexes the user-major arrays directly, and ``perm[e]`` is the column of
    the ``edge_index`` the index was built from. The item-major arrays hold canonical edge
    ids, so both orderings name edges the same way.

    Args:
        edge_index: ``[2, E]`` (user, item) training pairs, of an integer dtype.
        num_users: Number of users.
        num_items: Number of items.

    Raises:
        TypeError: if ``edge_index`` is not an integer tensor (floating ids are refused,
            not truncated).
        DataFormatError: if it is not ``[2, E]`` or holds ids outside
            ``[0, num_users) x [0, num_items)``.

    Attributes:
        user_rowptr, user_col: CSR of users (``user_col`` = item ids); row ``u`` holds
            canonical edges ``user_rowptr[u] : user_rowptr[u + 1]``.
        item_rowptr, item_col, item_eid: CSR of items (``item_col`` = user ids,
            ``item_eid`` = canonical edge ids); ``item_pos`` is the inverse of
            ``item_eid`` (canonical edge id -> item-major position).
        user_deg, item_deg: Full-graph training degrees :math:`|\mathcal{P}_u|`,
            :math:`|\mathcal{P}_i|`.
        perm: ``[E]`` canonical edge id -> column of the input ``edge_index``, or ``None``
            when the input is already sorted (the identity).
        users, items: ``[E]`` endpoints of each canonical edge.
    """

    def __init__(self, edge_index: Tensor, num_users: int, num_items: int) -> None:
        if not isinstance(edge_index, Tensor):
            raise TypeError(
                f"edge_index must be a [2, E] tensor of (user, item) ids, got "
                f"{type(edge_index).__name__}"
            )
        if (
            edge_index.is_floating_point()
            or edge_index.is_complex()
            or edge_index.dtype == torch.bool
        ):
            # as check_edge_index: a cast would truncate 1.5 to item 1 without a word
            raise TypeError(f"edge_index must hold integer ids, got dtype {edge_index.dtype}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise DataFormatError(
                f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}"
            )
        ei = edge_index.long()
        if ei.numel():
            # the four bounds in one host read
            bounds = torch.cat([ei.amin(dim=1), ei.amax(dim=1)]).tolist()
            lo_u, lo_i, hi_u, hi_i = bounds
            if min(lo_u, lo_i) < 0 or hi_u >= num_users or hi_i >= num_items:
                raise DataFormatError(
                    f"edge_index has ids outside {num_users} users / {num_items} items: "
                    f"users in [{lo_u}, {hi_u}], items in [{lo_i}, {hi_i}]"
                )
        self.num_users, self.num_items = int(num_users), int(num_items)
        key = ei[0] * self.num_items + ei[1]
        self.perm: Tensor | None = None
        if ei.size(1) > 1 and bool((key[1:] < key[:-1]).any()):
            self.perm = torch.argsort(key, stable=True)
            self.users = ei[0, self.perm].contiguous()
            self.items = ei[1, self.perm].contiguous()
        else:
            self.users = ei[0].contiguous()
            self.items = ei[1].contiguous()
        self.user_deg = torch.bincount(self.users, minlength=self.num_users)
        self.item_deg = torch.bincount(self.items, minlength=self.num_items)
        self.user_rowptr = self._rowptr(self.user_deg)
        self.user_col = self.items
        self.item_eid = torch.argsort(self.items, stable=True)
        self.item_col = self.users[self.item_eid]
        self.item_rowptr = self._rowptr(self.item_deg)
        self.item_pos = torch.empty_like(self.item_eid)
        self.item_pos[self.item_eid] = torch.arange(self.item_eid.numel(), device=ei.device)

    @staticmethod
    def _rowptr(deg: Tensor) -> Tensor:
        ptr = torch.zeros(deg.numel() + 1, dtype=torch.long, device=deg.device)
        torch.cumsum(deg, 0, out=ptr[1:])
        return ptr

    @property
    def num_edges(self) -> int:
        return int(self.users.numel())

    @property
    def device(self) -> torch.device:
        return self.users.device

    def to(self, device: torch.device | str) -> BipartiteCSR:
        """A copy on ``device``."""
        out = object.__new__(BipartiteCSR)
        for k, v in vars(self).items():
            setattr(out, k, v.to(device) if isinstance(v, Tensor) else v)
        return out

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_users={self.num_users}, "
            f"num_items={self.num_items}, num_edges={self.num_edges})"
        )
