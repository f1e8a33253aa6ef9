import pytest
import torch
from torch_geometric.loader import LinkLoader, NodeLoader

from pyg_cf.data.graph import REV_EDGE, USER_ITEM
from pyg_cf.errors import ConfigError
from pyg_cf.loader import BipartiteCSR, BipartiteNeighborSampler, pyg_sampler_available
from pyg_cf.loader import neighbor_sampler as ns_module
from pyg_cf.nn import GraphCF
from tests.loader.conftest import as_hetero, random_edges

NU, NI = 50, 40


def sparse_graph(seed=0):
    return random_edges(NU, NI, 130, seed)


def check_maps(sub, ei):
    """Local ids -> global ids -> the training edge named by e_id."""
    assert torch.equal(sub.user_id, sub.user_id.unique())  # sorted, unique
    assert torch.equal(sub.item_id, sub.item_id.unique())
    loc = sub.edge_index.as_subclass(torch.Tensor)
    glob = torch.stack([sub.user_id[loc[0]], sub.item_id[loc[1]]])
    assert torch.equal(glob, ei[:, sub.e_id])
    assert sub.e_id.unique().numel() == sub.e_id.numel()
    assert torch.equal(sub.local_users(sub.user_id), torch.arange(sub.num_users))
    assert torch.equal(sub.local_items(sub.item_id), torch.arange(sub.num_items))


@pytest.mark.parametrize("fanout", [[2, 2], [1, 3, 2], [-1, 2], [1]])
def test_subgraph_holds_exactly_the_sampled_edges(monkeypatch, fanout):
    ei = sparse_graph()
    sampler = BipartiteNeighborSampler(ei, fanout, num_users=NU, num_items=NI)
    g = sampler.graph
    drawn = []
    real = ns_module.sample_neighbors

    def spy(rowptr, nodes, k, generator=None):
        row, pos = real(rowptr, nodes, k, generator)
        if rowptr is g.user_rowptr:
            drawn.append(pos)  # user-major position == canonical edge id
            assert torch.equal(g.users[pos], nodes[row])
        else:
            drawn.append(g.item_eid[pos])
            assert torch.equal(g.item_col[pos], g.users[g.item_eid[pos]])
            assert torch.equal(g.items[g.item_eid[pos]], nodes[row])
        return row, pos

    monkeypatch.setattr(ns_module, "sample_neighbors", spy)
    users, items = torch.tensor([0, 3, 3, 7]), torch.tensor([1, 5])
    sub = sampler.sample(users, items, torch.Generator().manual_seed(0))
    expected = torch.unique(torch.cat(drawn)) if drawn else torch.empty(0, dtype=torch.long)
    assert torch.equal(sub.e_id, expected)  # input is sorted: canonical ids == columns
    check_maps(sub, ei)
    # seeds are in the subgraph; every other node is reached through a sampled edge
    assert torch.isin(users, sub.user_id).all() and torch.isin(items, sub.item_id).all()
    loc = sub.edge_index.as_subclass(torch.Tensor)
    touched_u = torch.zeros(sub.num_users, dtype=torch.bool)
    touched_u[loc[0]] = True
    touched_i = torch.zeros(sub.num_items, dtype=torch.bool)
    touched_i[loc[1]] = True
    assert (touched_u | torch.isin(sub.user_id, users)).all()
    assert (touched_i | torch.isin(sub.item_id, items)).all()
    assert sub.num_sampled_nodes["user"][0] == 3 and sub.num_sampled_nodes["item"][0] == 2
    assert sum(sub.num_sampled_nodes["user"]) == sub.num_users


def test_edge_index_caches_match_a_fresh_sort():
    from torch_geometric import EdgeIndex

    ei = random_edges(NU, NI, 400, 8)
    sampler = BipartiteNeighborSampler(ei, [3, 3], num_users=NU, num_items=NI)
    sub = sampler.sample(torch.tensor([0, 4]), torch.tensor([2, 9]), torch.Generator())
    plain = sub.edge_index.as_subclass(torch.Tensor)
    fresh = EdgeIndex(plain.clone(), sparse_size=(sub.num_users, sub.num_items), sort_order="row")
    for ours, ref in ((sub.edge_index, fresh), (sub.edge_index.flip(0), fresh.flip(0))):
        (_, a_idx), a_perm = ours.get_csc() if ours.is_sorted_by_row else ours.get_csr()
        (_, b_idx), b_perm = ref.get_csc() if ref.is_sorted_by_row else ref.get_csr()
        assert torch.equal(a_idx, b_idx) and torch.equal(a_perm, b_perm)


def test_unsorted_input_edges_map_back_to_their_columns():
    ei = sparse_graph(1)
    perm = torch.randperm(ei.size(1), generator=torch.Generator().manual_seed(0))
    shuffled = ei[:, perm]
    sampler = BipartiteNeighborSampler(shuffled, [3, 3], num_users=NU, num_items=NI)
    sub = sampler.sample(torch.tensor([1, 2]), torch.tensor([4]), torch.Generator().manual_seed(1))
    check_maps(sub, shuffled)


def test_fanout_caps_each_expanded_node():
    ei = random_edges(30, 30, 400, 2)
    sampler = BipartiteNeighborSampler(ei, [3], num_users=30, num_items=30)
    seeds = torch.tensor([0, 1, 2])
    sub = sampler.sample(seeds, torch.empty(0, dtype=torch.long), torch.Generator())
    deg = torch.bincount(ei[0], minlength=30)
    loc = sub.edge_index.as_subclass(torch.Tensor)
    per_user = torch.bincount(sub.user_id[loc[0]], minlength=30)
    assert torch.equal(per_user[seeds], deg[seeds].clamp(max=3))


