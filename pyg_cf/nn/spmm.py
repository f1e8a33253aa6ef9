r"""Sparse-dense products with a cached transpose for the backward pass.

``torch.sparse.mm`` on a CSR matrix differentiates with respect to the dense operand by
transposing the sparse matrix at every backward call. Graph CF propagates over a fixed
training graph, so both the matrix and its transpose are built once and the backward pass
is another CSR product:

.. math::
    \mathbf{Y} = \mathbf{A}\mathbf{X}, \qquad
    \frac{\partial \mathcal{L}}{\partial \mathbf{X}} = \mathbf{A}^{\top}
    \frac{\partial \mathcal{L}}{\partial \mathbf{Y}}.

:class:`CachedAdjacency` holds the pair (full-graph training); :func:`spmm_rows` forms only
some rows of its product from a row slice (a one-sided model's training step, on the CPU).
:func:`spmm_edge_index` is the cached-transpose product for a per-batch subgraph given as
a sorted :class:`~torch_geometric.EdgeIndex` whose CSR and CSC orderings are cached on the
index (neighbor-sampled training); :class:`EdgeIndexAdjacency` gives the same two matrices
the :class:`Adjacency` interface of a cached pair, so that the batch-rows products
(:func:`spmm_rows`, :func:`~pyg_cf.nn.layer_sum.layer_sum_rows`) run on a subgraph too.

Backend: on CPU the products run through MKL's CSR kernel with ``int32`` indices (kept in
that dtype so that no index copy happens per call) and write into a fresh output without
zero-filling it (``addmm(..., beta=0)``). ``torch-sparse``'s ``SparseTensor`` SpMM was
measured slower for this workload on CPU (``benchmarks/bench_train_step.py`` reports both),
so it is not used for the cached path even when it is installed.

Higher-order gradients: the backward of each product is the product with the transpose,
linear in the incoming gradient, so under ``create_graph=True`` it is recorded as another
cached-pair product (the pair swapped): :func:`spmm_cached`, :func:`spmm_rows` and
:func:`spmm_edge_index` are differentiable in the features to any order (Hessian-vector
products, gradient penalties), with the same values as the plain message-passing path.
The matrices are constants (no gradient flows to the edge weights). Only the fused
:func:`~pyg_cf.nn.layer_sum.layer_sum_rows` is differentiable once (marked
``once_differentiable``: a second differentiation raises).
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any, NamedTuple, Protocol

import torch
import torch_geometric
from torch import Tensor

from pyg_cf.errors import ConfigError

__all__ = [
    "Adjacency",
    "CachedAdjacency",
    "EdgeIndexAdjacency",
    "RowSlice",
    "csr_from_edges",
    "csr_matrix",
    "row_slice",
    "spmm_cached",
    "spmm_edge_index",
    "spmm_rows",
]

_INT32_MAX = 2**31 - 1


def _index_dtype(num_rows: int, num_cols: int, nnz: int) -> torch.dtype:
    return torch.int32 if max(num_rows, num_cols, nnz) < _INT32_MAX else torch.long


def csr_matrix(crow: Tensor, col: Tensor, value: Tensor, size: tuple[int, int]) -> Tensor:
    """A torch CSR tensor from already sorted CSR arrays (no checks, no copies beyond the
    index dtype: ``int32`` when every size fits)."""
    dt = _index_dtype(size[0], size[1], col.numel())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow.to(dt), col.to(dt), value, size, check_invariants=False)


def check_bounds(row: Tensor, col: Tensor, num_rows: int, num_cols: int) -> None:
    """A :class:`ConfigError` unless every ``row`` lies in ``[0, num_rows)`` and every ``col``
    in ``[0, num_cols)``: one device read, made whenever a CSR matrix is built, because the
    matrices are built without torch's invariant checks (an id out of range would read
    outside memory, not raise)."""
    if row.numel() == 0 or torch_geometric.is_compiling():
        return
    bounds = torch.stack([torch.minimum(row.min(), col.min()), row.max(), col.max()])
    low, high_row, high_col = bounds.tolist()
    if low < 0 or high_row >= num_rows or high_col >= num_cols:
        raise ConfigError(
            f"edge index refers to nodes outside the matrix size ({num_rows}, {num_cols}): "
            f"rows up to {high_row}, columns up to {high_col}, smallest id {low}"
        )


def csr_from_edges(row: Tensor, col: Tensor, value: Tensor, num_rows: int, num_cols: int) -> Tensor:
    """A ``[num_rows, num_cols]`` torch CSR matrix from COO triplets (sorted here)."""
    # the sort key in int64: with int32 ids, row * num_cols overflows past 2**31 entries
    key = row.long() * num_cols + col.long()
    perm = torch.argsort(key)
    counts = torch.bincount(row, minlength=num_rows)
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=row.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return csr_matrix(crow, col[perm], value[perm], (num_rows, num_cols))


def _mm(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x`` for a CSR ``matrix`` and a dense ``x``."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        # MKL writes every output entry when beta == 0, so the output needs no zero fill
        # and no temporary (torch.sparse.mm fills and copies one per call).
        out = x.new_empty(matrix.size(0), x.size(1))
        return torch.addmm(out, matrix, x, beta=0.0, out=out)
    if x.device.type == "cpu":
        # no CPU CSR kernel for float16 / bfloat16: multiply in float32, round once
        return _mm(matrix.to(torch.float32), x.float()).to(x.dtype)
    return torch.sparse.mm(matrix, x)


class Adjacency(Protocol):
    """What the cached-transpose products read: a CSR matrix ``A`` (``[num_dst, num_src]``)
    and its CSR transpose (:class:`CachedAdjacency`, :class:`EdgeIndexAdjacency`)."""

    @property
    def matrix(self) -> Tensor: ...  # pragma: no cover - a protocol

    @property
    def matrix_t(self) -> Tensor: ...  # pragma: no cover - a protocol


class CachedAdjacency:
    """A sparse matrix ``A`` (``[num_dst, num_src]``) stored with its transpose.

    Args:
        row: Destination index of each non-zero.
        col: Source index of each non-zero.
        value: The non-zero values (edge weights).
        num_dst: Number of rows (destination nodes).
        num_src: Number of columns (source nodes).
        check: Check that the ids lie inside the matrix (one device read; the CSR matrices
            skip torch's own checks, so an id out of range would read outside memory).
    """

    def __init__(
        self,
        row: Tensor,
        col: Tensor,
        value: Tensor,
        num_dst: int,
        num_src: int,
        check: bool = True,
    ):
        if check:  # callers that just ran check_bounds on these ids pass False
            check_bounds(row, col, num_dst, num_src)
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

    def __deepcopy__(self, memo: dict[int, Any]) -> CachedAdjacency:
        # sparse CSR tensors have no storage that ``copy.deepcopy`` can reach
        out = object.__new__(CachedAdjacency)
        out.matrix = self.matrix.clone()
        out.matrix_t = self.matrix_t.clone()
        out.shape = self.shape
        memo[id(self)] = out
        return out

    def __matmul__(self, x: Tensor) -> Tensor:
        return spmm_cached(self, x)


class _SpMM(torch.autograd.Function):
    r""":math:`\mathbf{Y} = \mathbf{A}\mathbf{X}` with the gradient
    :math:`\mathbf{A}^{\top}\mathbf{G}` from the cached transpose; the matrices are
    constants (no gradient flows to them).

    The backward is linear in :math:`\mathbf{G}`, so under ``create_graph=True`` (grad mode
    on inside the backward: double backward, Hessian-vector products, gradient penalties)
    it is this same function applied to the pair swapped,
    :math:`\mathbf{A}^{\top}\mathbf{G}` whose own gradient is :math:`\mathbf{A}(\cdot)`:
    differentiable to any order. Otherwise it calls the product directly (``_mm``'s
    ``addmm(..., out=...)``, which autograd cannot record)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, matrix: Tensor, matrix_t: Tensor) -> Tensor:  # type: ignore[override]
        ctx.matrix, ctx.matrix_t = matrix, matrix_t
        return _mm(matrix, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return _transposed_product(ctx.matrix_t, ctx.matrix, grad), None, None


def _transposed_product(matrix_t: Tensor, matrix: Tensor, grad: Tensor) -> Tensor:
    r""":math:`\mathbf{A}^{\top}\mathbf{G}`, the gradient of a product with ``matrix``
    (:math:`\mathbf{A}`): recorded by autograd (as :class:`_SpMM` over the swapped pair)
    when grad mode is on, i.e. in a backward pass run with ``create_graph=True``."""
    if torch.is_grad_enabled():
        out: Tensor = _SpMM.apply(grad.contiguous(), matrix_t, matrix)
        return out
    return _mm(matrix_t, grad.contiguous())


def spmm_cached(adj: Adjacency, x: Tensor) -> Tensor:
    """``adj.matrix @ x`` whose gradient uses the cached transpose (differentiable in ``x``
    to any order: the module docstring)."""
    if x.dtype != adj.matrix.dtype:
        raise TypeError(f"spmm: adjacency is {adj.matrix.dtype} but features are {x.dtype}")
    return _SpMM.apply(x, adj.matrix, adj.matrix_t)


class RowSlice(NamedTuple):
    """The distinct requested rows of a CSR matrix, as a smaller CSR matrix
    (:func:`row_slice`)."""

    #: ``[R, M]`` CSR: the distinct rows, in ascending order of their ids.
    matrix: Tensor
    #: ``[nnz]`` the slice's row of each of its non-zeros (the transpose's column ids).
    row_of: Tensor
    #: ``[B]`` the slice's row of each requested row.
    inverse: Tensor

    def transpose(self) -> Tensor:
        """The ``[M, R]`` CSR transpose, by a stable sort of the columns (each column's
        rows stay in ascending order, as in the whole matrix's cached transpose)."""
        cols = self.matrix.col_indices()
        num_rows, num_cols = self.matrix.shape
        perm = torch.argsort(cols, stable=True)
        crow_t = torch.zeros(num_cols + 1, dtype=torch.long, device=cols.device)
        torch.cumsum(torch.bincount(cols, minlength=num_cols), 0, out=crow_t[1:])
        return csr_matrix(
            crow_t, self.row_of.index_select(0, perm),
            self.matrix.values().index_select(0, perm), (num_cols, num_rows),
        )  # fmt: skip


#: :func:`row_slice` slices the matrix when the distinct rows hold at most this share of its
#: non-zeros (on Gowalla's user rows at one CPU thread, forward and backward: 4.1 ms for
#: 2,048 rows, 54 k non-zeros, vs 18.7 ms for the whole cached product of 810 k: ≈ 3× more
#: per non-zero)
ROWS_MAX_SHARE = 0.25


def row_slice(adj: Adjacency, rows: Tensor, max_share: float | None = None) -> RowSlice | None:
    r"""The distinct rows ``rows`` of ``adj.matrix`` as a :class:`RowSlice`, or ``None`` when
    they hold more than ``max_share`` of its non-zeros (then the whole cached product costs
    less than slicing, which is ≈ 3× dearer per non-zero).

    Repeated ids are sliced once (a batch's positive items repeat: on Gowalla 4,096 item
    rows of a BPR batch hold ≈ 24 % of the edges, their distinct ids ≈ 17 %). Reads the
    slice's size on the host once (free on the CPU; on a GPU a synchronisation, and not
    capturable in a CUDA graph).

    Args:
        adj: The cached ``[N, M]`` adjacency.
        rows: ``[B]`` int64 row ids (repeats allowed; not range-checked).
        max_share: The largest share of the non-zeros that is sliced (``None``:
            :data:`ROWS_MAX_SHARE`).
    """
    share = ROWS_MAX_SHARE if max_share is None else max_share
    if not share >= 0:  # also refuses NaN
        raise ConfigError(f"row_slice: max_share must be a number >= 0, got {share!r}")
    matrix = adj.matrix
    distinct, inverse = torch.unique(rows, sorted=True, return_inverse=True)
    crow = matrix.crow_indices()
    start = crow.index_select(0, distinct).long()
    count = crow.index_select(0, distinct + 1).long() - start
    sub_crow = torch.zeros(distinct.numel() + 1, dtype=torch.long, device=rows.device)
    torch.cumsum(count, 0, out=sub_crow[1:])
    total = int(sub_crow[-1])  # the slice's size: one read
    if total > share * matrix.values().numel():
        return None
    row_of = torch.repeat_interleave(
        torch.arange(distinct.numel(), device=rows.device), count, output_size=total
    )
    # position of each kept non-zero in the matrix: its row's start plus its rank in it
    pos = torch.arange(total, device=rows.device) + (start - sub_crow[:-1]).index_select(0, row_of)
    sub = csr_matrix(
        sub_crow, matrix.col_indices().index_select(0, pos), matrix.values().index_select(0, pos),
        (distinct.numel(), matrix.size(1)),
    )  # fmt: skip
    return RowSlice(sub, row_of, inverse)


class _RowsSpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, rows: RowSlice) -> Tensor:  # type: ignore[override]
        ctx.rows = rows
        return _mm(rows.matrix, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None
        # a CSR product with the slice's transpose: several times faster than an
        # index_add of the rows on the CPU; differentiable again under create_graph=True
        return _transposed_product(ctx.rows.transpose(), ctx.rows.matrix, grad), None


def spmm_rows(adj: Adjacency, rows: Tensor, x: Tensor, max_share: float | None = None) -> Tensor:
    r"""Rows ``rows`` of ``adj.matrix @ x`` (repeats allowed), computed from those rows of the
    matrix only: :math:`\mathbf{S}\mathbf{A}\mathbf{X}` with :math:`\mathbf{S}` the row
    selection, and the gradient :math:`(\mathbf{S}\mathbf{A})^{\top}\mathbf{G}` through the
    slice's transpose.

    The work is proportional to the distinct selected rows' non-zeros instead of the whole
    matrix's (a batch of 2,048 Gowalla users holds ≈ 7 % of the training edges). When the
    rows hold more than ``max_share`` of the matrix's non-zeros, the whole product is
    formed and its rows gathered instead (:func:`row_slice`).

    Args:
        adj: The cached ``[N, M]`` adjacency.
        rows: ``[B]`` int64 row ids (not range-checked).
        x: ``[M, d]`` dense features, differentiable.
        max_share: The largest share of the non-zeros sliced rather than multiplied whole
            (``None``: :data:`ROWS_MAX_SHARE`).

    Returns:
        ``[B, d]``.
    """
    if x.dtype != adj.matrix.dtype:
        raise TypeError(f"spmm: adjacency is {adj.matrix.dtype} but features are {x.dtype}")
    sliced = row_slice(adj, rows, max_share)
    if sliced is None:
        return spmm_cached(adj, x).index_select(0, rows)
    out: Tensor = _RowsSpMM.apply(x, sliced)
    return out.index_select(0, sliced.inverse)


def _ptr(sorted_index: Tensor, size: int) -> Tensor:
    """CSR row pointer of a sorted row index: ``ptr[r]`` = the first position holding a row
    ``>= r``. A binary search per row, so no device synchronisation (a ``bincount`` of
    unknown length would need one)."""
    rows = torch.arange(size + 1, dtype=sorted_index.dtype, device=sorted_index.device)
    return torch.searchsorted(sorted_index.contiguous(), rows)


def _sorted_view(edge_index: Any, by: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(sorted_key, other, perm)`` of ``edge_index`` sorted by row ``by`` (0 or 1), from
    the index's cached sort permutation. Its cached pointer arrays are not used: PyG 2.8's
    ``EdgeIndex.flip`` swaps them wrongly for non-square sizes."""
    (_, other), perm = edge_index.get_csr() if by == 0 else edge_index.get_csc()
    data = edge_index.as_subclass(Tensor)
    key = data[by] if perm is None else data[by][perm]
    return key, other.as_subclass(Tensor), perm


class _EdgeIndexCSR:
    """The forward CSR matrix of an ``EdgeIndex`` with given weights, and (built on first
    use, in the backward pass) its transpose; kept on the index while the same weight
    tensor is used, so the ``K`` layers of a forward/backward pass share one build. It holds
    no reference to the index (which holds it): the pair is freed as soon as the index is
    unused, without waiting for the cyclic garbage collector.

    On the CPU the edges of weight 0 are left out of both matrices: they add nothing, and a
    sampled subgraph holds many (a node receives messages only along the edges it drew, so
    an edge that only its user drew weighs 0 from user to item, and the other way round:
    about half of each direction's edges; a non-finite feature then adds nothing across
    such an edge, where ``0 * inf`` would give NaN). On a GPU they are kept, since leaving
    them out needs their count on the host."""

    def __init__(self, edge_index: Any, w: Tensor, n_src: int, n_dst: int) -> None:
        data = edge_index.as_subclass(Tensor)
        check_bounds(data[0], data[1], n_src, n_dst)
        self.w, self.n_src, self.n_dst = w, n_src, n_dst
        self.a = self._csr(edge_index, 1, n_dst, n_src)
        self._a_t: Tensor | None = None

    def _csr(self, edge_index: Any, by: int, n_rows: int, n_cols: int) -> Tensor:
        """The ``[n_rows, n_cols]`` CSR matrix of the edges sorted by row ``by`` of the
        index (1: targets, the forward matrix; 0: sources, its transpose)."""
        key, other, perm = _sorted_view(edge_index, by)
        w = self.w if perm is None else self.w[perm]
        if w.device.type == "cpu":
            kept = w != 0
            key, other, w = key[kept], other[kept], w[kept]
        return csr_matrix(_ptr(key, n_rows), other, w, (n_rows, n_cols))

    def a_t(self, edge_index: Any) -> Tensor:
        """The transpose, from ``edge_index`` (the index this was built from)."""
        if self._a_t is None:
            self._a_t = self._csr(edge_index, 0, self.n_src, self.n_dst)
        return self._a_t


class _EdgeIndexSpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, mats_and_index: tuple[_EdgeIndexCSR, Any]) -> Tensor:  # type: ignore[override]
        # the pair is one non-tensor argument: the index is kept for the backward pass by
        # the autograd graph, not by the matrices cached on it
        ctx.mats, ctx.edge_index = mats_and_index
        return _mm(ctx.mats.a, x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None]:  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None
        # differentiable again under create_graph=True (see _SpMM)
        return _transposed_product(ctx.mats.a_t(ctx.edge_index), ctx.mats.a, grad), None


def spmm_edge_index(edge_index: Any, edge_weight: Tensor, x_src: Tensor) -> Tensor:
    r"""Weighted aggregation :math:`\mathbf{y}_t = \sum_{(s, t)} w_{st}\, \mathbf{x}_s` over a
    sorted :class:`~torch_geometric.EdgeIndex` (row 0 sources, row 1 targets) as one CSR
    product.

    The target-sorted (CSC) ordering of ``edge_index`` gives the forward matrix and its
    source-sorted (CSR) ordering the transpose for the backward pass; both permutations are
    cached on the index by :class:`~torch_geometric.EdgeIndex` (filled once per subgraph,
    kept by ``flip(0)``), so no call sorts. The matrices are kept on the index while the
    same, unmodified weight tensor is passed (an in-place change rebuilds them). The gradient
    flows to ``x_src`` only: edge weights are treated as constants (the layer routes
    weights that require a gradient elsewhere).

    Args:
        edge_index: A sorted ``EdgeIndex`` with ``sparse_size`` ``(num_src, num_dst)``.
        edge_weight: ``[E]`` weights aligned with the columns of ``edge_index``.
        x_src: ``[num_src, F]`` source features.

    Returns:
        ``[num_dst, F]`` aggregated features.
    """
    n_src = int(edge_index.get_sparse_size(0))
    if x_src.size(0) != n_src:
        raise ValueError(f"x_src has {x_src.size(0)} rows but edge_index has {n_src} sources")
    return _EdgeIndexSpMM.apply(
        x_src, (_edge_index_csr(edge_index, edge_weight, x_src.dtype), edge_index)
    )


def _edge_index_csr(edge_index: Any, edge_weight: Tensor, dtype: torch.dtype) -> _EdgeIndexCSR:
    """The cached matrices of ``edge_index`` weighted by ``edge_weight`` (cast to
    ``dtype``): built on the first call, then reused while the weights, the index and the
    dtype are unchanged."""
    ident = id(edge_index)
    cache = _CSR_CACHE.get(ident)
    if (
        cache is None
        or cache[0] is not edge_weight
        or cache[1] != edge_weight._version  # the same tensor modified in place
        or cache[2] != edge_index._version  # the index itself modified in place
        or cache[3].w.dtype != dtype
    ):
        n_src, n_dst = (int(v) for v in edge_index.get_sparse_size())
        mats = _EdgeIndexCSR(edge_index, edge_weight.detach().to(dtype), n_src, n_dst)
        if ident not in _CSR_CACHE:
            weakref.finalize(edge_index, _CSR_CACHE.pop, ident, None)
        cache = (edge_weight, edge_weight._version, edge_index._version, mats)
        _CSR_CACHE[ident] = cache
    return cache[3]


class EdgeIndexAdjacency:
    r"""The :class:`Adjacency` of a sorted :class:`~torch_geometric.EdgeIndex` (row 0
    sources, row 1 targets) weighted by ``edge_weight``: ``matrix`` is the ``[num_dst,
    num_src]`` aggregation :math:`\mathbf{A}` of :func:`spmm_edge_index`, ``matrix_t`` its
    transpose (built on first read). Both come from, and stay in, the index's cache, so a
    layer's product and a batch-rows product over the same subgraph and weights share them.

    Args:
        edge_index: A sorted ``EdgeIndex`` with ``sparse_size`` ``(num_src, num_dst)``.
        edge_weight: ``[E]`` weights aligned with the columns of ``edge_index``
            (constants: no gradient flows to them).
        dtype: The features' dtype (the weights are cast to it).
    """

    def __init__(self, edge_index: Any, edge_weight: Tensor, dtype: torch.dtype) -> None:
        self._mats = _edge_index_csr(edge_index, edge_weight, dtype)
        self._edge_index = edge_index
        self.shape = (self._mats.n_dst, self._mats.n_src)

    @property
    def matrix(self) -> Tensor:
        return self._mats.a

    @property
    def matrix_t(self) -> Tensor:
        return self._mats.a_t(self._edge_index)


# id(EdgeIndex) -> (weights, their version, the index's version, matrices): kept beside the
# index, not on it (an attribute made copy.deepcopy of the index fail on the CSR tensors),
# and dropped with it
_CSR_CACHE: dict[int, tuple[Tensor, int, int, _EdgeIndexCSR]] = {}
