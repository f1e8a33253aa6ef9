"""BipartiteNormConv inside users' own PyG models, and torch.jit / torch.compile."""

import warnings

import pytest
import torch
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, LGConv, SAGEConv, to_hetero
from torch_geometric.nn.models import LightGCN

from pyg_cf.losses import LossBatch, get_loss
from pyg_cf.nn import BipartiteNormConv, GraphCF, bipartite_norm

NU, NI, D = 9, 6, 4
UI, IU = ("user", "rates", "item"), ("item", "rated_by", "user")


@pytest.fixture
def graph():
    g = torch.Generator().manual_seed(0)
    ei = torch.stack([torch.randint(NU, (30,), generator=g), torch.randint(NI, (30,), generator=g)])
    ei = ei.unique(dim=1)
    data = HeteroData()
    data["user"].x = torch.randn(NU, D, generator=g)
    data["item"].x = torch.randn(NI, D, generator=g)
    data[UI].edge_index = ei
    data[IU].edge_index = ei.flip(0)
    return data


def dense_norm(ei, a0=0.5, a1=0.5):
    """Dense [NI, NU] matrix of user->item messages (reference)."""
    w = bipartite_norm(ei, (NU, NI), a0, a1)
    a = torch.zeros(NI, NU)
    a[ei[1], ei[0]] = w
    return a


def test_hetero_conv_next_to_sage(graph):
    conv = HeteroConv(
        {UI: BipartiteNormConv(0.5, 0.5), IU: SAGEConv((-1, -1), D)},
        aggr="sum",
    )
    out = conv(graph.x_dict, graph.edge_index_dict)
    ei = graph[UI].edge_index
    torch.testing.assert_close(out["item"], dense_norm(ei) @ graph["user"].x)
    sage = conv.convs[IU]
    torch.testing.assert_close(
        out["user"], sage((graph["item"].x, graph["user"].x), graph[IU].edge_index)
    )
    out["user"].sum().backward()
    assert sage.lin_l.weight.grad.abs().sum() > 0


def test_to_hetero_of_a_homogeneous_model(graph):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D, D)
            self.conv = BipartiteNormConv(0.5, 0.5)

        def forward(self, x, edge_index):
            return self.conv(self.lin(x), edge_index)

    net = to_hetero(Net(), graph.metadata(), aggr="sum")
    out = net(graph.x_dict, graph.edge_index_dict)
    # each edge type gets its own copy of the layer, normalized by that type's degrees
    lin_u, lin_i = net.lin["user"], net.lin["item"]
    ei = graph[UI].edge_index
    expect_item = dense_norm(ei) @ lin_u(graph["user"].x)
    expect_user = dense_norm(ei).t() @ lin_i(graph["item"].x)
    torch.testing.assert_close(out["item"], expect_item)
    torch.testing.assert_close(out["user"], expect_user)
    out["user"].sum().backward()
    assert lin_i.weight.grad is not None and lin_i.weight.grad.abs().sum() > 0


def test_drop_in_for_lgconv_in_pyg_lightgcn(graph):
    ei = graph[UI].edge_index
    hom = torch.cat([ei + torch.tensor([[0], [NU]]), (ei + torch.tensor([[0], [NU]])).flip(0)], 1)
    torch.manual_seed(0)
    pyg = LightGCN(NU + NI, D, num_layers=3)
    ours = LightGCN(NU + NI, D, num_layers=3)
    ours.load_state_dict(pyg.state_dict())
    ours.convs = nn.ModuleList([BipartiteNormConv(0.5, 0.5) for _ in range(3)])
    assert isinstance(pyg.convs[0], LGConv)
    torch.testing.assert_close(ours.get_embedding(hom), pyg.get_embedding(hom))
    # and equals GraphCF.lightgcn on the bipartite graph
    model = GraphCF.lightgcn(NU, NI, D, num_layers=3, edge_index=ei)
    with torch.no_grad():
        model.user_embedding.weight.copy_(pyg.embedding.weight[:NU])
        model.item_embedding.weight.copy_(pyg.embedding.weight[NU:])
    u, i = model()
    torch.testing.assert_close(torch.cat([u, i]), pyg.get_embedding(hom))


def test_lgconv_differs_with_edge_weight_or_a_one_way_edge_as_docs_compat_says():
    """docs/compat.md: identical to ``LGConv`` only without ``edge_weight`` and with both
    directions of every edge; ``LGConv`` normalizes given weights by weighted in-degrees
    (passing them pre-normalized reproduces it) and takes in-degrees at both ends."""
    from torch_geometric.utils import scatter

    torch.manual_seed(0)
    one_way = torch.tensor([[0, 0, 1, 2, 3], [1, 2, 2, 0, 0]])  # node 3 has no in-edge
    both = torch.cat([one_way, one_way.flip(0)], 1)
    x = torch.randn(4, 3, dtype=torch.float64)
    ours, lg = BipartiteNormConv(0.5, 0.5), LGConv()
    torch.testing.assert_close(ours(x, both), lg(x, both))
    assert not torch.allclose(ours(x, one_way), lg(x, one_way))
    x2 = x.clone()
    x2[3] += 1.0  # node 3 sends nothing through LGConv (its in-degree 0 zeroes the weight)
    assert torch.equal(lg(x2, one_way), lg(x, one_way))
    assert not torch.equal(ours(x2, one_way)[0], ours(x, one_way)[0])
    w = torch.rand(both.size(1), dtype=torch.float64) + 0.5
    assert not torch.allclose(ours(x, both, w), lg(x, both, w))
    deg = scatter(w, both[1], 0, dim_size=4, reduce="sum")
    torch.testing.assert_close(
        ours(x, both, w / (deg[both[0]] * deg[both[1]]).sqrt()), lg(x, both, w)
    )