def test_weights_use_full_graph_degrees():
    ei = sparse_graph()
    sampler = BipartiteNeighborSampler(
        ei, [1], alpha0=0.5, alpha1=0.5, degree_correction=False, num_users=NU, num_items=NI
    )
    seeds_u, seeds_i = torch.tensor([0, 1]), torch.tensor([2])
    sub = sampler.sample(seeds_u, seeds_i, torch.Generator())
    du = torch.bincount(ei[0], minlength=NU).float()
    di = torch.bincount(ei[1], minlength=NI).float()
    loc = sub.edge_index.as_subclass(torch.Tensor)
    u, i = sub.user_id[loc[0]], sub.item_id[loc[1]]
    ref = 1 / (du[u].sqrt() * di[i].sqrt())
    # one hop: only the seeds drew, one edge each, and a message flows into a node only
    # along its own draw (full-graph weight there, 0 elsewhere)
    to_item, to_user = sub.edge_weight != 0, sub.rev_edge_weight != 0
    assert torch.allclose(sub.edge_weight[to_item], ref[to_item])
    assert torch.allclose(sub.rev_edge_weight[to_user], ref[to_user])
    assert torch.equal(i[to_item], seeds_i) and torch.equal(u[to_user], seeds_u)


def make_model(kind):
    torch.manual_seed(0)
    if kind == "lightgcn":
        return GraphCF.lightgcn(NU, NI, 8, num_layers=3)
    if kind == "svdpp-user":
        return GraphCF.svdpp_user(NU, NI, 8)
    if kind == "svdpp-item":
        return GraphCF.svdpp_item(NU, NI, 8)
    return GraphCF(NU, NI, 8, num_layers=2, alpha0=1.0, alpha1=0.0, layer_weights=[0.2, 0.5, 1])


def assert_subgraph_is_exact(model, sub, users, items):
    """The seeds' embeddings over ``sub`` equal the full-graph ones, and so do the
    gradients of a loss on them."""
    w = (sub.edge_weight, sub.rev_edge_weight)
    model.zero_grad()
    u_sub, i_sub = model(sub.edge_index, sub.user_id, sub.item_id, edge_weight=w)
    u_full, i_full = model()
    assert torch.allclose(u_sub[sub.local_users(users)], u_full[users], atol=1e-5)
    assert torch.allclose(i_sub[sub.local_items(items)], i_full[items], atol=1e-5)
    (u_sub[sub.local_users(users)].sum() * i_sub[sub.local_items(items)].sum()).backward()
    g_sub = (model.user_embedding.weight.grad.clone(), model.item_embedding.weight.grad.clone())
    model.zero_grad()
    u_full, i_full = model()
    (u_full[users].sum() * i_full[items].sum()).backward()
    assert torch.allclose(g_sub[0], model.user_embedding.weight.grad, atol=1e-5)
    assert torch.allclose(g_sub[1], model.item_embedding.weight.grad, atol=1e-5)


@pytest.mark.parametrize("kind", ["lightgcn", "svdpp-user", "svdpp-item", "alpha"])
@pytest.mark.parametrize("correction", [True, False])
def test_full_fanout_gives_full_graph_embeddings(kind, correction):
    ei = sparse_graph()
    model = make_model(kind)
    model.set_graph(ei)
    hops = model.num_layers
    sampler = BipartiteNeighborSampler(
        ei,
        [-1] * hops,
        model.alpha0,
        model.alpha1,
        degree_correction=correction,
        num_users=NU,
        num_items=NI,
    )
    users, items = torch.tensor([0, 5, 9]), torch.tensor([3, 8])
    sub = sampler.sample(users, items, torch.Generator())
    assert 0 < sub.num_edges < ei.size(1)  # a real subgraph, not the whole graph
    assert_subgraph_is_exact(model, sub, users, items)


@pytest.mark.parametrize("backend", ["torch", "pyg"])
@pytest.mark.parametrize("kind", ["svdpp-user", "svdpp-item"])
def test_one_sided_targets_keep_exact_embeddings_on_a_smaller_subgraph(kind, backend):
    """A one-sided model needs only its receiving side's draws: the seeds' embeddings and
    gradients stay exact with fan-out -1 while the other side draws nothing."""
    if backend == "pyg" and not pyg_sampler_available():
        pytest.skip("needs pyg-lib or torch-sparse")
    ei = sparse_graph()
    model = make_model(kind)
    model.set_graph(ei)
    side = "user" if kind == "svdpp-user" else "item"
    a0, a1 = model.alpha0, model.alpha1
    both = BipartiteNeighborSampler(ei, [-1], a0, a1, num_users=NU, num_items=NI)
    one = BipartiteNeighborSampler(
        ei, [-1], a0, a1, num_users=NU, num_items=NI, targets=(side,), backend=backend
    )
    users, items = torch.tensor([0, 5, 9]), torch.tensor([3, 8])
    sub_both = both.sample(users, items, torch.Generator())
    sub = one.sample(users, items, torch.Generator())
    assert 0 < sub.num_edges < sub_both.num_edges
    # every edge of the one-sided subgraph was drawn by a seed of the receiving side
    ends = ei[0 if side == "user" else 1, sub.e_id]
    assert torch.isin(ends, users if side == "user" else items).all()
    assert_subgraph_is_exact(model, sub, users, items)


