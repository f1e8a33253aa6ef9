r"""The :math:`(\alpha_0, \alpha_1)`-normalized bipartite propagation layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, PairTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor

from pyg_cf.errors import ConfigError
from pyg_cf.nn.spmm import CachedAdjacency, spmm_cached

__all__ = ["BipartiteNormConv", "bipartite_norm"]


def _check_alpha(name: str, value: float) -> float:
    value = float(value)
    if not -1.0 <= value <= 2.0 or value != value:
        raise ConfigError(f"{name} must lie in [-1, 2] (papers use 0, 0.5 or 1), got {value}")
    return value


def bipartite_norm(
    edge_index: Tensor,
    size: tuple[int, int],
    alpha0: float,
    alpha1: float,
    deg_src: OptTensor = None,
    deg_dst: OptTensor = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Edge weights :math:`1 / (|P_t|^{\alpha_0} |P_s|^{\alpha_1})` of edges ``s -> t``.

    Args:
        edge_index: ``[2, E]`` edges, row 0 the sources, row 1 the targets.
        size: ``(num_src, num_dst)``.
        alpha0: Exponent of the target degree.
        alpha1: Exponent of the source degree.
        deg_src: Source degrees to use (e.g. full-graph degrees for a sampled subgraph);
            counted from ``edge_index`` when ``None``.
        deg_dst: Target degrees to use; counted from ``edge_index`` when ``None``.
        dtype: Floating type of the result.

    Returns:
        ``[E]`` weights; a zero degree contributes weight 0, never ``inf``/``NaN``.
    """
    src, dst = edge_index[0], edge_index[1]
    if deg_src is None:
        deg_src = torch.bincount(src, minlength=size[0])
    if deg_dst is None:
        deg_dst = torch.bincount(dst, minlength=size[1])
    ps = deg_src.to(dtype).pow(-alpha1)
    pt = deg_dst.to(dtype).pow(-alpha0)
    ps = ps.masked_fill(deg_src == 0, 0.0)
    pt = pt.masked_fill(deg_dst == 0, 0.0)
    return pt[dst] * ps[src]


