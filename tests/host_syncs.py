"""A dispatch mode that records the operations that make a CPU wait for a GPU: reading a
scalar back (``.item()``, ``int()``, ``bool()``), ``nonzero``, and boolean-mask indexing
(a hidden ``nonzero``). On the CPU nothing waits, but the calls are the same, so a CPU test
can count what a GPU step would sync on."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_ATEN = torch.ops.aten
_SYNCS = (_ATEN._local_scalar_dense.default, _ATEN.nonzero.default)
_INDEX = (_ATEN.index.Tensor, _ATEN.index_put_.default, _ATEN.index_put.default)


class HostSyncs(TorchDispatchMode):
    """``with HostSyncs() as s: ...`` then ``s.syncs``: one entry per sync, named
    ``'_local_scalar_dense'``, ``'nonzero'`` or ``'bool-mask index'``."""

    def __init__(self) -> None:
        super().__init__()
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in _SYNCS:
            self.syncs.append(func.overloadpacket.__name__)
        if func in _INDEX and any(t is not None and t.dtype == torch.bool for t in args[1]):
            self.syncs.append("bool-mask index")
        out: Any = func(*args, **(kwargs or {}))
        return out
