import numpy as np
import pandas as pd
import pytest
import torch

from pyg_cf.data import degrees
from pyg_cf.data.graph import build_graph
from pyg_cf.data.interactions import IdMap
from pyg_cf.data.synthetic import power_law_bipartite
from pyg_cf.diagnostics import item_groups, long_tail_recall
from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.metrics import evaluate
from pyg_cf.nn import GraphCF


def test_item_groups_hand_checked():
    # sorted degrees 1 1 1 1 4 4 8 (total 20): the prefix closest to 10 is 8 or 12 (a tie:
    # the shorter one), so group 0 = the five least popular items
    deg = torch.tensor([4, 1, 8, 1, 1, 4, 1])
    assert item_groups(deg, 2).tolist() == [0, 0, 1, 0, 0, 1, 0]
    assert item_groups(torch.tensor([5, 5, 5, 5]), 4).tolist() == [0, 1, 2, 3]
    assert item_groups(torch.tensor([0, 0, 10]), 2).tolist() == [0, 0, 1]
    # one giant item leaves a group empty: targets 6.7 and 13.3, nearest prefixes 2 and 20
    assert item_groups(torch.tensor([1, 1, 18]), 3).tolist() == [0, 0, 1]
    assert item_groups(deg, 1).tolist() == [0] * 7


def test_item_groups_equal_mass():
    deg = torch.randint(1, 50, (1000,))
    g = item_groups(deg, 10)
    mass = torch.bincount(g, weights=deg.double(), minlength=10)
    share = mass / mass.sum()
    assert float((share - 0.1).abs().max()) < 0.01
    gs = g[torch.argsort(deg, stable=True)]  # by degree, ties by id
    assert bool((gs[1:] >= gs[:-1]).all())
    with pytest.raises(ConfigError, match="groups"):
        item_groups(deg, 0)
    with pytest.raises(ConfigError, match="negative"):
        item_groups(torch.tensor([1, -1]), 2)


def test_eq22_hand_checked(tiny_data):
    # item_emb = I, so user_emb rows are the scores. Top-1 with train (and val) masked:
    # u0 -> 3 (hit), u1 -> 4 (miss, test is 0), u2 -> 1 (hit), u3 -> 4 (hit)
    users = torch.tensor(
        [[9.0, 9, 9, 1, 0], [0.0, 9, 9, 9, 5], [9.0, 2, 0, 9, 1], [0.0, 0, 9, 9, 3]]
    )
    items = torch.eye(5)
    res = long_tail_recall((users, items), tiny_data, k=1, groups=2)
    # degrees 2 2 2 2 0: groups {4, 0, 1} (mass 4) and {2, 3} (mass 4)
    assert res.item_group.tolist() == [0, 0, 1, 1, 0]
    assert res.table["recall"].tolist() == pytest.approx([0.5, 0.25])
    assert res.recall == pytest.approx(0.75)
    assert res.table["num_items"].tolist() == [3, 2]
    assert res.table["item_share"].tolist() == pytest.approx([0.6, 0.4])
    assert res.table["interactions"].tolist() == [4, 4]
    assert res.table["degree_min"].tolist() == [0, 2]
    assert evaluate(users, items, tiny_data, ks=(1,))["recall@1"] == pytest.approx(0.75)


@pytest.mark.parametrize("similarity", ["ip", "cos"])
@pytest.mark.parametrize("split", ["test", "val"])
def test_eq22_sums_to_metrics_recall(similarity, split):
    data = power_law_bipartite(400, 300, min_user_degree=3, val_ratio=0.1, test_ratio=0.2)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=16)
    u, i = model.embeddings()
    for k, groups in ((20, 10), (5, 3)):
        res = long_tail_recall(model, data, k=k, groups=groups, split=split, similarity=similarity)
        ref = evaluate(u, i, data, split, ks=(k,), similarity=similarity)[f"recall@{k}"]
        assert res.recall > 0
        assert float(res.table["recall"].sum()) == pytest.approx(ref, rel=1e-6, abs=1e-9)
        assert res.table["item_share"].sum() == pytest.approx(1.0)
        _, deg = degrees(data)
        assert res.table["interactions"].sum() == int(deg.sum())


