"""GraphCF.embed_rows / layer_sum_rows: the layer sums at a batch's rows only."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch_geometric import EdgeIndex

from pyg_cf.errors import ConfigError
from pyg_cf.nn import BipartiteNormConv, GraphCF
from pyg_cf.nn.layer_sum import layer_sum_rows
from pyg_cf.nn.spmm import CachedAdjacency

NU, NI = 13, 9


def graph(seed: int = 0, nu: int = NU, ni: int = NI, e: int = 40) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    pairs = torch.stack(
        [torch.randint(nu, (e,), generator=g), torch.randint(ni, (e,), generator=g)]
    )
    # every user and item at least once (no isolated node), duplicates removed
    cover = torch.stack([torch.arange(max(nu, ni)) % nu, torch.arange(max(nu, ni)) % ni])
    return torch.unique(torch.cat([pairs, cover], 1), dim=1)


def model(**kw: object) -> GraphCF:
    torch.manual_seed(0)
    m = GraphCF(NU, NI, embedding_dim=5, edge_index=graph(), **kw).double()  # type: ignore[arg-type]
    with torch.no_grad():  # O(1) entries, so that absolute tolerances are meaningful
        m.user_embedding.weight.normal_()
        m.item_embedding.weight.normal_()
    return m


def _backward_of_weighted_loss(m: GraphCF, u: Tensor, i: Tensor) -> list[Tensor]:
    """``[u, i, user table grad, item table grad]`` after the backward of a loss with
    different weights per row, so that every row's gradient matters."""
    loss = (u.sin() * torch.arange(1.0, u.numel() + 1).view_as(u).double()).sum() + (
        i.pow(2) * torch.linspace(-1, 2, i.numel()).view_as(i).double()
    ).sum()
    loss.backward()
    return [u.detach(), i.detach(), m.user_embedding.weight.grad, m.item_embedding.weight.grad]


def rows_and_grads(m: GraphCF, users: Tensor, items: Tensor, fused: bool) -> list[Tensor]:
    m.zero_grad()
    if fused:
        u, i = m.embed_rows(users, items)
    else:
        fu, fi = m()
        u, i = fu[users], fi[items]
    return _backward_of_weighted_loss(m, u, i)


