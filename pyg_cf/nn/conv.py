r"""The :math:`(\alpha_0, \alpha_1)`-normalized bipartite propagation layer."""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch_geometric
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptPairTensor, OptTensor, PairTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor

from pyg_cf.errors import ConfigError
from pyg_cf.nn.spmm import CachedAdjacency, check_bounds, spmm_cached, spmm_edge_index

__all__ = ["BipartiteNormConv", "bipartite_norm", "check_edge_index", "check_node_ids"]


def _check_alpha(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [-1, 2], got {value!r}") from None
    if not -1.0 <= value <= 2.0 or value != value:
        raise ConfigError(f"{name} must lie in [-1, 2] (papers use 0, 0.5 or 1), got {value}")
    return value


def _check_size(size: Any, name: str = "size") -> tuple[int, int]:
    if torch.jit.is_tracing():  # sizes are traced values, not Python ints
        return size  # type: ignore[no-any-return]
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)
    ):
        raise ConfigError(f"{name} must be a pair of non-negative integers, got {size!r}")
    return int(size[0]), int(size[1])


def check_edge_index(edge_index: Any, size: tuple[int, int] | None = None) -> Tensor:
    """Check that ``edge_index`` is an integer ``[2, E]`` tensor whose sources lie in
    ``[0, size[0])`` and targets in ``[0, size[1])``; returns it.

    The value check reads the tensor (a device synchronisation, a graph break under
    :func:`torch.compile`); compiled code skips it, so validate the graph before compiling.

    Raises:
        TypeError: if ``edge_index`` is not an integer tensor.
        ConfigError: if its shape or values are wrong.
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"edge_index must be a [2, E] integer tensor, got {type(edge_index).__name__}"
        )
    if edge_index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"edge_index must hold torch.long indices, got dtype {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ConfigError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    if size is not None and isinstance(edge_index, EdgeIndex):
        # PyG's message passing would stop on it with the features' sizes unnamed
        declared = tuple(edge_index.sparse_size())
        if any(d is not None and d != n for d, n in zip(declared, size)):
            raise ConfigError(
                f"edge_index is an EdgeIndex of sparse_size {declared} but the features give "
                f"{tuple(size)} (sources, targets)"
            )
    if (
        size is not None
        and edge_index.numel()
        and not torch_geometric.is_compiling()
        and not is_validated(edge_index, tuple(size))
    ):
        # the three bounds in one host read (one device synchronisation, not three)
        bounds = torch.stack([edge_index.min(), edge_index[0].max(), edge_index[1].max()])
        low, high_src, high_dst = bounds.tolist()
        if high_src >= size[0] or high_dst >= size[1] or low < 0:
            raise ConfigError(
                f"edge_index refers to nodes outside size {tuple(size)} (source, target): "
                f"ids range over [{low}, {max(high_src, high_dst)}]"
            )
        mark_validated(edge_index, tuple(size))
    return edge_index


# id(tensor) -> (check key, version counter at the check); an entry leaves with its tensor
# (weakref.finalize), and nothing is stored on the tensor itself, so nothing of it travels
# through pickling or torch.save into another tensor
_VALIDATED: dict[int, tuple[Any, int]] = {}


def mark_validated(t: Tensor, key: Any) -> None:
    """Record that ``t``'s values passed the check named by ``key`` (e.g. an edge index's
    size), so that the ``K`` layers of a forward pass, or a model fed ids that a sampler
    built, skip the device read. The record holds ``t``'s version counter: an in-place
    change of ``t`` voids it."""
    try:
        version = t._version
    except RuntimeError:  # e.g. inference tensors have no version counter
        return
    ident = id(t)
    if ident not in _VALIDATED:
        weakref.finalize(t, _VALIDATED.pop, ident, None)
    _VALIDATED[ident] = (key, version)


def is_validated(t: Tensor, key: Any) -> bool:
    """Whether :func:`mark_validated` recorded ``key`` for ``t`` and ``t`` is unchanged
    since."""
    rec = _VALIDATED.get(id(t))
    if rec is None:
        return False
    try:
        return bool(rec == (key, t._version))
    except RuntimeError:  # e.g. inference tensors have no version counter
        return False


def check_node_ids(*groups: tuple[Any, int, str]) -> None:
    r"""Check that each ``(ids, n, name)`` of ``groups`` is a 1-D integer tensor of node
    ids in :math:`[0, n)`.

    The bounds of all the groups come back in one host read (one device synchronisation
    for the lot), skipped for a tensor that passed this check unchanged before (a record
    of :func:`mark_validated` with key ``('ids', n)``, as a sampler leaves on the node ids
    of its subgraphs); a tensor that passes is marked. Compiled code skips the value check.

    Raises:
        TypeError: if ``ids`` is not an integer tensor.
        ConfigError: if it is not 1-D, or if an id lies outside :math:`[0, n)` (the message
            names ``name``, the valid range and the smallest and largest id found).
    """
    pending: list[tuple[Tensor, int, str]] = []
    for ids, n, name in groups:
        if not isinstance(ids, Tensor):
            raise TypeError(f"{name} must be a 1-D integer tensor, got {type(ids).__name__}")
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise TypeError(f"{name} must be integers, got dtype {ids.dtype}")
        if ids.dim() != 1:
            raise ConfigError(f"{name} must be a 1-D tensor, got shape {tuple(ids.shape)}")
        if ids.numel() and not torch_geometric.is_compiling() and not is_validated(ids, ("ids", n)):
            pending.append((ids, n, name))
    if not pending:
        return
    device = pending[0][0].device
    bounds = torch.cat([torch.stack(torch.aminmax(ids)).to(device) for ids, _, _ in pending])
    values = bounds.tolist()  # one host read for every group
    for k, (ids, n, name) in enumerate(pending):
        low, high = values[2 * k], values[2 * k + 1]
        if low < 0 or high >= n:
            raise ConfigError(f"{name} must lie in [0, {n}); got min {low}, max {high}")
        mark_validated(ids, ("ids", n))


def _adj_shape(adj_t: Any) -> tuple[int, ...]:
    """``(num_rows, num_cols)`` of a ``SparseTensor`` or torch sparse ``adj_t``."""
    if isinstance(adj_t, SparseTensor):
        return tuple(int(v) for v in adj_t.sparse_sizes())
    return tuple(adj_t.shape)


def _check_adj_size(adj_t: Any, size: tuple[int, int]) -> None:
    """A :class:`ConfigError` unless ``adj_t`` (``[num_dst, num_src]``) has the shape that
    ``size = (num_src, num_dst)`` (from the features, or given) asks for. Metadata only:
    no device read."""
    shape = _adj_shape(adj_t)
    if shape != (size[1], size[0]):
        raise ConfigError(
            f"adj_t of shape {shape} does not match the features: expected (num_targets, "
            f"num_sources) = ({size[1]}, {size[0]}), the rows of x_dst and x_src (or size="
            f"{tuple(size)}, which is (num_sources, num_targets))"
        )


_UNIT_VALUES = "adj_t values all 1"


def _check_unit_values(adj_t: Any) -> None:
    """A :class:`ConfigError` unless every value stored in ``adj_t`` is 1 (or it stores
    none). The layer computes the edge weights from the degrees, so other values would be
    dropped without a trace; a coalesced torch sparse ``adj_t`` stores a repeated edge as
    one entry of value 2. One device read per tensor and version (:func:`mark_validated`):
    a torch sparse tensor's version moves with in-place changes of its values or indices,
    a ``SparseTensor``'s value tensor's with changes of it."""
    if isinstance(adj_t, SparseTensor):
        value, owner = adj_t.storage.value(), adj_t.storage.value()
    else:
        value = adj_t._values() if adj_t.layout == torch.sparse_coo else adj_t.values()
        owner = adj_t
    if (
        value is None
        or value.numel() == 0
        or torch_geometric.is_compiling()
        or is_validated(owner, _UNIT_VALUES)
    ):
        return
    if not bool((value == 1).all()):  # one host read
        flat = value.reshape(-1)
        bad = flat[(flat != 1).nonzero()[0, 0]].item()  # the error path only
        raise ConfigError(
            f"adj_t stores values other than 1 (e.g. {bad}); BipartiteNormConv computes the "
            "edge weights from the degrees and would ignore them (a coalesced torch sparse "
            "adj_t stores a repeated edge as one entry of its count). Pass the graph as an "
            "adj_t of ones (repeated edges as repeated entries of an uncoalesced COO), or "
            "weights as edge_weight with a [2, E] edge_index"
        )
    mark_validated(owner, _UNIT_VALUES)


def _num_targets(x_dst: Tensor | None, edge_index: Any, is_sparse: bool) -> int:
    """The number of target nodes when no ``size`` is given: ``x_dst``'s rows, else the
    size the adjacency carries (an ``EdgeIndex``'s ``sparse_size``, an ``adj_t``'s rows)."""
    if x_dst is not None:
        return x_dst.size(0)
    if isinstance(edge_index, SparseTensor):
        return int(edge_index.sparse_size(0))
    if is_sparse:
        return int(edge_index.size(0))
    if isinstance(edge_index, EdgeIndex) and edge_index.sparse_size(1) is not None:
        return int(edge_index.sparse_size(1))
    raise ConfigError(
        "x = (x_src, None) leaves the number of target nodes open: pass size=(num_src, "
        "num_dst), or an EdgeIndex with its sparse_size"
    )


def _check_features(x: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(x, Tensor):
        x = (x, x)
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise TypeError(
            f"x must be a [N, F] tensor or a pair (x_src, x_dst), got {type(x).__name__}"
        )
    x_src, x_dst = x
    for name, v in (("x_src", x_src), ("x_dst", x_dst)):
        if v is None and name == "x_dst":
            continue
        if not isinstance(v, Tensor):
            raise TypeError(f"{name} must be a [N, F] tensor, got {type(v).__name__}")
        if v.dim() != 2:
            raise ConfigError(f"{name} must have shape [N, F], got {tuple(v.shape)}")
    if not x_src.is_floating_point():
        raise TypeError(f"node features must be floating point, got {x_src.dtype}")
    return x_src, x_dst


def _check_degrees(deg: Any, n: int, name: str) -> None:
    if deg is None:
        return
    if not isinstance(deg, Tensor) or deg.dim() != 1 or deg.numel() < n:
        shape = tuple(deg.shape) if isinstance(deg, Tensor) else type(deg).__name__
        raise ConfigError(f"{name} must be a 1-D tensor of at least {n} degrees, got {shape}")


def bipartite_norm(
    edge_index: Tensor,
    size: tuple[int, int],
    alpha0: float,
    alpha1: float,
    deg_src: OptTensor = None,
    deg_dst: OptTensor = None,
    dtype: torch.dtype = torch.float32,
    check: bool = True,
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
        check: Validate the arguments (:func:`check_edge_index`; callers that already
            did may pass ``False``).

    Returns:
        ``[E]`` weights; a zero degree contributes weight 0, never ``inf``/``NaN``.
    """
    if check:
        size = _check_size(size)
        check_edge_index(edge_index, size)
        _check_degrees(deg_src, size[0], "deg_src")
        _check_degrees(deg_dst, size[1], "deg_dst")
    src, dst = edge_index[0], edge_index[1]
    if deg_src is None:
        deg_src = torch.bincount(src, minlength=size[0])
    if deg_dst is None:
        deg_dst = torch.bincount(dst, minlength=size[1])
    # powers in at least float32: a float16 degree above 65504 would be inf (weight 0)
    calc = torch.promote_types(dtype, torch.float32)
    ps = deg_src.to(calc).pow(-alpha1)
    pt = deg_dst.to(calc).pow(-alpha0)
    ps = ps.masked_fill(deg_src == 0, 0.0)
    pt = pt.masked_fill(deg_dst == 0, 0.0)
    # index_select: 2-4x faster than advanced indexing for 1-D gathers on the CPU
    return (pt.index_select(0, dst) * ps.index_select(0, src)).to(dtype)


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
    counted as often as they appear, on every input type (an ``[2, E]`` index, an
    ``EdgeIndex``, a ``SparseTensor``, or a torch sparse ``adj_t`` whose repeated entries
    are kept, i.e. an uncoalesced COO); de-duplicate first. An ``adj_t`` gives the graph
    only: its stored values must all be 1 (checked once per tensor), since the layer
    computes the weights :math:`1 / (|\mathcal{P}_t|^{\alpha_0} |\mathcal{P}_s|^{\alpha_1})`
    itself; weights of your own go in ``edge_weight``, with a ``[2, E]`` ``edge_index``.

    Args:
        alpha0: Exponent of the target degree (default ``0.5``).
        alpha1: Exponent of the source degree (default ``0.5``).
        cached: If ``True``, the normalized adjacency of the first graph seen is built once
            (a CSR matrix and its transpose, used for forward and backward SpMM) and reused
            while the same ``edge_index`` tensor is passed. Use it for full-graph
            (transductive) training; leave it ``False`` for sampled subgraphs.
        **kwargs: Passed to :class:`~torch_geometric.nn.conv.MessagePassing` (e.g.
            ``node_dim``, ``decomposed_layers``). The layer is defined as the normalized
            *sum* above, from row 0 (sources) into row 1 (targets), and its sparse-product
            paths (``cached=True``, a torch sparse ``adj_t``, a sorted ``EdgeIndex`` with
            ``edge_weight``) compute exactly that; so ``aggr`` may only be ``"add"`` (or its
            alias ``"sum"``) and ``flow`` only ``"source_to_target"``. For the other
            direction pass ``edge_index.flip(0)``.

    Raises:
        ConfigError: if ``alpha0`` / ``alpha1`` lie outside :math:`[-1, 2]`, or ``aggr`` /
            ``flow`` is given another value than the supported one (see ``**kwargs``).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)` or
          :math:`((|\mathcal{V}_s|, F), (|\mathcal{V}_t|, F))`; edge indices
          :math:`(2, |\mathcal{E}|)`, an ``EdgeIndex``, or an ``adj_t`` of shape
          :math:`(|\mathcal{V}_t|, |\mathcal{V}_s|)` (rows = targets; a torch sparse COO,
          CSR or CSC tensor, or a ``SparseTensor``) whose shape must match the features
          (or ``size``) and whose stored values must all be 1 (repeated entries count as
          repeated edges); optional edge weights :math:`(|\mathcal{E}|)`, with a
          ``[2, E]`` ``edge_index`` or ``EdgeIndex`` only, that replace the computed
          normalization.
        - **output:** node features :math:`(|\mathcal{V}_t|, F)`.
    """

    SUPPORTS_FUSED_EDGE_INDEX = False

    def __init__(
        self, alpha0: float = 0.5, alpha1: float = 0.5, cached: bool = False, **kwargs: Any
    ):
        aggr = kwargs.setdefault("aggr", "add")
        # every path must compute the same sum: refuse what only message passing would honour
        if not (isinstance(aggr, str) and aggr in ("add", "sum")):
            raise ConfigError(
                f"BipartiteNormConv: aggr must be 'add' (the normalized sum; 'sum' is accepted "
                f"as an alias), got {aggr!r}"
            )
        kwargs["aggr"] = "add"  # one spelling, which products_by_csr checks
        flow = kwargs.get("flow", "source_to_target")
        if flow != "source_to_target":
            raise ConfigError(
                f"BipartiteNormConv: flow must be 'source_to_target' (messages go from row 0 "
                f"to row 1 of edge_index), got {flow!r}; pass edge_index.flip(0) for the "
                "other direction"
            )
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
        # the ids first (the degree counts below index with them; on a GPU an id out of
        # range is a device-side assert, not an error)
        check_bounds(edge_index[0], edge_index[1], size[0], size[1])
        w = bipartite_norm(edge_index, size, self.alpha0, self.alpha1, dtype=dtype, check=False)
        return CachedAdjacency(edge_index[1], edge_index[0], w, size[1], size[0], check=False)

    def _norm_from_sparse(self, adj_t: Any, dtype: torch.dtype) -> Any:
        _check_unit_values(adj_t)
        if isinstance(adj_t, SparseTensor):
            row, col, _ = adj_t.coo()
            n_dst, n_src = adj_t.sparse_sizes()
            w = bipartite_norm(
                torch.stack([col, row]),
                (n_src, n_dst),
                self.alpha0,
                self.alpha1,
                dtype=dtype,
                check=False,
            )
            return adj_t.set_value(w, layout="coo")
        # not coalesced: a repeated entry stays a repeated edge, as on the other paths
        # (``_indices`` reads an uncoalesced COO as stored; CSR / CSC convert entry by entry)
        row, col = adj_t.to_sparse_coo()._indices()
        n_dst, n_src = adj_t.shape
        w = bipartite_norm(
            torch.stack([col, row]),
            (n_src, n_dst),
            self.alpha0,
            self.alpha1,
            dtype=dtype,
            check=False,
        )
        return CachedAdjacency(row, col, w, n_dst, n_src)

    def normalized_adjacency(
        self, edge_index: Adj, size: tuple[int, int], dtype: torch.dtype = torch.float32
    ) -> Any:
        """The normalized ``[num_dst, num_src]`` adjacency for ``edge_index`` (cached if
        :obj:`cached`)."""
        # The cache is tied to the very graph object it was built from (held here, so its
        # identity cannot be reused by another tensor), its sizes and dtype.
        key = (edge_index, size, dtype, getattr(edge_index, "_version", None))
        if (
            self.cached
            and self._cached_adj is not None
            and self._cache_key is not None
            and self._cache_key[0] is edge_index
            and self._cache_key[1:] == key[1:]
        ):
            return self._cached_adj
        if isinstance(edge_index, SparseTensor) or is_torch_sparse_tensor(edge_index):
            _check_adj_size(edge_index, size)
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
        x_src, x_dst = _check_features(x)
        is_sparse = isinstance(edge_index, SparseTensor) or is_torch_sparse_tensor(edge_index)
        if size is None:
            size = (x_src.size(0), _num_targets(x_dst, edge_index, is_sparse))
        else:
            size = _check_size(size)
            if x_src.size(0) != size[0] or (x_dst is not None and x_dst.size(0) != size[1]):
                raise ConfigError(
                    f"size {size} does not match the features: x_src has {x_src.size(0)} "
                    f"rows, x_dst {x_dst.size(0) if x_dst is not None else None}"
                )
        if not (is_sparse or isinstance(edge_index, Tensor)):
            raise TypeError(
                f"edge_index must be a [2, E] tensor, an EdgeIndex, a torch sparse adj_t or a "
                f"SparseTensor, got {type(edge_index).__name__}"
            )
        ei_device = (
            edge_index.device() if isinstance(edge_index, SparseTensor) else edge_index.device
        )
        if x_src.device != ei_device:
            raise ConfigError(
                f"x and edge_index are on different devices ({x_src.device} and {ei_device})"
            )
        # Type and shape here; the ids where they are used: a cached build (a normalized
        # adjacency, a sorted EdgeIndex's CSR) checks them itself whatever the validation
        # records say, since its matrices skip torch's invariant checks; message passing
        # checks them just before (once per index and version).
        if not is_sparse:
            check_edge_index(edge_index, None)
        if edge_weight is not None and not is_sparse:
            if (
                not isinstance(edge_weight, Tensor)
                or not edge_weight.is_floating_point()
                or edge_weight.dim() != 1
                or edge_weight.numel() != edge_index.size(1)
            ):
                got = (
                    f"shape {tuple(edge_weight.shape)}, dtype {edge_weight.dtype}"
                    if isinstance(edge_weight, Tensor)
                    else type(edge_weight).__name__
                )
                raise ConfigError(
                    f"edge_weight must be a floating [E] tensor with E={edge_index.size(1)} "
                    f"(one weight per edge), got {got}"
                )
        if edge_weight is not None:
            if is_sparse:
                raise ConfigError("edge_weight is only accepted with an [2, E] edge_index")
            if self.products_by_csr(edge_index, edge_weight, size):
                # A sorted subgraph index of known size (neighbor-sampled batches): one CSR
                # product whose backward uses the index's cached transpose ordering (for
                # constant weights: learnable ones take the message-passing path below).
                return spmm_edge_index(edge_index, edge_weight, x_src)
            # the output keeps the features' dtype (as on every other path)
            edge_weight = edge_weight.to(x_src.dtype)
            check_edge_index(edge_index, size)
            return self.propagate(edge_index, x=(x_src, x_dst), edge_weight=edge_weight, size=size)
        if is_sparse or self.cached:
            adj = self.normalized_adjacency(edge_index, size, x_src.dtype)
            if isinstance(adj, CachedAdjacency):
                return spmm_cached(adj, x_src)
            return self.propagate(adj, x=(x_src, x_dst), edge_weight=None, size=None)
        check_edge_index(edge_index, size)
        w = bipartite_norm(
            edge_index, size, self.alpha0, self.alpha1, dtype=x_src.dtype, check=False
        )
        return self.propagate(edge_index, x=(x_src, x_dst), edge_weight=w, size=size)

    def products_by_csr(self, edge_index: Any, edge_weight: Tensor, size: tuple[int, int]) -> bool:
        """Whether :meth:`forward` aggregates over ``edge_index`` with the given (checked)
        weights as one cached CSR product (:func:`~pyg_cf.nn.spmm.spmm_edge_index`): a
        sorted :class:`~torch_geometric.EdgeIndex` of ``size``, constant weights, sums.
        :meth:`~pyg_cf.nn.GraphCF.embed_rows` asks it before using the same matrices."""
        return (
            isinstance(edge_index, EdgeIndex)
            and not (edge_weight.requires_grad and torch.is_grad_enabled())
            and edge_index.is_sorted
            and self.aggr == "add"
            and tuple(edge_index.sparse_size()) == tuple(size)
        )

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