def test_degree_correction_is_unbiased_for_one_hop():
    ei = random_edges(20, 200, 1500, 3)
    x = torch.randn(200, 4)
    sampler = BipartiteNeighborSampler(ei, [5], 0.5, 0.5, num_users=20, num_items=200)
    user = torch.tensor([int(torch.bincount(ei[0]).argmax())])
    du = torch.bincount(ei[0], minlength=20)
    di = torch.bincount(ei[1], minlength=200).float()
    nbr = ei[1, ei[0] == user]
    full = (x[nbr] / (du[user].float().sqrt() * di[nbr].sqrt()).unsqueeze(1)).sum(0)
    g = torch.Generator().manual_seed(0)
    acc = torch.zeros(4)
    n = 3000
    for _ in range(n):
        sub = sampler.sample(user, torch.empty(0, dtype=torch.long), g)
        loc = sub.edge_index.as_subclass(torch.Tensor)
        msg = x[sub.item_id[loc[1]]] * sub.rev_edge_weight.unsqueeze(1)
        acc += msg[sub.user_id[loc[0]] == user].sum(0)
    assert torch.allclose(acc / n, full, atol=0.05 * full.abs().max() + 0.02)


def test_degree_correction_is_unbiased_when_the_positive_is_a_seed_too():
    """A training batch seeds a user and its positive item. The item may draw the edge
    back; counting that as one of the user's draws would weigh the positive ~9x too much
    here (deg 100, fan-out 10). Messages into the user follow only the user's own draws."""
    others = torch.arange(1, 31)
    ei = torch.cat(
        [
            torch.stack([torch.zeros(100, dtype=torch.long), torch.arange(100)]),
            torch.stack([others, others % 5]),  # items 0-4 have more users
        ],
        dim=1,
    )
    sampler = BipartiteNeighborSampler(ei, [10], 0.5, 0.5, num_users=31, num_items=100)
    du = torch.bincount(ei[0], minlength=31).float()
    di = torch.bincount(ei[1], minlength=100).float()
    full = 1 / (du[0].sqrt() * di.sqrt())  # weight of item j -> user 0 in the full graph
    g = torch.Generator().manual_seed(0)
    acc = torch.zeros(100)
    n = 2000
    for _ in range(n):
        sub = sampler.sample(torch.tensor([0]), torch.tensor([0]), g)
        loc = sub.edge_index.as_subclass(torch.Tensor)
        into_user0 = sub.user_id[loc[0]] == 0
        acc.index_add_(0, sub.item_id[loc[1]][into_user0], sub.rev_edge_weight[into_user0])
    ratio = acc / n / full
    assert abs(float(ratio[0]) - 1) < 0.3  # the seed positive: 9.2 before the fix
    assert abs(float(ratio.mean()) - 1) < 0.05


def test_seeded_sampling_repeats():
    ei = random_edges(NU, NI, 400, 5)
    s = BipartiteNeighborSampler(ei, [3, 2], num_users=NU, num_items=NI)
    a = s.sample(torch.tensor([1, 2]), torch.tensor([3]), torch.Generator().manual_seed(9))
    b = s.sample(torch.tensor([1, 2]), torch.tensor([3]), torch.Generator().manual_seed(9))
    assert torch.equal(a.e_id, b.e_id) and torch.equal(a.user_id, b.user_id)
    assert torch.equal(a.edge_weight, b.edge_weight)


def test_bad_arguments():
    ei = sparse_graph()
    with pytest.raises(ConfigError, match="num_neighbors"):
        BipartiteNeighborSampler(ei, [-2], num_users=NU, num_items=NI)
    for fanouts in ([3, 0], [2.7], [True]):  # an empty hop; truncated to 2; a bool
        with pytest.raises(ConfigError, match="num_neighbors must be fan-outs"):
            BipartiteNeighborSampler(ei, fanouts, num_users=NU, num_items=NI)
    for kw in ({"alpha0": 7}, {"alpha1": float("nan")}, {"alpha0": "half"}):
        with pytest.raises(ConfigError, match=rf"{next(iter(kw))} must"):
            BipartiteNeighborSampler(ei, [1], num_users=NU, num_items=NI, **kw)
    with pytest.raises(ConfigError, match="backend"):
        BipartiteNeighborSampler(ei, [1], backend="dgl", num_users=NU, num_items=NI)
    with pytest.raises(ConfigError, match="num_users"):
        BipartiteNeighborSampler(ei, [1])
    for bad in ((), ("users",), ("user", "edge"), "user"):
        with pytest.raises(ConfigError, match="targets"):
            BipartiteNeighborSampler(ei, [1], num_users=NU, num_items=NI, targets=bad)


def test_plugs_into_pyg_link_loader():
    ei = random_edges(NU, NI, 400, 6)
    data = as_hetero(ei, NU, NI)
    sampler = BipartiteNeighborSampler(data, [3, 3], generator=torch.Generator().manual_seed(0))
    loader = LinkLoader(
        data,
        link_sampler=sampler,
        edge_label_index=(USER_ITEM, ei),
        batch_size=32,
        neg_sampling="triplet",
    )
    batch = next(iter(loader))
    src = batch["user"].n_id[batch["user"].src_index]
    pos = batch["item"].n_id[batch["item"].dst_pos_index]
    assert torch.isin(src * NI + pos, ei[0] * NI + ei[1]).all()  # the seed links
    for et in (USER_ITEM, REV_EDGE):
        loc = batch[et].edge_index
        s_type, _, d_type = et
        glob = torch.stack([batch[s_type].n_id[loc[0]], batch[d_type].n_id[loc[1]]])
        full = data[et].edge_index
        assert torch.equal(glob, full[:, batch[et].e_id])
    nodes = NodeLoader(
        data, node_sampler=sampler, input_nodes=("user", torch.arange(5)), batch_size=5
    )
    nb = next(iter(nodes))
    assert torch.equal(nb["user"].n_id[:5], torch.arange(5))  # seeds first