@pytest.mark.parametrize("share", [1.0, 0.0])  # the last hop from slices; whole products
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("alphas", [(0.5, 0.5), (1.0, 0.0), (0.3, 0.8)])
@pytest.mark.parametrize("weights", ["mean", "sum", "custom"])
def test_rows_equal_the_full_forward_gathered(num_layers, alphas, weights, share, monkeypatch):
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", share)
    lw = [0.7, -0.2, 1.5, 0.1][: num_layers + 1] if weights == "custom" else weights
    m = model(num_layers=num_layers, alpha0=alphas[0], alpha1=alphas[1], layer_weights=lw)
    users = torch.tensor([3, 0, 3, 12, 7, 3])  # repeats: their gradients add up
    items = torch.tensor([8, 8, 1, 0, 4])
    got = rows_and_grads(m, users, items, fused=True)
    want = rows_and_grads(m, users, items, fused=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def adjacencies(m: GraphCF) -> tuple[CachedAdjacency, CachedAdjacency]:
    a_ui = m.user_conv.normalized_adjacency(m.graph.flip(0), (NI, NU), torch.float64)
    a_iu = m.item_conv.normalized_adjacency(m.graph, (NU, NI), torch.float64)
    assert isinstance(a_ui, CachedAdjacency) and isinstance(a_iu, CachedAdjacency)
    return a_ui, a_iu


@pytest.mark.parametrize("share", [1.0, 0.0])
@pytest.mark.parametrize("hops", [1, 3])
def test_gradcheck_of_the_linear_backward(hops, share, monkeypatch):
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", share)
    m = model(num_layers=3, alpha0=0.4, alpha1=0.9)
    a_ui, a_iu = adjacencies(m)
    users, items = torch.tensor([1, 1, 5]), torch.tensor([0, 2, 8, 2])
    w = torch.tensor([0.3, 0.2, -0.4, 1.1])[: hops + 1]
    x_u = torch.randn(NU, 3, dtype=torch.float64, requires_grad=True)
    x_i = torch.randn(NI, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: layer_sum_rows(a, b, users, items, w, a_ui, a_iu), (x_u, x_i)
    )


@pytest.mark.parametrize("hops", [0, 1, 2, 3])
@pytest.mark.parametrize("slice_users, slice_items", [(True, True), (True, False), (False, True)])
def test_the_sliced_last_hop_equals_the_whole_products(hops, slice_users, slice_items, monkeypatch):
    """Each side slices on its own (the other may fall back); values and gradients equal
    the unsliced path's, and the slices are really used."""
    import pyg_cf.nn.layer_sum as ls

    m = model(num_layers=3)
    a_ui, a_iu = adjacencies(m)
    users, items = torch.tensor([4, 0, 4, 12, 7]), torch.tensor([8, 8, 1, 3])
    w = torch.tensor([0.3, 0.2, -0.4, 1.1])[: hops + 1]
    calls: list[bool] = []
    real = ls.row_slice

    def row_slice(a: CachedAdjacency, rows: Tensor):  # type: ignore[no-untyped-def]
        wanted = slice_users if a is a_ui else slice_items
        sliced = real(a, rows, 1.0 if wanted else 0.0)
        calls.append(sliced is not None)
        return sliced

    monkeypatch.setattr(ls, "row_slice", row_slice)
    x_u = torch.randn(NU, 3, dtype=torch.float64, requires_grad=True)
    x_i = torch.randn(NI, 3, dtype=torch.float64, requires_grad=True)
    g_u, g_i = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    got, want = [], []
    for sliced, out in ((True, got), (False, want)):
        u, i = layer_sum_rows(x_u, x_i, users, items, w, a_ui, a_iu, slice_last_hop=sliced)
        out += [u, i, *torch.autograd.grad((u * g_u).sum() + (i * g_i).sum(), (x_u, x_i))]
    assert calls == ([] if hops == 0 else [slice_users, slice_items])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("slice_rows, slices", [(None, 2), (True, 2), (False, 0)])
def test_the_last_hop_is_sliced_by_default_on_the_cpu(slice_rows, slices, monkeypatch):
    import pyg_cf.nn.layer_sum as ls

    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", 1.0)
    calls: list[int] = []
    real = ls.row_slice
    monkeypatch.setattr(ls, "row_slice", lambda *a: calls.append(1) or real(*a))
    m = model(num_layers=2)
    m.slice_rows = slice_rows
    users, items = torch.tensor([1, 2, 1]), torch.tensor([0, 5])
    got = rows_and_grads(m, users, items, fused=True)
    assert len(calls) == slices
    want = rows_and_grads(m, users, items, fused=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["svdpp_user", "svdpp_item"])
def test_one_sided_models_without_slicing_take_the_model_call(kind):
    torch.manual_seed(0)
    m = getattr(GraphCF, kind)(NU, NI, embedding_dim=4, edge_index=graph()).double()
    calls: list[int] = []
    m.forward = lambda *a, **k: calls.append(1) or GraphCF.forward(m, *a, **k)  # type: ignore[method-assign]
    m.embed_rows(torch.tensor([1]), torch.tensor([2]))
    assert calls == []  # sliced (the CPU's default)
    m.slice_rows = False
    m.embed_rows(torch.tensor([1]), torch.tensor([2]))
    assert calls == [1]


def test_an_unpropagated_model_gathers_its_forward():
    torch.manual_seed(0)
    m = GraphCF.mf(NU, NI, embedding_dim=4, edge_index=graph()).double()
    users, items = torch.tensor([2, 2, 9]), torch.tensor([1, 7])
    got = rows_and_grads(m, users, items, fused=True)
    want = rows_and_grads(m, users, items, fused=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("side", ["user", "item"])
@pytest.mark.parametrize("num_layers, weights", [(1, "sum"), (1, "mean"), (2, [0.7, -0.2, 1.5])])
@pytest.mark.parametrize("alphas", [(1.0, 0.0), (0.5, 0.0), (0.3, 0.8)])
def test_one_sided_rows_equal_the_full_forward_gathered(
    side, num_layers, weights, alphas, monkeypatch
):
    """SVD++: only the requested rows of the one product are formed (no model call)."""
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", 1.0)  # slice whatever the share
    m = model(
        num_layers=num_layers,
        alpha0=alphas[0],
        alpha1=alphas[1],
        layer_weights=weights,
        propagate_users=side == "user",
        propagate_items=side == "item",
    )
    users = torch.tensor([3, 0, 3, 12, 7, 3])
    items = torch.tensor([8, 8, 1, 0, 4])
    calls: list[int] = []
    m.forward = lambda *a, **k: calls.append(1) or GraphCF.forward(m, *a, **k)  # type: ignore[method-assign]
    got = rows_and_grads(m, users, items, fused=True)
    assert calls == []  # the rows were formed without the model's forward
    want = rows_and_grads(m, users, items, fused=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("share", [1.0, 0.0])
@pytest.mark.parametrize("kind", ["svdpp_user", "svdpp_item"])
def test_svdpp_constructors_take_the_one_sided_rows(kind, share, monkeypatch):
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", share)
    torch.manual_seed(0)
    m = getattr(GraphCF, kind)(NU, NI, embedding_dim=4, edge_index=graph()).double()
    users, items = torch.tensor([2, 2, 9, 0]), torch.tensor([1, 7, 7])
    got = rows_and_grads(m, users, items, fused=True)
    want = rows_and_grads(m, users, items, fused=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_a_subclass_that_overrides_forward_gets_its_own_forward():
    class Doubled(GraphCF):
        def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            u, i = super().forward(*args, **kwargs)
            return 2 * u, 2 * i

    torch.manual_seed(0)
    m = Doubled(NU, NI, embedding_dim=4, num_layers=2, edge_index=graph())
    users, items = torch.tensor([0, 4]), torch.tensor([3])
    u, i = m.embed_rows(users, items)
    fu, fi = GraphCF.forward(m)
    torch.testing.assert_close(u, 2 * fu[users])
    torch.testing.assert_close(i, 2 * fi[items])


def test_ids_are_checked_unless_told_not_to():
    m = model(num_layers=2)
    with pytest.raises(ConfigError, match=r"user ids must lie in \[0, 13\)"):
        m.embed_rows(torch.tensor([0, NU]), torch.tensor([0]))
    with pytest.raises(ConfigError, match=r"item ids must lie in \[0, 9\)"):
        m.embed_rows(torch.tensor([0]), torch.tensor([-1]))
    with pytest.raises(TypeError, match="integers"):
        m.embed_rows(torch.tensor([0.0]), torch.tensor([0]))


def test_a_dtype_mismatch_is_named():
    ei = graph()
    adj = CachedAdjacency(ei[0], ei[1], torch.ones(ei.size(1)), NU, NI)
    adj_t = CachedAdjacency(ei[1], ei[0], torch.ones(ei.size(1)), NI, NU)
    x_u, x_i = torch.randn(NU, 2, dtype=torch.float64), torch.randn(NI, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"adjacency is torch\.float32 but features are"):
        layer_sum_rows(x_u, x_i, torch.tensor([0]), torch.tensor([0]), torch.ones(2), adj, adj_t)


def test_subclasses_hooks_and_trainable_weights_take_the_model_call():
    """The fused path would skip them: a subclass's own _combine, a forward hook, trainable
    layer weights (the fused backward gives them no gradient)."""
    users, items = torch.tensor([0, 4, 4]), torch.tensor([3, 1])

    class Scaled(GraphCF):
        def _combine(self, hops):  # type: ignore[no-untyped-def]
            u, i = super()._combine(hops)
            return 3 * u, 3 * i

    torch.manual_seed(0)
    m = Scaled(NU, NI, embedding_dim=4, num_layers=2, edge_index=graph())
    u, i = m.embed_rows(users, items)
    fu, fi = m()
    torch.testing.assert_close(u, fu[users])
    torch.testing.assert_close(i, fi[items])

    m = model(num_layers=2)
    seen = []
    m.register_forward_hook(lambda mod, args, out: seen.append(1))
    m.embed_rows(users, items)
    assert seen == [1]

    m = model(num_layers=2)
    m.layer_weights = torch.nn.Parameter(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))
    u, i = m.embed_rows(users, items)
    (u.sum() + i.pow(2).sum()).backward()
    assert m.layer_weights.grad is not None and m.layer_weights.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["lightgcn", "svdpp_user", "svdpp_item"])
@pytest.mark.parametrize("where", ["user_conv", "item_conv", "global", "backward"])
def test_hooks_on_the_layers_or_all_modules_take_the_model_call(kind, where, monkeypatch):
    """A hook on a layer or on every module would be skipped by the row paths."""
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", 1.0)
    torch.manual_seed(0)
    m = getattr(GraphCF, kind)(NU, NI, embedding_dim=4, edge_index=graph()).double()
    users, items = torch.tensor([0, 4, 4]), torch.tensor([3, 1])
    seen: list[str] = []

    def zero(mod, args, out):  # type: ignore[no-untyped-def]
        seen.append(type(mod).__name__)
        return out * 0 if isinstance(out, Tensor) else out

    if where == "global":
        handle = torch.nn.modules.module.register_module_forward_hook(zero)
    elif where == "backward":
        handle = m.register_full_backward_hook(lambda mod, gi, go: seen.append("bwd"))
    else:
        handle = getattr(m, where).register_forward_hook(zero)
    try:
        u, i = m.embed_rows(users, items)
        (u.sum() + i.sum()).backward()
        got, seen[:] = list(seen), []
        fu, fi = m()
        (fu[users].sum() + fi[items].sum()).backward()
    finally:
        handle.remove()
    assert got == seen  # the hooks saw what they see when the model is called
    torch.testing.assert_close(u, fu[users])
    torch.testing.assert_close(i, fi[items])


def test_one_sided_rows_with_tables_of_two_dtypes_as_forward():
    """The adjacency takes the dtype of the features it multiplies, as in forward()."""
    torch.manual_seed(0)
    for kind in ("svdpp_user", "svdpp_item"):
        m = getattr(GraphCF, kind)(NU, NI, embedding_dim=3, edge_index=graph())
        (m.item_embedding if kind == "svdpp_user" else m.user_embedding).double()
        users, items = torch.tensor([1, 5]), torch.tensor([2, 2, 0])
        u, i = m.embed_rows(users, items)
        fu, fi = m()
        torch.testing.assert_close(u, fu[users])
        torch.testing.assert_close(i, fi[items])


def test_spmm_rows_refuses_a_share_that_is_not_a_number():
    from pyg_cf.nn.spmm import spmm_rows

    m = model(num_layers=1)
    a = m.user_conv.normalized_adjacency(m.graph.flip(0), (NI, NU), torch.float64)
    with pytest.raises(ConfigError, match="row_slice: max_share"):
        spmm_rows(a, torch.tensor([0]), m.item_embedding.weight, max_share=float("nan"))


def test_slice_rows_is_checked_and_has_a_class_default():
    m = model(num_layers=1)
    m.slice_rows = "no"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="slice_rows must be None, True or False, got 'no'"):
        m.embed_rows(torch.tensor([0]), torch.tensor([0]))
    del m.slice_rows  # a model pickled before the attribute existed
    u, _ = m.embed_rows(torch.tensor([0]), torch.tensor([0]))
    torch.testing.assert_close(u, m()[0][:1])


# -- over a subgraph (neighbor-sampled steps) ------------------------------------------------
def subgraph(sort_order: str | None = "row", weights: str = "random") -> dict[str, object]:
    """The arguments of forward() for the subgraph of users 1..10 and items 0..7 (local ids
    in reverse order of the global ones), with two different weights per edge."""
    ei = graph()
    user_nodes, item_nodes = torch.arange(10, 0, -1), torch.arange(7, -1, -1)
    keep = (ei[0] >= 1) & (ei[0] <= 10) & (ei[1] <= 7)
    local = torch.stack([10 - ei[0, keep], 7 - ei[1, keep]])
    if sort_order == "row":
        local = local[:, torch.argsort(local[0] * 8 + local[1])]
    g = torch.Generator().manual_seed(1)
    w = (torch.rand(local.size(1), generator=g, dtype=torch.float64) + 0.5 for _ in range(2))
    edge_index = (
        local
        if sort_order is None
        else EdgeIndex(local, sparse_size=(10, 8), sort_order=sort_order)
    )
    return {
        "edge_index": edge_index,
        "user_nodes": user_nodes,
        "item_nodes": item_nodes,
        "edge_weight": tuple(w),
    }


def sub_rows_and_grads(
    m: GraphCF, users: Tensor, items: Tensor, sub: dict[str, object], fused: bool
) -> list[Tensor]:
    m.zero_grad()
    if fused:
        u, i = m.embed_rows(users, items, **sub)  # type: ignore[arg-type]
    else:
        fu, fi = m(**sub)  # type: ignore[arg-type]
        u, i = fu[users], fi[items]
    return _backward_of_weighted_loss(m, u, i)


def counting_forward(m: GraphCF) -> list[int]:
    calls: list[int] = []
    m.forward = lambda *a, **k: calls.append(1) or GraphCF.forward(m, *a, **k)  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("share", [1.0, 0.0])
@pytest.mark.parametrize(
    "kw",
    [
        {"num_layers": 1},
        {"num_layers": 3, "layer_weights": [0.7, -0.2, 1.5, 0.1]},
        {"num_layers": 2, "propagate_items": False},  # user-side SVD++
        {"num_layers": 1, "propagate_users": False},  # item-side SVD++
    ],
)
def test_subgraph_rows_equal_the_subgraph_forward_gathered(kw, share, monkeypatch):
    """Local ids of a subgraph whose two directions have different weights (a swap of
    them, or of the directions, would show)."""
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", share)
    m = model(**kw)
    sub = subgraph()
    users, items = torch.tensor([3, 0, 3, 9, 7, 3]), torch.tensor([7, 7, 1, 0, 4])
    calls = counting_forward(m)
    got = sub_rows_and_grads(m, users, items, sub, fused=True)
    assert calls == []
    want = sub_rows_and_grads(m, users, items, sub, fused=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["tensor", "unsorted", "trainable", "no weights"])
def test_other_subgraph_inputs_take_the_model_call(case):
    """Where a layer would not make a cached CSR product of the subgraph, the rows are
    gathered from forward(), with its values."""
    m = model(num_layers=2)
    sub = subgraph(sort_order=None if case == "tensor" else "row")
    if case == "unsorted":
        sub = subgraph(sort_order=None)
        sub["edge_index"] = EdgeIndex(sub["edge_index"], sparse_size=(10, 8))
    elif case == "trainable":
        w_ui, w_iu = sub["edge_weight"]  # type: ignore[misc]
        sub["edge_weight"] = (w_ui.requires_grad_(), w_iu)
    elif case == "no weights":
        sub["edge_weight"] = None
    users, items = torch.tensor([0, 5]), torch.tensor([2, 2])
    calls = counting_forward(m)
    got = sub_rows_and_grads(m, users, items, sub, fused=True)
    assert calls == [1]
    want = sub_rows_and_grads(m, users, items, sub, fused=False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_subgraph_ids_and_inputs_are_checked_as_forward_checks_them():
    m = model(num_layers=2)
    sub = subgraph()
    with pytest.raises(ConfigError, match=r"user ids must lie in \[0, 10\)"):
        m.embed_rows(torch.tensor([10]), torch.tensor([0]), **sub)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"item ids must lie in \[0, 8\)"):
        m.embed_rows(torch.tensor([0]), torch.tensor([8]), **sub)  # type: ignore[arg-type]
    bad = {**sub, "user_nodes": torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, NU])}
    with pytest.raises(ConfigError, match=r"user ids must lie in \[0, 13\)"):
        m.embed_rows(torch.tensor([0]), torch.tensor([0]), **bad)  # type: ignore[arg-type]
    w = sub["edge_weight"][0]  # type: ignore[index]
    with pytest.raises(ConfigError, match="edge_weight must be a pair"):
        m.embed_rows(torch.tensor([0]), torch.tensor([0]), **{**sub, "edge_weight": w})  # type: ignore[arg-type]
    ei = EdgeIndex(sub["edge_index"].as_subclass(Tensor), sparse_size=(12, 8), sort_order="row")  # type: ignore[union-attr]
    for call in (m.embed_rows, lambda u, i, **k: m(**k)):
        named = r"EdgeIndex of sparse_size \((12, 8|8, 12)\) but the features"
        with pytest.raises(ConfigError, match=named):
            call(torch.tensor([0]), torch.tensor([0]), **{**sub, "edge_index": ei})
    short = (w[:-1], w[:-1])
    with pytest.raises(ConfigError, match="edge_weight must be a floating"):
        m.embed_rows(torch.tensor([0]), torch.tensor([0]), **{**sub, "edge_weight": short})  # type: ignore[arg-type]


