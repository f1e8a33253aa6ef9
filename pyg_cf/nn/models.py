r"""One graph-CF model with named constructors: MF, user/item-side SVD++ and LightGCN."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from numbers import Real

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import module as _module
from torch_geometric import EdgeIndex
from torch_geometric.data import HeteroData

from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.nn.conv import BipartiteNormConv, check_node_ids
from pyg_cf.nn.layer_sum import layer_sum_rows
from pyg_cf.nn.spmm import Adjacency, CachedAdjacency, EdgeIndexAdjacency, spmm_rows

__all__ = ["MODELS", "GraphCF"]

MODELS = ("mf", "svdpp-user", "svdpp-item", "lightgcn")


def _hooked(*modules: nn.Module) -> bool:
    """Whether a forward or backward hook would see these modules' calls (their own hooks
    or global module hooks): :meth:`GraphCF.embed_rows` then calls the model."""
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(_module, "_global" + n, None) for n in names) or any(
        getattr(mod, n, None) for mod in modules for n in names
    )


class GraphCF(nn.Module):
    r"""Embedding tables plus ``K`` :class:`BipartiteNormConv` hops on the user–item graph.

    With layer-0 embeddings :math:`\mathbf{p}^{(0)}_u, \mathbf{q}^{(0)}_i` and
    :math:`A(\cdot)` one :class:`BipartiteNormConv` hop,

    .. math::
        \mathbf{p}^{(k+1)}_u = \sum_{i \in \mathcal{P}_u}
            \frac{\mathbf{q}^{(k)}_i}{|\mathcal{P}_u|^{\alpha_0} |\mathcal{P}_i|^{\alpha_1}},
        \qquad
        \mathbf{q}^{(k+1)}_i = \sum_{u \in \mathcal{P}_i}
            \frac{\mathbf{p}^{(k)}_u}{|\mathcal{P}_i|^{\alpha_0} |\mathcal{P}_u|^{\alpha_1}},

    and the final embedding of a propagated side is :math:`\sum_k w_k \mathbf{p}^{(k)}`
    (an unpropagated side keeps :math:`\mathbf{p}^{(0)}`). The named constructors:

    * :meth:`mf` – no propagation.
    * :meth:`svdpp_user` – :math:`\mathbf{p}_u = \mathbf{p}^{(0)}_u + \sum_{i\in\mathcal{P}_u}
      \mathbf{q}^{(0)}_i / (|\mathcal{P}_u|^{\alpha_0}|\mathcal{P}_i|^{\alpha_1})`,
      :math:`\mathbf{q}_i = \mathbf{q}^{(0)}_i` (Wu et al., TOIS 2024, eq. 23).
    * :meth:`svdpp_item` – the mirror image on the item side.
    * :meth:`lightgcn` – :math:`K` hops on both sides, :math:`\alpha_0=\alpha_1=0.5`,
      :math:`w_k = 1/(K+1)` (He et al., SIGIR 2020).

    Args:
        num_users: Number of users.
        num_items: Number of items.
        embedding_dim: Embedding size (default 64).
        num_layers: Number of propagation hops :math:`K`.
        alpha0: Target-degree exponent of every hop.
        alpha1: Source-degree exponent of every hop.
        propagate_users: Whether users take propagated embeddings.
        propagate_items: Whether items take propagated embeddings.
        layer_weights: ``'mean'`` (:math:`1/(K+1)`), ``'sum'`` (all 1) or ``K+1`` weights.
        edge_index: Optional training edges ``[2, E]`` (users in row 0, items in row 1)
            kept as the default graph of :meth:`forward`, :meth:`embeddings` and
            :meth:`recommend` (not saved in ``state_dict``).
        init_std: ``None`` (default): Xavier-uniform tables,
            :math:`\mathcal{U}(\pm\sqrt{6 / (N + d)})` per table of :math:`N` rows (the
            papers' protocol; the LightGCN authors' TensorFlow code); a number
            :math:`\sigma`: :math:`\mathcal{N}(0, \sigma^2)` entries (their PyTorch port
            draws :math:`\sigma = 0.1`, ≈ 14× Xavier's scale on Gowalla's item table).
    """

    #: :meth:`embed_rows` forms the products that only the batch's rows need from row slices
    #: of the adjacency: ``None`` (default) on the CPU (a GPU keeps whole products, which
    #: need no host read), or ``True`` / ``False``. A class default, so models pickled
    #: before it existed load with it.
    slice_rows: bool | None = None

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        num_layers: int = 3,
        alpha0: float = 0.5,
        alpha1: float = 0.5,
        propagate_users: bool = True,
        propagate_items: bool = True,
        layer_weights: str | Sequence[float] = "mean",
        edge_index: Tensor | None = None,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        if init_std is not None and (
            isinstance(init_std, bool)
            or not isinstance(init_std, Real)
            or not 0 < init_std < math.inf
        ):
            raise ConfigError(f"init_std must be None or a positive number, got {init_std!r}")
        self.init_std = None if init_std is None else float(init_std)
        for name, v in (
            ("num_users", num_users),
            ("num_items", num_items),
            ("embedding_dim", embedding_dim),
        ):
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ConfigError(f"num_layers must be a non-negative integer, got {num_layers!r}")
        self.num_users, self.num_items = num_users, num_items
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.propagate_users = propagate_users and num_layers > 0
        self.propagate_items = propagate_items and num_layers > 0
        if isinstance(layer_weights, str):
            if layer_weights == "mean":
                w = [1.0 / (num_layers + 1)] * (num_layers + 1)
            elif layer_weights == "sum":
                w = [1.0] * (num_layers + 1)
            else:
                raise ConfigError(
                    f"layer_weights must be 'mean', 'sum' or a list, got {layer_weights!r}"
                )
        else:
            w = [float(v) for v in layer_weights]
            if len(w) != num_layers + 1:
                raise ConfigError(f"layer_weights needs {num_layers + 1} values, got {len(w)}")
            if not all(math.isfinite(v) for v in w):
                raise ConfigError(f"layer_weights must be finite, got {w}")
        self.register_buffer("layer_weights", torch.tensor(w), persistent=False)
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        # Two directions of the same layer; cached, so the full-graph adjacency is built once.
        self.user_conv = BipartiteNormConv(alpha0, alpha1, cached=True)  # items -> users
        self.item_conv = BipartiteNormConv(alpha0, alpha1, cached=True)  # users -> items
        self.alpha0, self.alpha1 = self.user_conv.alpha0, self.user_conv.alpha1
        self.graph: Tensor | None = None
        self._rev: tuple[Tensor, Tensor, int] | None = None
        if edge_index is not None:
            self.set_graph(edge_index)
        self.reset_parameters()

    # -- constructors ----------------------------------------------------------------------
    @classmethod
    def mf(
        cls,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        edge_index: Tensor | None = None,
        init_std: float | None = None,
    ) -> GraphCF:
        """Matrix factorization: no propagation."""
        return cls(num_users, num_items, embedding_dim, 0, edge_index=edge_index, init_std=init_std)

    @classmethod
    def svdpp_user(
        cls,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        alpha0: float = 0.5,
        alpha1: float = 0.0,
        edge_index: Tensor | None = None,
        init_std: float | None = None,
    ) -> GraphCF:
        """User-side SVD++ (vanilla SVD++ is ``alpha1=0``, ``alpha0`` in {0, 0.5, 1})."""
        return cls(
            num_users,
            num_items,
            embedding_dim,
            1,
            alpha0,
            alpha1,
            propagate_users=True,
            propagate_items=False,
            layer_weights="sum",
            edge_index=edge_index,
            init_std=init_std,
        )

    @classmethod
    def svdpp_item(
        cls,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        alpha0: float = 0.5,
        alpha1: float = 0.0,
        edge_index: Tensor | None = None,
        init_std: float | None = None,
    ) -> GraphCF:
        """Item-side SVD++: items take the normalized sum of their users' embeddings."""
        return cls(
            num_users,
            num_items,
            embedding_dim,
            1,
            alpha0,
            alpha1,
            propagate_users=False,
            propagate_items=True,
            layer_weights="sum",
            edge_index=edge_index,
            init_std=init_std,
        )

    @classmethod
    def lightgcn(
        cls,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        num_layers: int = 3,
        edge_index: Tensor | None = None,
        init_std: float | None = None,
    ) -> GraphCF:
        """LightGCN: ``num_layers`` symmetric hops, layer mean."""
        return cls(
            num_users,
            num_items,
            embedding_dim,
            num_layers,
            0.5,
            0.5,
            edge_index=edge_index,
            init_std=init_std,
        )

    @classmethod
    def from_data(cls, data: HeteroData, model: str = "lightgcn", **kwargs: object) -> GraphCF:
        """Build a named model (``'mf'``, ``'svdpp-user'``, ``'svdpp-item'``,
        ``'lightgcn'``) sized for ``data`` with its training graph attached."""
        from pyg_cf.data.graph import train_edges

        builders: dict[str, Callable[..., GraphCF]] = {
            "mf": cls.mf,
            "svdpp-user": cls.svdpp_user,
            "svdpp-item": cls.svdpp_item,
            "lightgcn": cls.lightgcn,
        }
        if model not in builders:
            raise ConfigError(f"unknown model {model!r}; choose one of {list(builders)}")
        return builders[model](
            data["user"].num_nodes, data["item"].num_nodes, edge_index=train_edges(data), **kwargs
        )

    def reset_parameters(self) -> None:
        for table in (self.user_embedding.weight, self.item_embedding.weight):
            if self.init_std is None:
                nn.init.xavier_uniform_(table)
            else:
                nn.init.normal_(table, std=self.init_std)
        self.user_conv.reset_parameters()
        self.item_conv.reset_parameters()

    # -- graph -----------------------------------------------------------------------------
    def set_graph(self, edge_index: Tensor) -> GraphCF:
        """Attach the training graph (users in row 0, items in row 1)."""
        self._check_edges(edge_index, self.num_users, self.num_items)
        self.graph = edge_index
        self._rev = None
        # the layers cache by tensor identity: a re-attached (possibly edited) tensor rebuilds
        self.user_conv.reset_parameters()
        self.item_conv.reset_parameters()
        return self

    @staticmethod
    def _check_edges(edge_index: Tensor, nu: int, ni: int) -> None:
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise PygCFError("edge_index must be a [2, E] tensor of (user, item) pairs")
        if edge_index.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"edge_index must hold torch.long ids, got dtype {edge_index.dtype}")
        if edge_index.numel():
            if (
                int(edge_index.min()) < 0
                or int(edge_index[0].max()) >= nu
                or int(edge_index[1].max()) >= ni
            ):
                raise PygCFError(
                    f"edge_index has ids outside {nu} users / {ni} items: was the model built "
                    "for other data?"
                )

    def _graph_on(self, device: torch.device) -> Tensor:
        if self.graph is None:
            raise PygCFError("no training graph: pass edge_index or call set_graph(...) first")
        if self.graph.device != device:
            self.graph = self.graph.to(device)
            self._rev = None
        return self.graph

    def _reverse(self, edge_index: Tensor) -> Tensor:
        # keyed on the index and its version: an index edited in place is flipped anew
        if (
            self._rev is None
            or self._rev[0] is not edge_index
            or self._rev[2] != edge_index._version
        ):
            self._rev = (edge_index, edge_index.flip(0), edge_index._version)
        return self._rev[1]

    # -- forward ---------------------------------------------------------------------------
    def forward(
        self,
        edge_index: Tensor | None = None,
        user_nodes: Tensor | None = None,
        item_nodes: Tensor | None = None,
        edge_weight: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Final embeddings of users and items.

        Args:
            edge_index: ``[2, E]`` (user, item) edges to propagate over, in the local ids of
                ``user_nodes`` / ``item_nodes`` when those are given. ``None``: the
                attached training graph.
            user_nodes: Global ids of the subgraph's users (``None``: all users).
            item_nodes: Global ids of the subgraph's items (``None``: all items).
            edge_weight: Optional pair ``(w_user_to_item, w_item_to_user)`` (a tuple or
                list of two) of ``[E]`` normalizations (e.g. computed with full-graph
                degrees for a sampled subgraph); computed from ``edge_index`` when
                ``None``. They are cast to the model's dtype: for a float64 model, have
                them computed in float64 (``BipartiteNeighborSampler(dtype=...)``).

        Returns:
            ``(user_emb, item_emb)`` of shapes ``[num_users_or_len(user_nodes), d]`` and
            ``[num_items_or_len(item_nodes), d]``.

        Raises:
            ConfigError: if ``edge_weight`` is not such a pair, or ``user_nodes`` /
                ``item_nodes`` hold ids outside the model's users / items.
        """
        return self._combine(self._hops(edge_index, user_nodes, item_nodes, edge_weight))

    def embed_rows(
        self,
        users: Tensor,
        items: Tensor,
        check: bool = True,
        edge_index: Tensor | None = None,
        user_nodes: Tensor | None = None,
        item_nodes: Tensor | None = None,
        edge_weight: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Rows ``users`` and ``items`` (repeats allowed) of the final embeddings:
        ``forward(...)[0][users], forward(...)[1][items]``, over the attached graph or, given
        the last four arguments (those of :meth:`forward`), over a subgraph, whose local
        ids ``users`` and ``items`` then are.

        When both sides propagate, the layer-weighted sum is formed only at these rows
        (:func:`~pyg_cf.nn.layer_sum.layer_sum_rows`: the same products, no table-sized
        sums, a linear backward that saves nothing but the ids), which is what a training
        step needs; with :attr:`slice_rows` (the CPU's default) the last hop and the
        backward's first products are formed from the rows' slices of the adjacency. When
        one side propagates (SVD++), its hops all equal one product
        :math:`\mathbf{A}\mathbf{X}^{(0)}` of the other side's layer 0, and with
        :attr:`slice_rows` only the requested rows of it are formed
        (:func:`~pyg_cf.nn.spmm.spmm_rows`: work in proportion to those rows' edges; on a
        GPU the whole product is cheaper than the host read a slice needs, and without
        slicing the model is called). A subgraph takes these paths when its products would
        be :func:`~pyg_cf.nn.spmm.spmm_edge_index` ones (a sorted
        :class:`~torch_geometric.EdgeIndex` of the subgraph's size with constant weights
        for both directions, as :class:`~pyg_cf.loader.InteractionLoader` gives), and
        shares their matrices. Otherwise the model is called and the rows are gathered (an
        unpropagated model, a subclass that overrides :meth:`forward` or how hops are
        made or combined, swapped or uncached layers, trainable layer weights, forward or
        backward hooks on the model, its layers or all modules, other subgraph inputs).

        When both sides propagate, the fused path is differentiable once (its backward is
        marked ``once_differentiable``: differentiating its gradient again raises); for
        higher-order gradients (``create_graph=True``) take rows of :meth:`forward`,
        whose products are differentiable to any order.

        Args:
            users: ``[B_u]`` user ids (of ``user_nodes`` when given).
            items: ``[B_i]`` item ids (of ``item_nodes`` when given).
            check: Check the ids' type and range (one host read; a trainer passes its own
                loader's ids with ``check=False``).
            edge_index: As in :meth:`forward` (``None``: the attached graph).
            user_nodes: As in :meth:`forward`.
            item_nodes: As in :meth:`forward`.
            edge_weight: As in :meth:`forward`.

        Returns:
            ``([B_u, d], [B_i, d])``.
        """
        sub = edge_index is not None or user_nodes is not None or item_nodes is not None
        if check:
            n_u = self.num_users if user_nodes is None else len(user_nodes)
            n_i = self.num_items if item_nodes is None else len(item_nodes)
            users = self._check_ids(users, n_u, "user")
            items = self._check_ids(items, n_i, "item")
        w: Tensor = self.layer_weights  # type: ignore[assignment]
        one_sided = self.propagate_users != self.propagate_items
        if self.slice_rows is None:
            slicing = self.user_embedding.weight.device.type == "cpu"
        elif isinstance(self.slice_rows, bool):
            slicing = self.slice_rows
        else:
            raise ConfigError(f"slice_rows must be None, True or False, got {self.slice_rows!r}")
        fused = ((self.propagate_users and self.propagate_items) or (one_sided and slicing)) and (
            not w.requires_grad  # the fused backward gives the weights no gradient
            # two-sided sums in one dtype (forward() would promote mixed tables)
            and (one_sided or self.user_embedding.weight.dtype == self.item_embedding.weight.dtype)
            and not _hooked(self, self.user_conv, self.item_conv)  # hooks see forward
            and all(
                getattr(type(self), name) is getattr(GraphCF, name)
                for name in ("forward", "_hops", "_combine")
            )
            and all(
                # a subgraph's products: _subgraph_adjacency asks the layers
                type(conv) is BipartiteNormConv and (sub or conv.cached)
                for conv in (self.user_conv, self.item_conv)
            )
        )
        adj: tuple[Adjacency | None, Adjacency | None] | None = None
        if fused and sub:
            size = (
                self.num_users if user_nodes is None else len(user_nodes),
                self.num_items if item_nodes is None else len(item_nodes),
            )
            adj = self._subgraph_adjacency(edge_index, edge_weight, size)
            fused = adj is not None
        if not fused:
            u, i = self(edge_index, user_nodes, item_nodes, edge_weight)
            return u.index_select(0, users), i.index_select(0, items)
        # forward()'s checks of the nodes and its layer-0 lookups
        x_u, x_i = next(self._hops(edge_index, user_nodes, item_nodes, edge_weight))
        if one_sided:
            side = None if adj is None else adj[0 if self.propagate_users else 1]
            return self._one_sided_rows(x_u, x_i, users, items, w, side)
        a_ui, a_iu = self._graph_adjacency(x_u) if adj is None else adj
        assert a_ui is not None and a_iu is not None
        return layer_sum_rows(x_u, x_i, users, items, w, a_ui, a_iu, slice_last_hop=slicing)

    def _subgraph_adjacency(
        self,
        edge_index: Tensor | None,
        edge_weight: tuple[Tensor, Tensor] | None,
        size: tuple[int, int],
    ) -> tuple[EdgeIndexAdjacency | None, EdgeIndexAdjacency | None] | None:
        """``(A_UI, A_IU)`` of a subgraph as its layers' products would build them
        (:func:`~pyg_cf.nn.spmm.spmm_edge_index`, where the layers'
        ``products_by_csr`` says so: a sorted ``EdgeIndex`` of ``size`` on the tables'
        device, a pair of constant floating ``[E]`` weights, sums), each in the dtype of the
        table it multiplies, for the propagated sides only (``None`` for the other); ``None``
        when a layer would take another path (then :meth:`forward` runs, and raises on
        inputs it refuses)."""
        x_u, x_i = self.user_embedding.weight, self.item_embedding.weight
        if not (
            isinstance(edge_index, EdgeIndex)
            and edge_index.device == x_u.device
            and isinstance(edge_weight, (tuple, list))
            and len(edge_weight) == 2
        ):
            return None
        for wt in edge_weight:
            if not (
                isinstance(wt, Tensor)
                and wt.is_floating_point()
                and wt.dim() == 1
                and wt.numel() == edge_index.size(1)
                and wt.device == x_u.device
            ):
                return None
        w_ui, w_iu = edge_weight
        a_ui = a_iu = None
        if self.propagate_users:  # items to users, over the flipped index
            rev = self._reverse(edge_index)
            if not self.user_conv.products_by_csr(rev, w_iu, (size[1], size[0])):
                return None
            a_ui = EdgeIndexAdjacency(rev, w_iu, x_i.dtype)
        if self.propagate_items:
            if not self.item_conv.products_by_csr(edge_index, w_ui, size):
                return None
            a_iu = EdgeIndexAdjacency(edge_index, w_ui, x_u.dtype)
        return a_ui, a_iu

    def _graph_adjacency(
        self, x: Tensor, users: bool = True, items: bool = True
    ) -> tuple[CachedAdjacency, CachedAdjacency]:
        """The layers' cached adjacencies of the attached graph, ``(A_UI, A_IU)`` (items to
        users, users to items), in the dtype of ``x``; only the sides asked for are built
        (the others are returned as ``None``)."""
        edge_index = self._graph_on(x.device)
        a_ui = a_iu = None
        if users:
            a_ui = self.user_conv.normalized_adjacency(
                self._reverse(edge_index), (self.num_items, self.num_users), x.dtype
            )
            # a cached layer builds a CachedAdjacency from a [2, E] index (the attached graph)
            assert isinstance(a_ui, CachedAdjacency)
        if items:
            a_iu = self.item_conv.normalized_adjacency(
                edge_index, (self.num_users, self.num_items), x.dtype
            )
            assert isinstance(a_iu, CachedAdjacency)
        return a_ui, a_iu  # type: ignore[return-value]

    def _one_sided_rows(
        self,
        x_u: Tensor,
        x_i: Tensor,
        users: Tensor,
        items: Tensor,
        w: Tensor,
        adj: Adjacency | None,
    ) -> tuple[Tensor, Tensor]:
        r""":meth:`embed_rows` of a one-sided model: the propagated side's rows are
        :math:`w_0\mathbf{x}^{(0)} + (\sum_{k \ge 1} w_k)\,\mathbf{A}\mathbf{X}^{(0)}`
        (every hop aggregates the other side's unchanged layer 0), the other side's are its
        layer 0. ``adj``: that side's adjacency (``None``: the attached graph's)."""
        w = w.to(x_u.dtype)
        if self.propagate_users:
            # in the dtype of the features it multiplies, as forward() builds it
            a = adj if adj is not None else self._graph_adjacency(x_i, items=False)[0]
            out_u = x_u.index_select(0, users) * w[0] + spmm_rows(a, users, x_i) * w[1:].sum()
            return out_u, x_i.index_select(0, items)
        a = adj if adj is not None else self._graph_adjacency(x_u, users=False)[1]
        out_i = x_i.index_select(0, items) * w[0] + spmm_rows(a, items, x_u) * w[1:].sum()
        return x_u.index_select(0, users), out_i

    def layers(
        self,
        edge_index: Tensor | None = None,
        user_nodes: Tensor | None = None,
        item_nodes: Tensor | None = None,
        edge_weight: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        r"""Every hop's embeddings, before the layer weighting: ``([p^(0), ..., p^(K)],
        [q^(0), ..., q^(K)])``; an unpropagated side has the single entry ``[p^(0)]``.

        ``combine(*layers(...))`` equals :meth:`forward` (which combines the hops as they
        come, without holding them all). The per-layer embeddings are what an L2 penalty over
        all layers (the Adap-τ authors' LightGCN regulariser,
        ``TrainConfig(l2_layers='all')``) needs. Same arguments as :meth:`forward`.
        """
        hops = list(self._hops(edge_index, user_nodes, item_nodes, edge_weight))
        hs_u = [h for h, _ in hops] if self.propagate_users else [hops[0][0]]
        hs_i = [h for _, h in hops] if self.propagate_items else [hops[0][1]]
        return hs_u, hs_i

    def combine(self, hs_u: Sequence[Tensor], hs_i: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        r"""The final embeddings :math:`\sum_k w_k \mathbf{p}^{(k)}` of :meth:`layers`'
        output (an unpropagated side, one entry, is returned as it is)."""
        n = max(len(hs_u), len(hs_i))
        return self._combine(
            (hs_u[min(k, len(hs_u) - 1)], hs_i[min(k, len(hs_i) - 1)]) for k in range(n)
        )

    def _hops(
        self,
        edge_index: Tensor | None,
        user_nodes: Tensor | None,
        item_nodes: Tensor | None,
        edge_weight: tuple[Tensor, Tensor] | None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yields ``(p^(k), q^(k))`` for ``k = 0 .. K`` (only ``k = 0`` when nothing
        propagates; an unpropagated side repeats its layer 0)."""
        if edge_index is not None and not isinstance(edge_index, Tensor):
            raise TypeError(f"edge_index must be a [2, E] tensor, got {type(edge_index).__name__}")
        if edge_weight is not None and (
            not isinstance(edge_weight, (tuple, list)) or len(edge_weight) != 2
        ):
            # a single [E] tensor (or one of length 2) is not a pair: say so, rather than
            # unpack it into rows (or 0-d tensors) that fail further on
            if isinstance(edge_weight, Tensor):
                got = f"a tensor of shape {tuple(edge_weight.shape)}"
            elif isinstance(edge_weight, (tuple, list)):
                got = f"a {type(edge_weight).__name__} of length {len(edge_weight)}"
            else:
                got = type(edge_weight).__name__
            raise ConfigError(
                "edge_weight must be a pair (w_user_to_item, w_item_to_user) of [E] tensors, "
                f"one weight per edge and direction, got {got}"
            )
        if user_nodes is not None:
            user_nodes = self._check_ids(user_nodes, self.num_users, "user")
        if item_nodes is not None:
            item_nodes = self._check_ids(item_nodes, self.num_items, "item")
        x_u = self.user_embedding.weight if user_nodes is None else self.user_embedding(user_nodes)
        x_i = self.item_embedding.weight if item_nodes is None else self.item_embedding(item_nodes)
        yield x_u, x_i
        if not (self.propagate_users or self.propagate_items):
            return
        if edge_index is None:
            edge_index = self._graph_on(x_u.device)
        rev = self._reverse(edge_index)
        w_ui, w_iu = edge_weight if edge_weight is not None else (None, None)
        size = (x_u.size(0), x_i.size(0))
        h_u, h_i = x_u, x_i
        for _ in range(self.num_layers):
            new_u = (
                self.user_conv((h_i, h_u), rev, w_iu, size=(size[1], size[0]))
                if self.propagate_users
                else h_u
            )
            new_i = (
                self.item_conv((h_u, h_i), edge_index, w_ui, size=size)
                if self.propagate_items
                else h_i
            )
            h_u, h_i = new_u, new_i
            yield h_u, h_i

    def _combine(self, hops: Iterable[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Layer-weighted sums of the hops, accumulated as they come."""
        w: Tensor = self.layer_weights  # type: ignore[assignment]
        it = iter(hops)
        x_u, x_i = next(it)
        out_u = x_u * w[0] if self.propagate_users else x_u
        out_i = x_i * w[0] if self.propagate_items else x_i
        for k, (h_u, h_i) in enumerate(it, 1):
            # one fused pass (out + h·w_k) instead of a product and a sum over the table
            if self.propagate_users:
                out_u = torch.addcmul(out_u, h_u, w[k])
            if self.propagate_items:
                out_i = torch.addcmul(out_i, h_i, w[k])
        return out_u, out_i

    def layer0(self, users: Tensor, items: Tensor, sparse: bool = False) -> tuple[Tensor, Tensor]:
        """Layer-0 embeddings of the given users and items (for L2 regularisation).

        ``sparse=True`` makes their gradient a sparse COO tensor of ``len(ids)`` rows (as
        an ``nn.Embedding(sparse=True)`` lookup) rather than a dense table-sized one: when the
        forward pass already gives the table a dense gradient, autograd adds the sparse one
        into it in place, so the lookup's backward costs O(batch), not a table-sized
        zero-fill and addition.
        """
        u, i = self.user_embedding, self.item_embedding
        return (
            F.embedding(users, u.weight, sparse=sparse or u.sparse),
            F.embedding(items, i.weight, sparse=sparse or i.sparse),
        )

    # -- inference helpers -----------------------------------------------------------------
    @torch.no_grad()
    def embeddings(self) -> tuple[Tensor, Tensor]:
        """Final embeddings of all users and items over the attached graph, without grad."""
        u, i = self.forward()
        # an unpropagated side is the embedding table itself: detach it too
        return u.detach(), i.detach()

    def _check_ids(self, ids: Tensor, n: int, kind: str) -> Tensor:
        if not isinstance(ids, Tensor):
            try:
                ids = torch.as_tensor(ids)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(
                    f"{kind} ids must be a 1-D integer tensor or sequence, got {type(ids).__name__}"
                ) from None
            if ids.numel() == 0:
                ids = ids.long()
        # type, shape and range (one host read; none for ids checked before, e.g. a
        # sampler's), on the ids as given: a copy to the model's device or to int64 is made
        # only from valid ids
        check_node_ids((ids, n, f"{kind} ids"))
        return ids.to(device=self.user_embedding.weight.device, dtype=torch.long)

    @torch.no_grad()
    def score(self, users: Tensor, items: Tensor | None = None, similarity: str = "ip") -> Tensor:
        """Scores ``[len(users), len(items)]`` (all items when ``items`` is ``None``), by
        inner product (``'ip'``) or cosine (``'cos'``)."""
        if similarity not in ("ip", "cos"):
            raise ConfigError(f"similarity must be 'ip' or 'cos', got {similarity!r}")
        users = self._check_ids(users, self.num_users, "user")
        u, i = self.embeddings()
        u = u[users]
        if items is not None:
            i = i[self._check_ids(items, self.num_items, "item")]
        if similarity == "cos":
            u, i = F.normalize(u, dim=-1), F.normalize(i, dim=-1)
        return u @ i.t()

    @torch.no_grad()
    def recommend(
        self, users: Tensor, k: int = 20, similarity: str = "ip", exclude_train: bool = True
    ) -> Tensor:
        """Top-``k`` item ids ``[len(users), k]`` per user, training items excluded.

        Raises:
            ConfigError: if ``k`` is not in ``[1, num_items]``, or if, with
                ``exclude_train``, a user has fewer than ``k`` items it has not trained on
                (its list would have to include training items).
        """
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.num_items:
            raise ConfigError(f"k must lie in [1, {self.num_items}], got {k!r}")
        users = self._check_ids(users, self.num_users, "user")
        if users.numel() == 0:
            return torch.empty(0, k, dtype=torch.long, device=users.device)
        scores = self.score(users, similarity=similarity)
        if not exclude_train:
            return scores.topk(k, dim=1).indices
        from pyg_cf.metrics.ranking import mask_seen

        g = self._graph_on(scores.device)
        mask_seen(scores, users, g)
        top = scores.topk(k, dim=1)
        short = torch.isneginf(top.values[:, -1])
        if bool(short.any()):  # one host read
            row = int(short.nonzero()[0, 0])
            left = int((~torch.isneginf(scores[row])).sum())
            raise ConfigError(
                f"user {int(users[row])} has {left} items it has not trained on, fewer than "
                f"k={k} ({int(short.sum())} of the {users.numel()} users are short): pass a "
                "smaller k, or exclude_train=False"
            )
        return top.indices

    def export(self, path, data=None, user_ids=None, item_ids=None) -> str:
        """Write the final embeddings and raw-id maps to the folder ``path`` (npz + csv +
        json, loadable without this class by :func:`pyg_cf.nn.export.load_embeddings` or
        ``numpy.load``). Raw ids come from ``data`` (``['user'].raw_id``) or
        ``user_ids``/``item_ids``; see :func:`pyg_cf.nn.export.export_embeddings`."""
        from pyg_cf.nn.export import export_embeddings

        return export_embeddings(self, path, data=data, user_ids=user_ids, item_ids=item_ids)

    def extra_repr(self) -> str:
        return (
            f"num_users={self.num_users}, num_items={self.num_items}, "
            f"dim={self.embedding_dim}, layers={self.num_layers}, alpha0={self.alpha0}, "
            f"alpha1={self.alpha1}, propagate=(users={self.propagate_users}, "
            f"items={self.propagate_items})"
            + ("" if self.init_std is None else f", init_std={self.init_std}")
        )
