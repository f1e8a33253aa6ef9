import numpy as np
import pytest
import torch

from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.nn import GraphCF

EI = torch.tensor([[0, 0, 1, 1, 1, 2, 3, 3], [0, 1, 1, 2, 3, 0, 2, 3]])
NU, NI = 5, 6


def norm_adj(a0, a1):
    """Dense R with R[u, i] = 1 / (|P_u|^a0 |P_i|^a1) (users as targets) and its mirror."""
    r = torch.zeros(NU, NI, dtype=torch.float64)
    r[EI[0], EI[1]] = 1.0
    du, di = r.sum(1, keepdim=True), r.sum(0, keepdim=True)
    with torch.no_grad():
        to_users = torch.where(r > 0, r / (du.clamp(min=1) ** a0 * di.clamp(min=1) ** a1), 0.0)
        to_items = torch.where(r > 0, r / (di.clamp(min=1) ** a0 * du.clamp(min=1) ** a1), 0.0).t()
    return to_users, to_items


def test_mf_is_identity():
    m = GraphCF.mf(NU, NI, 8, edge_index=EI)
    u, i = m()
    assert torch.equal(u, m.user_embedding.weight) and torch.equal(i, m.item_embedding.weight)


@pytest.mark.parametrize("a0,a1", [(0.5, 0.0), (1.0, 0.0), (0.5, 0.5), (0.0, 0.0)])
def test_svdpp_user_side_equation(a0, a1):
    m = GraphCF.svdpp_user(NU, NI, 8, alpha0=a0, alpha1=a1, edge_index=EI)
    p0, q0 = m.user_embedding.weight.double(), m.item_embedding.weight.double()
    to_users, _ = norm_adj(a0, a1)
    u, i = m()
    assert torch.allclose(u.double(), p0 + to_users @ q0, atol=1e-5)
    assert torch.allclose(i.double(), q0)