def test_subgraph_rows_of_tables_of_two_dtypes_as_forward():
    """One-sided: each side's matrix in the dtype of the table it multiplies; two-sided
    with mixed tables: the model call (forward() promotes)."""
    sub = subgraph()
    users, items = torch.tensor([1, 5]), torch.tensor([2, 2, 0])
    for kw in ({"propagate_items": False}, {"propagate_users": False}, {}):
        torch.manual_seed(0)
        m = GraphCF(NU, NI, embedding_dim=3, num_layers=2, edge_index=graph(), **kw)  # type: ignore[arg-type]
        (m.user_embedding if kw.get("propagate_users", True) else m.item_embedding).double()
        calls = counting_forward(m)
        u, i = m.embed_rows(users, items, **sub)  # type: ignore[arg-type]
        assert calls == ([1] if not kw else [])
        fu, fi = GraphCF.forward(m, **sub)  # type: ignore[arg-type]
        torch.testing.assert_close(u, fu[users])
        torch.testing.assert_close(i, fi[items])


def test_a_layer_that_does_not_sum_takes_the_model_call_on_a_subgraph():
    from torch_geometric.nn.aggr import MeanAggregation

    m = model(num_layers=1, propagate_users=False)
    # the constructor refuses aggr="mean"; a layer altered after it still must not be fused
    m.item_conv = BipartiteNormConv()
    m.item_conv.aggr, m.item_conv.aggr_module = "mean", MeanAggregation()
    sub = subgraph()
    users, items = torch.tensor([0, 5]), torch.tensor([2, 2, 7])
    calls = counting_forward(m)
    _u, i = m.embed_rows(users, items, **sub)  # type: ignore[arg-type]
    assert calls == [1]
    _fu, fi = GraphCF.forward(m, **sub)  # type: ignore[arg-type]
    torch.testing.assert_close(i, fi[items], rtol=0, atol=0)
