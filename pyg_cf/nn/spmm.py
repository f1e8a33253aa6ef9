"""Sparse-dense products with a cached transpose for the backward pass.

``torch.sparse.mm`` on a CSR matrix differentiates with respect to the dense operand by
transposing the sparse matrix at every backward call. Graph CF propagates over a fixed
training graph, so both the matrix and its transpose are built once and the backward pass
is another CSR product. :class:`CachedAdjacency` holds the pair.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

__all__ = ["CachedAdjacency", "csr_from_edges", "spmm_cached"]


def csr_from_edges(row: Tensor, col: Tensor, value: Tensor, num_rows: int, num_cols: int) -> Tensor:
    """A ``[num_rows, num_cols]`` torch CSR matrix from COO triplets (sorted here)."""
    key = row * num_cols + col
    perm = torch.argsort(key)
    counts = torch.bincount(row, minlength=num_rows)
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=row.device)
    torch.cumsum(counts, 0, out=crow[1:])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(
            crow, col[perm], value[perm], (num_rows, num_cols), check_invariants=False
        )


class CachedAdjacency:
    """A sparse matrix ``A`` (``[num_dst, num_src]``) stored with its transpose.

    Args:
        row: Destination index of each non-zero.
        col: Source index of each non-zero.
        value: The non-zero values (edge weights).
        num_dst: Number of rows (destination nodes).
        num_src: Number of columns (source nodes).
    """

    def __init__(self, row: Tensor, col: Tensor, value: Tensor, num_dst: int, num_src: int):
        self.matrix = csr_from_edges(row, col, value, num_dst, num_src)
        self.matrix_t = csr_from_edges(col, row, value, num_src, num_dst)
        self.shape = (num_dst, num_src)

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def to(self, device: torch.device | str) -> CachedAdjacency:
        out = object.__new__(CachedAdjacency)
        out.matrix = self.matrix.to(device)
        out.matrix_t = self.matrix_t.to(device)
        out.shape = self.shape
        return out

    def __matmul__(self, x: Tensor) -> Tensor:
        return spmm_cached(self, x)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, adj: CachedAdjacency) -> Tensor:  # type: ignore[override]
        ctx.adj = adj
        return torch.sparse.mm(adj.matrix, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None]:  # type: ignore[override]
        gx = (
            torch.sparse.mm(ctx.adj.matrix_t, grad.contiguous())
            if ctx.needs_input_grad[0]
            else None
        )
        return gx, None


def spmm_cached(adj: CachedAdjacency, x: Tensor) -> Tensor:
    """``adj.matrix @ x`` whose gradient uses the cached transpose."""
    if x.dtype != adj.matrix.dtype:
        raise TypeError(f"spmm: adjacency is {adj.matrix.dtype} but features are {x.dtype}")
    return _SpMM.apply(x, adj)