@pytest.mark.parametrize("a0,a1", [(0.5, 0.5), (1.0, 0.0)])
def test_svdpp_item_side_equation(a0, a1):
    m = GraphCF.svdpp_item(NU, NI, 8, alpha0=a0, alpha1=a1, edge_index=EI)
    p0, q0 = m.user_embedding.weight.double(), m.item_embedding.weight.double()
    _, to_items = norm_adj(a0, a1)
    u, i = m()
    assert torch.allclose(i.double(), q0 + to_items @ p0, atol=1e-5)
    assert torch.allclose(u.double(), p0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_lightgcn_equation(k):
    m = GraphCF.lightgcn(NU, NI, 8, num_layers=k, edge_index=EI)
    p, q = m.user_embedding.weight.double(), m.item_embedding.weight.double()
    to_users, to_items = norm_adj(0.5, 0.5)
    su, si = p.clone(), q.clone()
    for _ in range(k):
        p, q = to_users @ q, to_items @ p
        su, si = su + p, si + q
    u, i = m()
    assert torch.allclose(u.double(), su / (k + 1), atol=1e-5)
    assert torch.allclose(i.double(), si / (k + 1), atol=1e-5)
    assert torch.allclose(u[4], m.user_embedding.weight[4] / (k + 1))  # isolated user


def test_layers_are_each_hop_and_combine_is_forward():
    m = GraphCF.lightgcn(NU, NI, 8, num_layers=2, edge_index=EI)
    to_users, to_items = norm_adj(0.5, 0.5)
    hs_u, hs_i = m.layers()
    p, q = m.user_embedding.weight.double(), m.item_embedding.weight.double()
    assert len(hs_u) == len(hs_i) == 3
    for k in range(3):
        assert torch.allclose(hs_u[k].double(), p, atol=1e-5)
        assert torch.allclose(hs_i[k].double(), q, atol=1e-5)
        p, q = to_users @ q, to_items @ p
    u, i = m.combine(hs_u, hs_i)
    fu, fi = m()
    assert torch.allclose(u, fu) and torch.allclose(i, fi)
    # an unpropagated side has only layer 0, returned as it is
    s = GraphCF.svdpp_user(NU, NI, 8, edge_index=EI)
    hs_u, hs_i = s.layers()
    assert len(hs_u) == 2 and len(hs_i) == 1 and hs_i[0] is s.item_embedding.weight
    assert torch.allclose(s.combine(hs_u, hs_i)[0], s()[0])
    assert GraphCF.mf(NU, NI, 8).layers()[0][0] is not None


def test_subgraph_forward_with_node_ids_equals_full_graph():
    m = GraphCF.lightgcn(NU, NI, 4, num_layers=2, edge_index=EI)
    full_u, full_i = m()
    users, items = torch.arange(NU), torch.arange(NI)
    u, i = m(EI.clone(), users, items)
    assert torch.allclose(u, full_u, atol=1e-6) and torch.allclose(i, full_i, atol=1e-6)
    # local ids: local node k is global node users[k] / items[k] (ids that are not the
    # identity, so a forward ignoring them would read the wrong rows)
    g = torch.Generator().manual_seed(0)
    users, items = torch.randperm(NU, generator=g), torch.randperm(NI, generator=g)
    local_u, local_i = torch.argsort(users), torch.argsort(items)  # global -> local
    local_ei = torch.stack([local_u[EI[0]], local_i[EI[1]]])
    u, i = m(local_ei, users, items)
    assert torch.allclose(u, full_u[users], atol=1e-6)
    assert torch.allclose(i, full_i[items], atol=1e-6)


def test_score_and_recommend_exclude_training_items():
    m = GraphCF.lightgcn(NU, NI, 8, edge_index=EI)
    s = m.score(torch.tensor([0, 1]))
    assert s.shape == (2, NI)
    rec = m.recommend(torch.tensor([0, 1, 3]), k=2)
    seen = {(int(u), int(i)) for u, i in EI.t()}
    for row, u in zip(rec.tolist(), [0, 1, 3]):
        assert all((u, it) not in seen for it in row)
    cos = m.score(torch.tensor([0]), similarity="cos")
    assert cos.abs().max() <= 1 + 1e-5


def test_recommend_refuses_a_k_that_would_return_training_items():
    """With k past a user's unseen items the masked (-inf) training items filled the list,
    while the docs promise them excluded."""
    m = GraphCF.mf(NU, NI, 8, edge_index=EI)
    deg = torch.bincount(EI[0], minlength=NU)
    u = int(deg.argmax())
    left = NI - int(deg[u])
    assert m.recommend(torch.tensor([u]), k=left).shape == (1, left)
    with pytest.raises(ConfigError, match=rf"user {u} has {left} items it has not trained on"):
        m.recommend(torch.tensor([0, u]), k=left + 1)
    full = m.recommend(torch.tensor([u]), k=NI, exclude_train=False)
    assert sorted(full[0].tolist()) == list(range(NI))


def test_api_misuse_is_reported():
    m = GraphCF.mf(NU, NI, 4, edge_index=EI)
    with pytest.raises(PygCFError, match="item ids"):
        m.score(torch.tensor([0]), torch.tensor([NI]))
    with pytest.raises(PygCFError, match="user ids"):
        m.recommend(torch.tensor([-1]), k=2)
    with pytest.raises(ConfigError, match="embedding_dim"):
        GraphCF(3, 3, embedding_dim=0)
    with pytest.raises(PygCFError, match="other data"):
        GraphCF.lightgcn(2, 2, edge_index=EI)


def test_xavier_initialisation():
    m = GraphCF.mf(1000, 500, 64)
    bound = (6 / (1000 + 64)) ** 0.5
    assert m.user_embedding.weight.abs().max() <= bound + 1e-6
    # the default draws exactly what it drew before init_std existed: users, then items
    torch.manual_seed(3)
    m = GraphCF.lightgcn(1000, 500, 64)
    torch.manual_seed(3)
    torch.nn.Embedding(1000, 64), torch.nn.Embedding(500, 64)  # their own draws come first
    u, i = torch.empty(1000, 64), torch.empty(500, 64)
    torch.nn.init.xavier_uniform_(u)
    torch.nn.init.xavier_uniform_(i)
    assert torch.equal(m.user_embedding.weight, u) and torch.equal(m.item_embedding.weight, i)


@pytest.mark.parametrize("builder", ["mf", "svdpp-user", "svdpp-item", "lightgcn"])
def test_normal_initialisation_with_init_std(builder):
    edge_index = torch.tensor([[0, 1, 2], [0, 1, 2]])
    make = {
        "mf": GraphCF.mf,
        "svdpp-user": GraphCF.svdpp_user,
        "svdpp-item": GraphCF.svdpp_item,
        "lightgcn": GraphCF.lightgcn,
    }[builder]
    torch.manual_seed(0)
    m = make(2000, 3000, 64, edge_index=edge_index, init_std=0.1)
    for table in (m.user_embedding.weight, m.item_embedding.weight):
        assert abs(float(table.mean())) < 2e-3
        assert float(table.std()) == pytest.approx(0.1, rel=0.02)
    assert "init_std=0.1" in repr(m)
    assert GraphCF.mf(5, 5, init_std=np.float32(0.1)).init_std == pytest.approx(0.1)
    m.reset_parameters()  # a reset draws from the same distribution
    assert float(m.item_embedding.weight.std()) == pytest.approx(0.1, rel=0.02)


@pytest.mark.parametrize("bad", [0, -0.1, float("inf"), float("nan"), "0.1", True])
def test_init_std_is_checked(bad):
    with pytest.raises(ConfigError, match="init_std must be None or a positive number"):
        GraphCF.lightgcn(10, 10, init_std=bad)


@pytest.mark.parametrize("model", ["lightgcn", "svdpp-user"])
def test_deepcopy_after_forward(model):
    """A model that has propagated (its sparse adjacency cached) can be deep-copied — e.g.
    to keep the best weights — and the copy propagates to the same embeddings."""
    import copy

    m = (
        GraphCF.lightgcn(NU, NI, 8, edge_index=EI)
        if model == "lightgcn"
        else GraphCF.svdpp_user(NU, NI, 8, edge_index=EI)
    )
    u, i = m()
    twin = copy.deepcopy(m)
    u2, i2 = twin()
    assert torch.equal(u, u2) and torch.equal(i, i2)
    with torch.no_grad():
        twin.user_embedding.weight.add_(1.0)
    assert torch.equal(m()[0], u)  # the copy shares nothing


def test_embeddings_are_detached_for_an_unpropagated_side():
    for model in (
        GraphCF.mf(NU, NI, 4, edge_index=EI),
        GraphCF.svdpp_user(NU, NI, 4, edge_index=EI),
    ):
        u, i = model.embeddings()
        assert not u.requires_grad and not i.requires_grad
        u.numpy(), i.numpy()  # as a user exporting them would


def test_set_graph_rebuilds_the_cached_adjacency_of_an_edited_tensor():
    g = EI.clone()
    model = GraphCF.lightgcn(NU, NI, 4, 2, edge_index=g)
    model()
    g[1, 0] = (int(g[1, 0]) + 1) % NI  # edit in place, then re-attach
    u, i = model.set_graph(g)()
    fresh = GraphCF.lightgcn(NU, NI, 4, 2, edge_index=g.clone())
    fresh.load_state_dict(model.state_dict())
    fu, fi = fresh()
    torch.testing.assert_close(u, fu)
    torch.testing.assert_close(i, fi)


def test_non_finite_layer_weights_are_rejected():
    with pytest.raises(ConfigError, match="finite"):
        GraphCF(NU, NI, 4, 2, layer_weights=[1.0, float("nan"), 1.0])


def test_layer_weights_models_and_a_missing_graph_are_named():
    from torch_geometric.data import HeteroData

    with pytest.raises(ConfigError, match="layer_weights must be 'mean', 'sum' or a list"):
        GraphCF(NU, NI, 4, 2, layer_weights="max")
    with pytest.raises(ConfigError, match="layer_weights needs 3 values, got 2"):
        GraphCF(NU, NI, 4, 2, layer_weights=[0.5, 0.5])
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = NU, NI
    data["user", "rates", "item"].edge_index = EI
    with pytest.raises(ConfigError, match="unknown model 'ngcf'; choose one of"):
        GraphCF.from_data(data, "ngcf")
    with pytest.raises(PygCFError, match="no training graph: pass edge_index or call set_graph"):
        GraphCF.lightgcn(NU, NI, 4, 2)()


def test_layer0_sparse_lookup_gives_a_sparse_gradient_of_the_same_rows():
    m = GraphCF.mf(5, 7, embedding_dim=4)
    users, items = torch.tensor([0, 3, 3]), torch.tensor([6, 1, 6, 2])
    grads = []
    for sparse in (False, True):
        m.zero_grad(set_to_none=True)
        u, i = m.layer0(users, items, sparse=sparse)
        assert torch.equal(u, m.user_embedding.weight[users])
        assert torch.equal(i, m.item_embedding.weight[items])
        (u.pow(2).sum() + 3 * i.pow(3).sum()).backward()
        g = m.item_embedding.weight.grad
        assert g.is_sparse == sparse
        if sparse:
            assert g._nnz() == len(items)  # O(batch) rows, not the table
        grads.append((m.user_embedding.weight.grad.to_dense(), g.to_dense()))
    for a, b in zip(*grads):
        assert torch.allclose(a, b)


def test_an_index_edited_in_place_is_flipped_anew():
    """The model's reversed index was keyed on the object only: after an in-place edit the
    users propagated over the old graph."""
    from pyg_cf.nn import GraphCF

    torch.manual_seed(0)
    m = GraphCF.lightgcn(4, 4, 3, num_layers=1)
    buf = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    m(buf)
    buf[1].copy_(torch.tensor([1, 2, 3, 0]))
    u, i = m(buf)
    u_ref, i_ref = m(buf.clone())
    assert torch.allclose(u, u_ref) and torch.allclose(i, i_ref)


def test_custom_layer_weights_and_exponents_against_a_dense_reference():
    """Each hop k weighted by its own w_k (and both exponents in place), against dense
    float64 propagation written out here."""
    g = torch.Generator().manual_seed(5)
    nu, ni, d = 6, 5, 3
    adj = (torch.rand(nu, ni, generator=g) < 0.5).double()
    adj[0, 0] = adj[1, 1] = 1.0
    ei = adj.nonzero().t()
    a0, a1, w = 1.0, 0.25, [0.2, 0.5, 1.5]
    m = GraphCF(nu, ni, d, 2, alpha0=a0, alpha1=a1, layer_weights=w).double()
    m.set_graph(ei)
    du, di = adj.sum(1), adj.sum(0)

    def norm(deg_t, deg_s, a):  # [T, S]: 1 / (|P_t|^a0 |P_s|^a1) on edges
        pt = torch.where(deg_t > 0, deg_t.pow(-a0), torch.zeros_like(deg_t))
        ps = torch.where(deg_s > 0, deg_s.pow(-a1), torch.zeros_like(deg_s))
        return pt[:, None] * a * ps[None, :]

    a_ui, a_iu = norm(du, di, adj), norm(di, du, adj.t())
    p, q = m.user_embedding.weight.detach(), m.item_embedding.weight.detach()
    out_p, out_q = w[0] * p, w[0] * q
    for k in (1, 2):
        p, q = a_ui @ q, a_iu @ p
        out_p, out_q = out_p + w[k] * p, out_q + w[k] * q
    u, i = m()
    assert torch.allclose(u, out_p, atol=1e-12) and torch.allclose(i, out_q, atol=1e-12)


def test_an_id_check_for_a_larger_table_does_not_cover_a_smaller_one():
    ids = torch.tensor([7])
    GraphCF(10, 10, 2, 0)(None, ids, ids)  # checked against 10 users
    with pytest.raises(PygCFError, match=r"user ids must lie in \[0, 5\)"):
        GraphCF(5, 10, 2, 0)(None, ids, torch.tensor([1]))


@pytest.mark.parametrize(
    ("edge_weight", "got"),
    [
        (torch.ones(EI.size(1)), r"a tensor of shape \(8,\)"),  # unpacked over its rows
        (torch.ones(2), r"a tensor of shape \(2,\)"),  # unpacked into two 0-d tensors
        ((torch.ones(EI.size(1)),), "a tuple of length 1"),
        ([torch.ones(EI.size(1))] * 3, "a list of length 3"),
        (1.0, "float"),
    ],
)
def test_edge_weight_must_be_a_pair(edge_weight, got):
    m = GraphCF.lightgcn(NU, NI, 4, 2, edge_index=EI)
    msg = rf"edge_weight must be a pair \(w_user_to_item, w_item_to_user\) .* got {got}"
    with pytest.raises(ConfigError, match=msg):
        m(EI, None, None, edge_weight)
    with pytest.raises(ConfigError, match=msg):
        m.layers(EI, None, None, edge_weight)
    w = torch.ones(EI.size(1))
    for pair in ((w, w), [w, w]):
        torch.testing.assert_close(m(EI, None, None, pair)[0], m(EI, None, None, (w, w))[0])


@pytest.mark.parametrize("model", ["lightgcn", "svdpp-user"])
def test_forward_is_differentiable_twice_as_the_plain_path(model):
    """The cached layers' backward wrote through ``addmm(..., out=...)``: a gradient taken
    with ``create_graph=True`` (a gradient penalty) raised. It now matches the plain
    message-passing path, to the second order."""
    import copy

    build = GraphCF.lightgcn if model == "lightgcn" else GraphCF.svdpp_user
    kw = {"num_layers": 2} if model == "lightgcn" else {}
    m = build(NU, NI, 4, edge_index=EI, **kw).double()
    plain = copy.deepcopy(m)
    for conv in (plain.user_conv, plain.item_conv):
        conv.cached = False  # the MessagePassing path, differentiable to any order

    def penalty(net):
        tables = [net.user_embedding.weight, net.item_embedding.weight]
        u, i = net()
        loss = (u @ i.t()).pow(2).sum()
        grads = torch.autograd.grad(loss, tables, create_graph=True)
        pen = sum(g.pow(2).sum() for g in grads)
        return grads, torch.autograd.grad(pen, tables)

    grads, second = penalty(m)
    grads_ref, second_ref = penalty(plain)
    for got, want in zip((*grads, *second), (*grads_ref, *second_ref)):
        torch.testing.assert_close(got, want)