class BipartiteNormConv(MessagePassing):
    r"""Degree-normalized sum aggregation of the graph-CF family (Wu et al., TOIS 2024,
    "On the Effectiveness of Sampled Softmax Loss for Item Recommendation", eqs. 23–25).

    .. math::
        \mathbf{x}'_t = \sum_{s \in \mathcal{N}(t)}
        \frac{1}{|\mathcal{P}_t|^{\alpha_0}\, |\mathcal{P}_s|^{\alpha_1}}\, \mathbf{x}_s

    where :math:`|\mathcal{P}_t|` and :math:`|\mathcal{P}_s|` are the training degrees of
    the target and source node. :math:`\alpha_0 = \alpha_1 = 0.5` is LightGCN's symmetric
    normalization; :math:`\alpha_1 = 0` with :math:`\alpha_0 \in \{0, 0.5, 1\}` gives
    SVD++'s implicit-feedback term.

    .. note::
        ``alpha0`` / ``alpha1`` are the *target* / *source* degree exponents. They are not
        the layer-combination weights that :class:`torch_geometric.nn.models.LightGCN` calls
        ``alpha``; LightGCN++ (RecSys 2024) calls the same two exponents :math:`(\alpha,
        \beta)`.

    The layer has no parameters. It accepts a homogeneous graph (``x`` of shape ``[N, F]``,
    ``edge_index`` both directions) or a bipartite one (``x = (x_src, x_dst)``); degrees
    are counted from the given edges unless ``edge_weight`` is passed. Repeated edges are
    counted as often as they appear on the ``edge_index`` path; de-duplicate first.

    Args:
        alpha0: Exponent of the target degree (default ``0.5``).
        alpha1: Exponent of the source degree (default ``0.5``).
        cached: If ``True``, the normalized adjacency of the first graph seen is built once
            (a CSR matrix and its transpose, used for forward and backward SpMM) and reused
            while the same ``edge_index`` tensor is passed. Use it for full-graph
            (transductive) training; leave it ``False`` for sampled subgraphs.
        **kwargs: Passed to :class:`~torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)` or
          :math:`((|\mathcal{V}_s|, F), (|\mathcal{V}_t|, F))`; edge indices
          :math:`(2, |\mathcal{E}|)`, an ``EdgeIndex``, a torch sparse ``adj_t`` of shape
          :math:`(|\mathcal{V}_t|, |\mathcal{V}_s|)` or a ``SparseTensor``; optional edge
          weights :math:`(|\mathcal{E}|)` that replace the computed normalization.
        - **output:** node features :math:`(|\mathcal{V}_t|, F)`.
    """

    SUPPORTS_FUSED_EDGE_INDEX = False

    def __init__(
        self, alpha0: float = 0.5, alpha1: float = 0.5, cached: bool = False, **kwargs: Any
    ):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        self.alpha0 = _check_alpha("alpha0", alpha0)
        self.alpha1 = _check_alpha("alpha1", alpha1)
        self.cached = cached
        self._cache_key: tuple | None = None
        self._cached_adj: CachedAdjacency | SparseTensor | None = None

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._cache_key = None
        self._cached_adj = None

    # -- normalization ---------------------------------------------------------------------
    def _norm_from_edge_index(
        self, edge_index: Tensor, size: tuple[int, int], dtype: torch.dtype
    ) -> CachedAdjacency:
        w = bipartite_norm(edge_index, size, self.alpha0, self.alpha1, dtype=dtype)
        return CachedAdjacency(edge_index[1], edge_index[0], w, size[1], size[0])

    def _norm_from_sparse(self, adj_t: Any, dtype: torch.dtype) -> Any:
        if isinstance(adj_t, SparseTensor):
            row, col, _ = adj_t.coo()
            n_dst, n_src = adj_t.sparse_sizes()
            w = bipartite_norm(
                torch.stack([col, row]), (n_src, n_dst), self.alpha0, self.alpha1, dtype=dtype
            )
            return adj_t.set_value(w, layout="coo")
        coo = adj_t.to_sparse_coo().coalesce()
        row, col = coo.indices()
        n_dst, n_src = adj_t.shape
        w = bipartite_norm(
            torch.stack([col, row]), (n_src, n_dst), self.alpha0, self.alpha1, dtype=dtype
        )
        return CachedAdjacency(row, col, w, n_dst, n_src)

    def normalized_adjacency(
        self, edge_index: Adj, size: tuple[int, int], dtype: torch.dtype = torch.float32
    ) -> Any:
        """The normalized ``[num_dst, num_src]`` adjacency for ``edge_index`` (cached if
        :obj:`cached`)."""
        # The cache is tied to the very graph object it was built from (held here, so its
        # identity cannot be reused by another tensor), its sizes and dtype.
        key = (edge_index, size, dtype)
        if (
            self.cached
            and self._cached_adj is not None
            and self._cache_key is not None
            and self._cache_key[0] is edge_index
            and self._cache_key[1:] == key[1:]
        ):
            return self._cached_adj
        if isinstance(edge_index, SparseTensor) or is_torch_sparse_tensor(edge_index):
            adj = self._norm_from_sparse(edge_index, dtype)
        else:
            adj = self._norm_from_edge_index(edge_index, size, dtype)
        if self.cached:
            self._cache_key, self._cached_adj = key, adj
        return adj

    # -- forward ---------------------------------------------------------------------------
    def forward(
        self,
        x: Tensor | OptPairTensor,
        edge_index: Adj,
        edge_weight: OptTensor = None,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        if isinstance(x, Tensor):
            x = (x, x)
        x_src = x[0]
        x_dst = x[1]
        if size is None:
            size = (x_src.size(0), x_dst.size(0) if x_dst is not None else x_src.size(0))
        is_sparse = isinstance(edge_index, SparseTensor) or is_torch_sparse_tensor(edge_index)
        cache_hit = (
            self.cached
            and self._cache_key is not None
            and self._cache_key[0] is edge_index
            and edge_weight is None
        )
        if not is_sparse and not cache_hit:
            if edge_index.dim() != 2 or edge_index.size(0) != 2:
                raise ValueError(
                    f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}"
                )
            if edge_index.numel() and (
                int(edge_index[0].max()) >= size[0]
                or int(edge_index[1].max()) >= size[1]
                or int(edge_index.min()) < 0
            ):
                raise ValueError(f"edge_index refers to nodes outside size {size} (source, target)")
        if x_src.device != (
            edge_index.device() if isinstance(edge_index, SparseTensor) else edge_index.device
        ):
            raise ValueError("x and edge_index are on different devices")
        if edge_weight is not None:
            if is_sparse:
                raise ValueError("edge_weight is only accepted with an [2, E] edge_index")
            return self.propagate(edge_index, x=(x_src, x_dst), edge_weight=edge_weight, size=size)
        if is_sparse or self.cached:
            adj = self.normalized_adjacency(edge_index, size, x_src.dtype)
            if isinstance(adj, CachedAdjacency):
                if adj.shape != (size[1], size[0]):
                    raise ValueError(f"adjacency shape {adj.shape} does not match sizes {size}")
                return spmm_cached(adj, x_src)
            return self.propagate(adj, x=(x_src, x_dst), edge_weight=None, size=None)
        w = bipartite_norm(edge_index, size, self.alpha0, self.alpha1, dtype=x_src.dtype)
        return self.propagate(edge_index, x=(x_src, x_dst), edge_weight=w, size=size)

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: PairTensor) -> Tensor:
        from torch_geometric.utils import spmm

        return spmm(adj_t, x[0], reduce=self.aggr)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(alpha0={self.alpha0}, alpha1={self.alpha1}"
            f"{', cached=True' if self.cached else ''})"
        )