def _worker_draws(seed):
    """Items reached by user 0 (degree ~100, fan-out 3) in 8 one-seed batches over two
    DataLoader workers: batch 2j comes from worker 0, batch 2j+1 from worker 1."""
    ei = random_edges(20, 300, 3000, 0)
    data = as_hetero(ei, 20, 300)
    sampler = BipartiteNeighborSampler(data, [3], generator=torch.Generator().manual_seed(0))
    torch.manual_seed(seed)
    loader = NodeLoader(
        data,
        node_sampler=sampler,
        input_nodes=("user", torch.zeros(8, dtype=torch.long)),
        batch_size=1,
        num_workers=2,
    )
    return [tuple(sorted(b["item"].n_id.tolist())) for b in loader]


def test_seeded_sampler_draws_differently_in_each_worker():
    draws = _worker_draws(0)
    # forked workers hold copies of one generator state: without reseeding, worker 1's
    # i-th batch repeated worker 0's i-th batch exactly
    assert any(draws[2 * j] != draws[2 * j + 1] for j in range(4))
    assert len(set(draws)) >= 6
    assert _worker_draws(0) == draws  # reproducible under torch.manual_seed
    assert _worker_draws(1) != draws


def star_graph(deg=6, others=3):
    """User 0 with ``deg`` items; a few other users on the same items."""
    u = [0] * deg + list(range(1, others + 1))
    i = list(range(deg)) + list(range(others))
    return torch.tensor([u, i])


def one_hop_frequencies(sampler, n, generator=None):
    cnt = torch.zeros(sampler.graph.num_edges)
    for _ in range(n):
        sub = sampler.sample(torch.tensor([0]), torch.empty(0, dtype=torch.long), generator)
        cnt[sub.e_id] += 1
    return cnt / n


def test_one_hop_inclusion_is_uniform():
    ei = star_graph()
    s = BipartiteNeighborSampler(ei, [2], num_users=4, num_items=6)
    freq = one_hop_frequencies(s, 6000, torch.Generator().manual_seed(0))
    # each of user 0's 6 edges is kept with probability 2/6; the others never
    assert torch.allclose(freq[:6], torch.full((6,), 1 / 3), atol=0.03)
    assert freq[6:].sum() == 0


def test_multi_hop_inclusion_matches_exact_law():
    # user 0 - items {0, 1, 2}; item 0 - users {0, 1, 2, 3}. Fan-out [1, 2]: hop 1 keeps one
    # of user 0's items; if it is item 0, hop 2 keeps 2 of its 3 other users.
    ei = torch.tensor([[0, 0, 0, 1, 2, 3], [0, 1, 2, 0, 0, 0]])
    s = BipartiteNeighborSampler(ei, [1, 2], num_users=4, num_items=3)
    freq = one_hop_frequencies(s, 9000, torch.Generator().manual_seed(1))
    # edge (0, 0): drawn at hop 1 w.p. 1/3; edges (1..3, 0): item 0 reached (1/3), then
    # 2 of its 4 users are drawn, user 0 among them w.p. 1/2 (already in, edge kept).
    exp = torch.tensor([1 / 3, 1 / 3, 1 / 3, 1 / 6, 1 / 6, 1 / 6])
    assert torch.allclose(freq, exp, atol=0.02)


@pytest.mark.skipif(not pyg_sampler_available(), reason="needs pyg-lib or torch-sparse")
@pytest.mark.parametrize("fanout", [[-1, -1], [50, 50], [2, 3]])
def test_pyg_backend_samples_the_same_structure(fanout):
    """PyG's NeighborSampler path gives the same subgraph where sampling is deterministic
    (all neighbors taken) and the same number of edges per expanded node otherwise."""
    ei = random_edges(25, 20, 160, 7)
    data = as_hetero(ei, 25, 20)
    ours = BipartiteNeighborSampler(data, fanout)
    theirs = BipartiteNeighborSampler(data, fanout, backend="pyg")
    users, items = torch.tensor([0, 1, 2]), torch.tensor([4])
    torch.manual_seed(0)
    a = ours.sample(users, items, torch.Generator().manual_seed(0))
    b = theirs.sample(users, items)
    check_maps(b, ei)
    if fanout[0] == -1 or fanout[0] >= 50:
        assert torch.equal(a.e_id, b.e_id) and torch.equal(a.user_id, b.user_id)
        assert torch.equal(a.edge_weight, b.edge_weight)
    else:  # the seeds' hop-1 draws: min(deg, k) edges per seed in both
        for sub in (a, b):
            loc = sub.edge_index.as_subclass(torch.Tensor)
            per_user = torch.bincount(sub.user_id[loc[0]], minlength=25)[users]
            deg = torch.bincount(ei[0], minlength=25)[users]
            assert (per_user >= deg.clamp(max=fanout[0])).all()


@pytest.mark.skipif(not pyg_sampler_available(), reason="needs pyg-lib or torch-sparse")
@pytest.mark.filterwarnings("ignore:backend='pyg' without pyg-lib")
@pytest.mark.parametrize("k", [2, 4])
def test_pyg_backend_draws_exactly_the_fanout_per_seed(k):
    """One hop from user seeds alone: every seed holds exactly min(deg, k) of its edges in
    both backends (the test above only bounds the two-hop case from below)."""
    ei = random_edges(25, 20, 160, 7)
    data = as_hetero(ei, 25, 20)
    users, items = torch.tensor([0, 1, 2, 3]), torch.tensor([], dtype=torch.long)
    want = torch.bincount(ei[0], minlength=25)[users].clamp(max=k)
    ours = BipartiteNeighborSampler(data, [k]).sample(
        users, items, torch.Generator().manual_seed(0)
    )
    theirs = BipartiteNeighborSampler(data, [k], backend="pyg").sample(users, items)
    for sub in (ours, theirs):
        check_maps(sub, ei)
        loc = sub.edge_index.as_subclass(torch.Tensor)
        assert torch.equal(torch.bincount(sub.user_id[loc[0]], minlength=25)[users], want)
        assert loc.size(1) == int(want.sum())