def test_errors(tiny_data):
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    with pytest.raises(ConfigError, match="similarity"):
        long_tail_recall((u, i), tiny_data, similarity="l2")
    with pytest.raises(ConfigError, match="k must"):
        long_tail_recall((u, i), tiny_data, k=6)
    with pytest.raises(ConfigError, match="embeddings are for"):
        long_tail_recall((u, torch.randn(4, 2)), tiny_data)
    with pytest.raises(ConfigError, match="differ in dtype"):
        long_tail_recall((u, i.double()), tiny_data)


def _repeated_test_pair_data():
    train = pd.DataFrame({"user": [0, 1, 1], "item": [0, 1, 2]})
    test = pd.DataFrame({"user": [0], "item": [1]})
    data = build_graph(train, IdMap(np.arange(2), np.arange(4)), test=test)
    # one held-out pair, twice (build_graph keeps it once: such data is built by hand)
    data["user", "rates", "item"].test_edge_index = torch.tensor([[0, 0], [1, 1]])
    return data


def test_a_repeated_held_out_pair_counts_once_as_in_evaluate(caplog):
    # user 0 ranks item 1 first (item 0 is its training item, masked): a hit on |T_0| = 1.
    # Counted twice, |T_0| was 2 and the groups summed to 0.5, not evaluate's 1.0.
    data = _repeated_test_pair_data()
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    i = torch.tensor([[5.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    ref = evaluate(u, i, data, ks=(1,))["recall@1"]
    res = long_tail_recall((u, i), data, k=1, groups=2)
    assert ref == 1.0
    assert res.recall == pytest.approx(ref)
    assert float(res.table["recall"].sum()) == pytest.approx(ref)
    assert "long_tail_recall: positives repeat 1" in caplog.text


def test_nan_scores_are_refused_as_in_evaluate():
    data = _repeated_test_pair_data()
    u = torch.tensor([[float("nan"), 0.0], [0.0, 1.0]])
    i = torch.tensor([[5.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    with pytest.raises(PygCFError, match="NaN for 1 of 1 users"):
        long_tail_recall((u, i), data, k=1, groups=2)


@pytest.mark.parametrize("bad", [5.0, True, 0, 6, "2"])
def test_bad_k_is_a_config_error(tiny_data, bad):
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    with pytest.raises(ConfigError, match="k must be an integer in"):
        long_tail_recall((u, i), tiny_data, k=bad)


def test_numpy_integer_k_and_groups_are_accepted_bools_refused(tiny_data):
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    ref = long_tail_recall((u, i), tiny_data, k=2, groups=2)
    res = long_tail_recall((u, i), tiny_data, k=np.int64(2), groups=np.int64(2))
    assert res.k == 2 and type(res.k) is int
    assert res.recall == ref.recall and res.table.equals(ref.table)
    assert item_groups(torch.tensor([1, 2, 3]), np.int64(2)).tolist() == [0, 0, 1]
    for bad in (True, 2.0, 0):
        with pytest.raises(ConfigError, match="groups must be a positive integer"):
            long_tail_recall((u, i), tiny_data, k=2, groups=bad)
        with pytest.raises(ConfigError, match="groups must be a positive integer"):
            item_groups(torch.tensor([1, 2, 3]), bad)


def test_groups_sum_to_one_at_a_cutoff_of_every_item():
    """At k = #items every held-out item is found: the per-group Recalls sum to exactly 1
    (padding columns of the blocked top-k must not count as hits)."""
    data = power_law_bipartite(60, 40, min_user_degree=3, val_ratio=0.1, test_ratio=0.2, seed=3)
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(60, 4, generator=g), torch.randn(40, 4, generator=g)
    res = long_tail_recall((u, i), data, k=40)
    assert res.recall == pytest.approx(1.0, abs=1e-12)
    assert float(res.table["recall"].sum()) == pytest.approx(1.0, abs=1e-12)


def test_a_masked_positive_is_never_a_hit_in_the_long_tail_groups():
    """As in evaluate: a test pair that is also a validation pair (61) is masked at test
    time and never found, however far the cut-off reaches into the masked (-inf) items."""
    import numpy as np
    import pandas as pd

    ni = 64  # a multiple of the top-K block: no padding columns
    idm = IdMap(users=np.array([10, 11]), items=np.arange(ni))
    tr = pd.DataFrame({"user": [0] * 61 + [1], "item": [*range(61), 0]})
    va = pd.DataFrame({"user": [0], "item": [61]})
    te = pd.DataFrame({"user": [0], "item": [62]})
    data = build_graph(tr, idm, va, te)  # refuses a test pair that is also in validation:
    # such data can still be built by hand, and evaluation must not count the pair found
    data["user", "rates", "item"].test_edge_index = torch.tensor([[0, 0], [61, 62]])
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(2, 4, generator=g), torch.randn(ni, 4, generator=g)
    whole = evaluate(u, i, data, "test", [ni])[f"recall@{ni}"]
    assert whole == pytest.approx(0.5)  # item 62 only: user 0's unmasked items are 62, 63
    lt = long_tail_recall((u, i), data, k=ni, groups=2)
    assert lt.recall == pytest.approx(0.5)
    assert float(lt.table["recall"].sum()) == pytest.approx(0.5)


def test_float64_embeddings_are_ranked_in_float64():
    # scores 1.000000001 and 1.000000002 tie in float32; in float64 the held-out item 1 is
    # first, as evaluate ranks it
    from pyg_cf.data import from_splits

    train = pd.DataFrame({"user": [0, 1], "item": [2, 2]})
    test = pd.DataFrame({"user": [0], "item": [1]})
    data = from_splits(train, None, test, keep_dense=True)
    u = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    i = torch.tensor([[1.0 + 1e-9], [1.0 + 2e-9], [0.0]], dtype=torch.float64)
    res = long_tail_recall((u, i), data, k=1, groups=1)
    assert res.recall == 1.0
    assert res.recall == evaluate(u, i, data, ks=(1,))["recall@1"]


def test_half_embeddings_are_ranked_in_float32(tiny_data):
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(4, 2, generator=g), torch.randn(5, 2, generator=g)
    ref = long_tail_recall((u.half().float(), i.half().float()), tiny_data, k=2, groups=2)
    res = long_tail_recall((u.half(), i.half()), tiny_data, k=2, groups=2)
    assert res.recall == pytest.approx(ref.recall)


def test_item_groups_refuse_fractional_and_all_zero_degrees():
    # 0.5 1.5 2.7 used to be truncated to 0 1 2 silently
    with pytest.raises(ConfigError, match=r"whole numbers .* 3 non-integer entries, e\.g\. 0\.5"):
        item_groups(torch.tensor([0.5, 1.5, 2.7]), 2)
    with pytest.raises(ConfigError, match="whole numbers"):
        item_groups(torch.tensor([1.0, float("nan")]), 2)
    # all zero used to put every item in the most popular group
    for zeros in (torch.zeros(5, dtype=torch.long), torch.zeros(5)):
        with pytest.raises(ConfigError, match="item_degree is all zero"):
            item_groups(zeros, 3)
    with pytest.raises(ConfigError, match=r"1-D tensor, got \(2, 3\)"):
        item_groups(torch.ones(2, 3, dtype=torch.long), 2)
    # whole numbers stored as floats are degrees like any other
    deg = torch.tensor([4, 1, 8, 1, 1, 4, 1])
    assert torch.equal(item_groups(deg.double(), 2), item_groups(deg, 2))


def test_inf_scores_are_refused_as_in_evaluate(tiny_data):
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    u[0] = torch.tensor([float("inf"), 0.0])
    i[:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.raises(PygCFError, match=r"\+inf for 1 of 4 users"):
        long_tail_recall((u, i), tiny_data, k=1, groups=2)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -1.0, 0])
def test_bad_memory_budget_is_a_config_error(tiny_data, budget):
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    with pytest.raises(ConfigError, match="memory_budget_mb must be a finite number > 0"):
        long_tail_recall((u, i), tiny_data, k=1, memory_budget_mb=budget)