class FeatureLightGCN(nn.Module):
    """LightGCN propagation with item embeddings from a linear encoder of item features."""

    def __init__(self, num_users, item_dim, dim, num_layers=2):
        super().__init__()
        self.user = nn.Embedding(num_users, dim)
        self.encoder = nn.Linear(item_dim, dim, bias=False)
        self.to_item = BipartiteNormConv(0.5, 0.5)
        self.to_user = BipartiteNormConv(0.5, 0.5)
        self.num_layers = num_layers

    def forward(self, item_x, edge_index):
        hu, hi = self.user.weight, self.encoder(item_x)
        out_u, out_i = hu, hi
        n_u, n_i = hu.size(0), hi.size(0)
        for _ in range(self.num_layers):
            hu, hi = (
                self.to_user((hi, hu), edge_index.flip(0), size=(n_i, n_u)),
                self.to_item((hu, hi), edge_index, size=(n_u, n_i)),
            )
            out_u, out_i = out_u + hu, out_i + hi
        return out_u / (self.num_layers + 1), out_i / (self.num_layers + 1)


def test_feature_encoder_pipeline_equals_graphcf_with_identity_features(graph):
    ei = graph[UI].edge_index
    net = FeatureLightGCN(NU, NI, D, num_layers=2)
    ref = GraphCF.lightgcn(NU, NI, D, num_layers=2, edge_index=ei)
    with torch.no_grad():
        net.user.weight.copy_(ref.user_embedding.weight)
        net.encoder.weight.copy_(ref.item_embedding.weight.t())
    u, i = net(torch.eye(NI), ei)
    ru, ri = ref()
    torch.testing.assert_close(u, ru)
    torch.testing.assert_close(i, ri)


def test_feature_encoder_pipeline_trains_with_our_losses(graph):
    ei = graph[UI].edge_index
    feats = torch.randn(NI, 8)
    net = FeatureLightGCN(NU, 8, D)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    loss_fn = get_loss("ssm", tau=0.5)
    losses = []
    for _ in range(30):
        u, i = net(feats, ei)
        batch = LossBatch(users=ei[0], pos_items=ei[1], user_emb=u[ei[0]], pos_emb=i[ei[1]])
        loss = loss_fn(batch)
        opt.zero_grad()
        loss.backward()
        assert net.encoder.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# -- torch.jit / torch.compile ---------------------------------------------------------------
def test_jit_trace_matches_eager(graph):
    ei = graph[UI].edge_index
    conv = BipartiteNormConv(0.5, 0.0)
    x = (graph["user"].x, graph["item"].x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(conv, (x, ei))
    torch.testing.assert_close(traced(x, ei), conv(x, ei))
    # the trace is not specialised to the graph it was traced on
    g = torch.Generator().manual_seed(1)
    ei2 = torch.stack([torch.randint(11, (40,), generator=g), torch.randint(8, (40,), generator=g)])
    x2 = (torch.randn(11, D), torch.randn(8, D))
    torch.testing.assert_close(traced(x2, ei2), conv(x2, ei2))


def test_torch_export_of_layer(graph):
    ei = graph[UI].edge_index
    x = (graph["user"].x, graph["item"].x)
    conv = BipartiteNormConv(0.5, 0.5)
    exported = torch.export.export(conv, (x, ei))
    torch.testing.assert_close(exported.module()(x, ei), conv(x, ei))


def test_jit_script_is_not_supported(graph):
    conv = BipartiteNormConv()  # built outside: only the scripting may raise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError):  # TorchScript's error; documented in docs/compat.md
            torch.jit.script(conv)


@pytest.mark.parametrize("cached", [False, True])
def test_torch_compile_matches_eager(graph, cached):
    torch._dynamo.reset()
    ei = graph[UI].edge_index
    xs = graph["user"].x.clone().requires_grad_()
    conv = BipartiteNormConv(0.5, 0.5, cached=cached)
    ref = conv((xs, None), ei, size=(NU, NI))
    (g_ref,) = torch.autograd.grad(ref.square().sum(), xs)
    # fullgraph only for the uncached edge_index path (see docs/compat.md)
    compiled = torch.compile(
        BipartiteNormConv(0.5, 0.5, cached=cached), backend="aot_eager", fullgraph=not cached
    )
    for _ in range(2):
        out = compiled((xs, None), ei, size=(NU, NI))
        (g,) = torch.autograd.grad(out.square().sum(), xs)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(g, g_ref)


def test_torch_compile_of_graphcf(graph):
    torch._dynamo.reset()
    model = GraphCF.lightgcn(NU, NI, D, num_layers=2, edge_index=graph[UI].edge_index)
    ru, ri = model()
    u, i = torch.compile(model, backend="aot_eager")()
    torch.testing.assert_close(u, ru)
    torch.testing.assert_close(i, ri)


def test_torch_compile_of_a_sparse_csr_adj_t(graph):
    # docs/compat.md: torch sparse CSR adj_t works with fullgraph=False
    torch._dynamo.reset()
    ei = graph[UI].edge_index
    adj_t = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)), (NI, NU)).to_sparse_csr()
    xs = graph["user"].x.clone().requires_grad_()
    ref = BipartiteNormConv(0.5, 0.5)((xs, None), adj_t)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), xs)
    compiled = torch.compile(BipartiteNormConv(0.5, 0.5), backend="aot_eager")
    for _ in range(2):
        out = compiled((xs, None), adj_t)
        (g,) = torch.autograd.grad(out.square().sum(), xs)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(g, g_ref)