def floyd_law(deg, k, off_by_one):
    """Exact per-offset inclusion probabilities of Floyd's algorithm, drawing from
    ``[0, j]`` (correct) or ``[0, j)`` (``rand() % j`` as in torch-sparse's sampler)."""
    import itertools

    ranges = [range(j if off_by_one else j + 1) for j in range(deg - k, deg)]
    prob = torch.zeros(deg)
    combos = list(itertools.product(*ranges))
    for draws in combos:
        chosen = set()
        for j, t in zip(range(deg - k, deg), draws):
            chosen.add(j if t in chosen else t)
        for c in chosen:
            prob[c] += 1 / len(combos)
    return prob


@pytest.mark.skipif(not pyg_sampler_available(), reason="needs pyg-lib or torch-sparse")
def test_pyg_backend_distribution_is_documented():
    """The distributions agree only where PyG's backend is uniform: torch-sparse's
    ``hetero_neighbor_sample`` draws Floyd's step from ``rand() % j`` instead of
    ``% (j + 1)``, which under-samples some neighbors (here 0.2 instead of 1/3). pyg-cf's
    sampler follows the uniform law, which is why ``backend='torch'`` is the default."""
    import torch_geometric.typing as tgt

    ei = star_graph()
    data = as_hetero(ei, 4, 6)
    torch.manual_seed(0)
    freq = one_hop_frequencies(BipartiteNeighborSampler(data, [2], backend="pyg"), 6000)
    got = freq[:6].sort().values
    uniform = floyd_law(6, 2, off_by_one=False).sort().values
    biased = floyd_law(6, 2, off_by_one=True).sort().values
    assert torch.allclose(uniform, torch.full((6,), 1 / 3))
    if tgt.WITH_PYG_LIB:  # pyg-lib's sampler
        assert torch.allclose(got, uniform, atol=0.03) or torch.allclose(got, biased, atol=0.03)
    else:  # torch-sparse: the off-by-one law, measurably not uniform
        assert torch.allclose(got, biased, atol=0.03)
        assert not torch.allclose(got, uniform, atol=0.05)


@pytest.mark.skipif(not pyg_sampler_available(), reason="needs pyg-lib or torch-sparse")
def test_the_pyg_backend_through_torch_sparse_warns_that_sampled_fanouts_are_biased(caplog):
    """The off-by-one law above is not what degree correction assumes: a sampled fan-out
    through torch-sparse says so; fan-out -1 (every neighbor, exact) and ours do not."""
    import torch_geometric.typing as tgt

    data = as_hetero(star_graph(), 4, 6)
    with caplog.at_level("WARNING", logger="pyg_cf"):
        BipartiteNeighborSampler(data, [-1, -1], backend="pyg")
        BipartiteNeighborSampler(data, [2, 2])
    assert "not uniform" not in caplog.text
    with caplog.at_level("WARNING", logger="pyg_cf"):
        BipartiteNeighborSampler(data, [-1, 2], backend="pyg")
    assert ("not uniform" in caplog.text) == (not tgt.WITH_PYG_LIB)


def test_csr_rejects_bad_ids():
    from pyg_cf.errors import DataFormatError

    with pytest.raises(DataFormatError, match="outside"):
        BipartiteCSR(torch.tensor([[0, 5], [0, 1]]), 3, 3)
    with pytest.raises(DataFormatError, match=r"users in \[0, 1\], items in \[-1, 1\]"):
        BipartiteCSR(torch.tensor([[0, 1], [-1, 1]]), 3, 3)


@pytest.mark.parametrize("fanout", [[2, 2, 2], [3, 1], [5]])
def test_subgraph_size_obeys_the_fan_out_bound(fanout):
    """Each hop expands only the new frontier, by at most f_h edges a node: a step's
    subgraph has at most seeds · Σ_h Π_(j≤h) f_j edges and seeds · (1 + that sum) nodes,
    whatever the graph's size (the bound behind benchmarks/bench_scale.py's cost model)."""
    import math

    nu, ni = 400, 300
    ei = random_edges(nu, ni, 6000, 3)
    sampler = BipartiteNeighborSampler(ei, fanout, num_users=nu, num_items=ni)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        users = torch.randint(nu, (40,), generator=g)
        items = torch.randint(ni, (25,), generator=g)
        sub = sampler.sample(users, items, g)
        seeds = users.unique().numel() + items.unique().numel()
        reach = sum(math.prod(fanout[: h + 1]) for h in range(len(fanout)))
        assert sub.num_edges <= seeds * reach
        assert sub.num_users + sub.num_items <= seeds * (1 + reach)
        # hop by hop: the new frontier is at most the previous one times f_h
        new = [u + i for u, i in zip(sub.num_sampled_nodes["user"], sub.num_sampled_nodes["item"])]
        for h, f in enumerate(fanout):
            assert new[h + 1] <= new[h] * f


def test_sampled_ids_are_not_read_back_but_a_changed_id_is_refused():
    """The sampler built the subgraph's node ids from valid ones: the model skips their
    bound check (a device read per side and step); an id changed in place is checked."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from pyg_cf.errors import PygCFError

    class CountAminmax(TorchDispatchMode):
        reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket is torch.ops.aten.aminmax:
                CountAminmax.reads += 1
            return func(*args, **(kwargs or {}))

    ei = random_edges(NU, NI, 400, 3)
    sampler = BipartiteNeighborSampler(ei, [3, 3], num_users=NU, num_items=NI)
    sub = sampler.sample(torch.tensor([0, 4]), torch.tensor([2, 9]), torch.Generator())
    model = GraphCF.lightgcn(NU, NI, 8, num_layers=2)
    w = (sub.edge_weight, sub.rev_edge_weight)
    with CountAminmax():
        model(sub.edge_index, sub.user_id, sub.item_id, edge_weight=w)
    assert CountAminmax.reads == 0
    with CountAminmax():
        model(sub.edge_index, sub.user_id.clone(), sub.item_id, edge_weight=w)
    assert CountAminmax.reads == 1  # a copy made elsewhere is checked
    sub.user_id[0] = NU  # in place: out of range now
    with pytest.raises(PygCFError, match="user ids must lie in"):
        model(sub.edge_index, sub.user_id, sub.item_id, edge_weight=w)


def _same_subgraph(a, b):
    assert torch.equal(a.user_id, b.user_id) and torch.equal(a.item_id, b.item_id)
    assert torch.equal(a.e_id, b.e_id)
    assert torch.equal(a.edge_weight, b.edge_weight)
    assert torch.equal(a.rev_edge_weight, b.rev_edge_weight)


@pytest.mark.parametrize(
    ("users", "items", "error", "match"),
    [
        ([0], [-2], ConfigError, r"item seeds must lie in \[0, 40\); got min -2, max -2"),
        ([-1, 3], [0], ConfigError, r"user seeds must lie in \[0, 50\); got min -1, max 3"),
        ([0, NU + 4], [0], ConfigError, r"user seeds must lie in \[0, 50\); got min 0, max 54"),
        ([0], [NI], ConfigError, r"item seeds must lie in \[0, 40\); got min 40, max 40"),
        ([0.0], [0], TypeError, r"user seeds must be integers, got dtype torch.float32"),
        ([[0, 1]], [0], ConfigError, r"user seeds must be a 1-D tensor, got shape \(1, 2\)"),
    ],
)
def test_bad_seeds_are_refused_and_leave_the_sampler_clean(users, items, error, match):
    """A negative seed wrapped around (item -2 was item 38) and one past the end crashed
    inside torch; either way the call left the work buffers marked, so every later valid
    call dropped those nodes from its frontier."""
    ei = sparse_graph()
    sampler = BipartiteNeighborSampler(ei, [-1, -1], num_users=NU, num_items=NI)
    fresh = BipartiteNeighborSampler(ei, [-1, -1], num_users=NU, num_items=NI)
    with pytest.raises(error, match=match):
        sampler.sample(torch.tensor(users), torch.tensor(items))
    seeds = torch.tensor([0, 3]), torch.tensor([0, 1, 2])
    _same_subgraph(sampler.sample(*seeds), fresh.sample(*seeds))
    for mask in (sampler._seen_u, sampler._seen_i, sampler._new_u, sampler._new_i):
        assert not mask.any()


def test_a_call_that_fails_midway_leaves_the_work_buffers_clean(monkeypatch):
    """Whatever interrupts a call (here the second hop's draw) once the seeds are marked
    as reached, the next call starts from clean buffers."""
    ei = sparse_graph()
    sampler = BipartiteNeighborSampler(ei, [2, 2], num_users=NU, num_items=NI)
    fresh = BipartiteNeighborSampler(ei, [2, 2], num_users=NU, num_items=NI)
    real, calls = ns_module.sample_neighbors, []

    def failing(rowptr, nodes, k, generator=None):
        calls.append(k)
        if len(calls) == 3:  # the first draw of the second hop
            raise RuntimeError("interrupted")
        return real(rowptr, nodes, k, generator)

    seeds = torch.tensor([0, 3, 7]), torch.tensor([1, 5])
    monkeypatch.setattr(ns_module, "sample_neighbors", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        sampler.sample(*seeds, torch.Generator().manual_seed(0))
    monkeypatch.setattr(ns_module, "sample_neighbors", real)
    a = sampler.sample(*seeds, torch.Generator().manual_seed(1))
    b = fresh.sample(*seeds, torch.Generator().manual_seed(1))
    _same_subgraph(a, b)
    for mask in (sampler._seen_u, sampler._seen_i, sampler._new_u, sampler._new_i):
        assert not mask.any()


def test_seeds_are_read_once_for_both_sides_and_not_when_a_sampler_built_them(monkeypatch):
    """The seed check adds one host read per call (both sides' bounds in one tensor),
    and none for ids that a sampler's subgraph holds (already known to be in range)."""

    class CountAminmax(torch.utils._python_dispatch.TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += func.overloadpacket is torch.ops.aten.aminmax
            return func(*args, **(kwargs or {}))

    ei = sparse_graph()
    sampler = BipartiteNeighborSampler(ei, [2], num_users=NU, num_items=NI)
    reads = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: reads.append(t.numel()) or tolist(t))
    with CountAminmax() as count:
        sub = sampler.sample(torch.tensor([4, 0]), torch.tensor([2, 9]), torch.Generator())
    assert count.calls == 2 and reads == [4]  # (min, max) of users and items: one read
    reads.clear()
    with CountAminmax() as count:
        sampler.sample(sub.user_id, sub.item_id, torch.Generator())
    assert count.calls == 0 and reads == []


def test_float64_weights_make_full_fanout_batches_exact_in_float64():
    """The weights were float32 whatever the model, so a float64 model's "exact"
    full-neighbourhood batch was off by ~1e-8; with dtype=float64 it matches to float64
    rounding. The float32 default is unchanged."""
    ei = sparse_graph()
    torch.manual_seed(0)
    model = GraphCF.lightgcn(NU, NI, 8, num_layers=3, edge_index=ei).double()
    users, items = torch.arange(NU), torch.arange(NI)
    u_full, i_full = model()
    for correction in (True, False):
        kw = dict(num_users=NU, num_items=NI, degree_correction=correction)
        s64 = BipartiteNeighborSampler(ei, [-1] * 3, dtype=torch.float64, **kw)
        sub = s64.sample(users, items, torch.Generator())
        assert sub.edge_weight.dtype == sub.rev_edge_weight.dtype == torch.float64
        u, i = model(
            sub.edge_index, sub.user_id, sub.item_id, (sub.edge_weight, sub.rev_edge_weight)
        )
        torch.testing.assert_close(u[sub.local_users(users)], u_full, rtol=0, atol=1e-14)
        torch.testing.assert_close(i[sub.local_items(items)], i_full, rtol=0, atol=1e-14)
        # float32 (default): as computed before, in float32 throughout
        sub32 = BipartiteNeighborSampler(ei, [-1] * 3, **kw).sample(users, items)
        assert sub32.edge_weight.dtype == torch.float32
        du = torch.bincount(ei[0], minlength=NU).float()
        di = torch.bincount(ei[1], minlength=NI).float()
        loc = sub32.edge_index.as_subclass(torch.Tensor)
        ref = di.pow(-0.5)[sub32.item_id[loc[1]]] * du.pow(-0.5)[sub32.user_id[loc[0]]]
        assert torch.equal(sub32.edge_weight, ref)
        torch.testing.assert_close(sub.edge_weight.float(), ref)
    sub16 = BipartiteNeighborSampler(ei, [2], dtype=torch.float16, num_users=NU, num_items=NI)
    assert sub16.sample(users[:3], items[:2]).edge_weight.dtype == torch.float16
    for bad in (torch.int64, "float64", None):
        with pytest.raises(ConfigError, match=r"dtype .* must be a floating torch\.dtype"):
            BipartiteNeighborSampler(ei, [2], dtype=bad, num_users=NU, num_items=NI)


def test_csr_and_sampler_refuse_floating_edge_ids():
    """Floating ids were cast to int64: (0.9, 0.7) became the edge (0, 0), silently."""
    e = torch.tensor([[0.9, 1.5, 2.0], [0.7, 1.2, 2.99]])
    with pytest.raises(
        TypeError, match=r"edge_index must hold integer ids, got dtype torch\.float32"
    ):
        BipartiteCSR(e, 3, 3)
    with pytest.raises(TypeError, match="integer ids"):
        BipartiteNeighborSampler(e, [-1], num_users=3, num_items=3)
    with pytest.raises(TypeError, match="integer ids"):
        BipartiteCSR(e > 1, 3, 3)
    with pytest.raises(TypeError, match=r"\[2, E\] tensor"):
        BipartiteCSR([[0, 1], [0, 1]], 3, 3)
    csr = BipartiteCSR(torch.tensor([[0, 1, 2], [0, 1, 2]], dtype=torch.int32), 3, 3)
    assert torch.equal(csr.items, torch.tensor([0, 1, 2]))


def test_int32_seeds_sample_as_int64_ones():
    ei = torch.tensor([[0, 1, 1, 2, 3, 3], [0, 0, 1, 2, 1, 2]])
    s = BipartiteNeighborSampler(ei, [2, 2], num_users=4, num_items=3)
    a = s.sample(torch.tensor([1, 3], dtype=torch.int32), torch.tensor([2], dtype=torch.int32))
    b = s.sample(torch.tensor([1, 3]), torch.tensor([2]))
    assert torch.equal(a.user_id, b.user_id) and torch.equal(a.item_id, b.item_id)
    assert torch.equal(
        a.edge_index.as_subclass(torch.Tensor), b.edge_index.as_subclass(torch.Tensor)
    )


def _per_edge_type_hops(model, batch, weighted=True):
    """``model``'s final embeddings over a loader batch: its hops as one
    :class:`BipartiteNormConv` per edge type with the batch's ``edge_weight`` (or, not
    ``weighted``, the weights the layer computes from the batch's own degrees)."""
    from pyg_cf.nn import BipartiteNormConv

    conv = BipartiteNormConv(model.alpha0, model.alpha1)
    w = model.layer_weights.to(model.user_embedding.weight.dtype)
    h_u = model.user_embedding.weight[batch["user"].n_id]
    h_i = model.item_embedding.weight[batch["item"].n_id]
    out_u, out_i = h_u * w[0], h_i * w[0]
    ui, iu = batch[USER_ITEM], batch[REV_EDGE]
    for k in range(1, model.num_layers + 1):
        h_u, h_i = (
            conv((h_i, h_u), iu.edge_index, iu.edge_weight if weighted else None),
            conv((h_u, h_i), ui.edge_index, ui.edge_weight if weighted else None),
        )
        out_u, out_i = out_u + h_u * w[k], out_i + h_i * w[k]
    return out_u, out_i


@pytest.mark.parametrize("side", ["user", "item"])
def test_loader_batches_get_the_full_graph_weights_and_stay_exact(side):
    """A NodeLoader / LinkLoader batch carried ``edge_index`` and ``e_id`` only: the weights
    the sampler computed were dropped, so a model on it normalized by subgraph degrees.
    ``transform=sampler.add_edge_weights`` restores them: full fan-out is exact again."""
    ei = sparse_graph()
    data = as_hetero(ei, NU, NI)
    torch.manual_seed(0)
    model = GraphCF(NU, NI, 8, num_layers=2, alpha0=0.3, alpha1=0.8, edge_index=ei).double()
    sampler = BipartiteNeighborSampler(data, [-1, -1], 0.3, 0.8, dtype=torch.float64)
    seeds = torch.tensor([0, 5, 9]) if side == "user" else torch.tensor([3, 8])
    kw = dict(node_sampler=sampler, input_nodes=(side, seeds), batch_size=seeds.numel())
    u_full, i_full = model()
    want = (u_full if side == "user" else i_full)[seeds]
    plain = next(iter(NodeLoader(data, **kw)))
    assert "edge_weight" not in plain[USER_ITEM] and "edge_weight" not in plain[REV_EDGE]
    # normalized by the subgraph's degrees: not the full-graph embeddings
    got = _per_edge_type_hops(model, plain, weighted=False)[0 if side == "user" else 1]
    assert not torch.allclose(got[: seeds.numel()], want)
    batch = next(iter(NodeLoader(data, transform=sampler.add_edge_weights, **kw)))
    assert batch[USER_ITEM].edge_weight.dtype == torch.float64
    got = _per_edge_type_hops(model, batch)[0 if side == "user" else 1]
    assert batch[side].n_id.numel() > seeds.numel()  # a real subgraph
    torch.testing.assert_close(got[: seeds.numel()], want, rtol=0, atol=1e-14)
    # a LinkLoader batch: the seed links' users and items are exact
    links = LinkLoader(
        data,
        link_sampler=sampler,
        edge_label_index=(USER_ITEM, ei[:, :4]),
        batch_size=4,
        transform=sampler.add_edge_weights,
    )
    lb = next(iter(links))
    u, i = _per_edge_type_hops(model, lb)
    src, dst = lb[USER_ITEM].edge_label_index
    torch.testing.assert_close(u[src], u_full[lb["user"].n_id[src]], rtol=0, atol=1e-14)
    torch.testing.assert_close(i[dst], i_full[lb["item"].n_id[dst]], rtol=0, atol=1e-14)


@pytest.mark.parametrize("correction", [True, False])
def test_added_weights_are_those_of_sample_for_the_same_draws(correction):
    """With sampled fan-outs (and the degree correction, which counts each node's own
    draws) the batch's weights equal, edge by edge, those :meth:`sample` computes."""
    ei = random_edges(NU, NI, 400, 6)
    data = as_hetero(ei, NU, NI)

    def sampler():
        gen = torch.Generator().manual_seed(3)
        return BipartiteNeighborSampler(
            data, [3, 2], 0.5, 0.25, degree_correction=correction, generator=gen
        )

    seeds = torch.tensor([1, 4, 7, 30])
    s = sampler()
    loader = NodeLoader(
        data, node_sampler=s, input_nodes=("user", seeds), batch_size=4,
        transform=s.add_edge_weights,
    )  # fmt: skip
    batch = next(iter(loader))
    ref = sampler()
    sub = ref.sample(seeds, torch.empty(0, dtype=torch.long), ref.generator)
    loc = sub.edge_index.as_subclass(torch.Tensor)
    pairs = (sub.user_id[loc[0]] * NI + sub.item_id[loc[1]]).tolist()
    for et, w_ref in ((USER_ITEM, sub.edge_weight), (REV_EDGE, sub.rev_edge_weight)):
        want = {p: w for p, w in zip(pairs, w_ref.tolist()) if w != 0}
        e = batch[et].edge_index
        u, i = (e[0], e[1]) if et == USER_ITEM else (e[1], e[0])
        got = (batch["user"].n_id[u] * NI + batch["item"].n_id[i]).tolist()
        assert len(want) > 0 and dict(zip(got, batch[et].edge_weight.tolist())) == want


def test_pyg_backend_with_one_sided_targets_keeps_later_draws_of_reached_nodes():
    """The docstring said the other side's draws are dropped and the nodes they reached
    stay isolated. From K = 2 on, PyG expands those nodes: the ``targets`` among them draw
    at the next hop and their edges are kept (a larger subgraph), while the seeds'
    embeddings stay exact."""
    if not pyg_sampler_available():
        pytest.skip("needs pyg-lib or torch-sparse")
    ei = sparse_graph()
    users, items = torch.tensor([0, 5, 9]), torch.tensor([3, 8])

    def sub(backend, k, seed_items):
        s = BipartiteNeighborSampler(
            ei, [-1] * k, num_users=NU, num_items=NI, targets=("user",), backend=backend
        )
        return s.sample(users, items if seed_items else items[:0], torch.Generator())

    def owners(s):
        return set(s.user_id[s.edge_index.as_subclass(torch.Tensor)[0]].tolist())

    # K = 1: the seed items' dropped draws leave their users isolated
    one = sub("pyg", 1, True)
    assert owners(one) == set(users.tolist()) < set(one.user_id.tolist())
    assert one.num_edges == sub("torch", 1, True).num_edges
    # K = 2: the seed items' users draw at hop 2, and those edges are kept
    two, two_torch = sub("pyg", 2, True), sub("torch", 2, True)
    assert owners(two) > set(users.tolist()) == owners(two_torch)
    assert two.num_edges > two_torch.num_edges
    # without seed items, K = 3: the users reached through the seed users' items
    assert owners(sub("pyg", 2, False)) == set(users.tolist())
    assert owners(sub("pyg", 3, False)) > set(users.tolist())
    model = GraphCF(NU, NI, 8, num_layers=2, propagate_items=False, edge_index=ei)
    assert_subgraph_is_exact(model, two, users, items)
