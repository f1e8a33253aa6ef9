import math

import pandas as pd
import pytest
import torch

from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.metrics import (
    evaluate,
    evaluate_scores,
    mask_seen,
    popularity_baseline,
    ranking_metrics_from_hits,
)
from pyg_cf.metrics.ranking import positive_index


def test_hand_computed_metrics():
    # 2 users, 5 items. User 0: test {1, 3}; user 1: test {4}; user 1 has seen item 0.
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.1], [0.95, 0.1, 0.2, 0.3, 0.4]])
    positives = torch.tensor([[0, 0, 1], [1, 3, 4]])
    seen = torch.tensor([[1], [0]])
    res = evaluate_scores(lambda u: scores[u], 2, 5, positives, [seen], ks=(1, 2))
    # user 0 top-2 = [0, 1]: 1 hit of 2 -> recall 0.5, ndcg = (1/log2 3) / (1 + 1/log2 3)
    # user 1 top-2 (item 0 masked) = [4, 3]: 1 hit of 1 -> recall 1, ndcg 1
    assert res["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    nd0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert res["ndcg@2"] == pytest.approx((nd0 + 1.0) / 2)
    assert res["precision@2"] == pytest.approx(0.5)
    assert res["hitrate@2"] == pytest.approx(1.0)
    # a cut-off below the largest: user 0's top-1 [0] misses, user 1's [4] hits — every
    # metric at 1 is 0.5 (each counts only its own k columns)
    for m in ("recall", "precision", "hitrate", "ndcg"):
        assert res[f"{m}@1"] == pytest.approx(0.5), m


def test_users_without_positives_are_not_averaged():
    scores = torch.rand(3, 4)
    positives = torch.tensor([[2], [0]])
    res, per = evaluate_scores(lambda u: scores[u], 3, 4, positives, ks=(4,), per_user=True)
    assert per["users"].tolist() == [2]
    assert res["recall@4"] == 1.0


def test_chunking_does_not_change_results():
    torch.manual_seed(0)
    scores = torch.randn(50, 30)
    pos = torch.stack([torch.randint(50, (200,)), torch.randint(30, (200,))])
    pos = torch.unique(pos, dim=1)
    a = evaluate_scores(lambda u: scores[u], 50, 30, pos, ks=(5, 10), chunk_size=7)
    b = evaluate_scores(lambda u: scores[u], 50, 30, pos, ks=(5, 10), chunk_size=1000)
    assert a == pytest.approx(b)


def test_against_torch_geometric_link_pred_metrics():
    tgm = pytest.importorskip("torch_geometric.metrics")
    torch.manual_seed(1)
    nu, ni, k = 40, 25, 10
    scores = torch.randn(nu, ni)
    pos = torch.unique(torch.stack([torch.randint(nu, (150,)), torch.randint(ni, (150,))]), dim=1)
    ours = evaluate_scores(lambda u: scores[u], nu, ni, pos, ks=(k,))
    users = torch.unique(pos[0])
    top = scores[users].topk(k, dim=1).indices
    remap = torch.full((nu,), -1, dtype=torch.long)
    remap[users] = torch.arange(users.numel())
    gt = torch.stack([remap[pos[0]], pos[1]])
    for name, cls in (
        ("recall", "LinkPredRecall"),
        ("precision", "LinkPredPrecision"),
        ("ndcg", "LinkPredNDCG"),
    ):
        m = getattr(tgm, cls)(k)
        m.update(top, gt)
        assert float(m.compute()) == pytest.approx(ours[f"{name}@{k}"], abs=1e-5), name


def test_mask_seen_in_place():
    s = torch.zeros(2, 4)
    idx = UserItemIndex(torch.tensor([[0, 1, 1], [2, 0, 3]]), 2, 4)
    mask_seen(s, torch.tensor([1, 0]), idx)
    assert torch.isinf(s[0, 0]) and torch.isinf(s[0, 3]) and torch.isinf(s[1, 2])
    assert int(torch.isinf(s).sum()) == 3


def test_evaluate_masks_train_and_val_at_test_time(tiny_data):
    u = torch.randn(4, 3)
    i = torch.randn(5, 3)
    res = evaluate(u, i, tiny_data, "test", ks=(5,))
    # With k = number of items, every unseen test item is found.
    assert res["recall@5"] == pytest.approx(1.0)
    # item_emb = I: user rows are the scores. Top-1 with train and val masked: u0 -> 3
    # (hit), u1 -> 4 (miss, its test item is 0), u2 -> 1 (hit), u3 -> 4 (hit); without the
    # val mask u0 -> 2 and u2 -> 3, their val items (misses)
    users = torch.tensor(
        [[9.0, 9, 9, 1, 0], [0.0, 9, 9, 9, 5], [9.0, 2, 0, 9, 1], [0.0, 0, 9, 9, 3]]
    )
    items = torch.eye(5)
    assert evaluate(users, items, tiny_data, ks=(1,))["recall@1"] == pytest.approx(0.75)
    unmasked = evaluate(users, items, tiny_data, ks=(1,), mask_val_at_test=False)
    assert unmasked["recall@1"] == pytest.approx(0.25)


def test_popularity_baseline_ranks_by_training_degree():
    from pyg_cf.data import from_splits

    # training degrees: item 2: 4, item 4: 3, item 0: 2, item 3: 1, item 1: 0 (not index order)
    train = pd.DataFrame(
        {"user": [0, 1, 1, 2, 2, 2, 3, 3, 3, 3], "item": [2, 2, 4, 2, 4, 0, 2, 4, 0, 3]}
    )
    test = pd.DataFrame({"user": [0, 1, 2, 3], "item": [4, 3, 3, 1]})
    data = from_splits(train, None, test, keep_dense=True)
    # most popular unseen item: u0 -> 4 (hit), u1 -> 0 (miss), u2 -> 3 (hit), u3 -> 1 (hit)
    pop = popularity_baseline(data, ks=(1,))
    assert pop["recall@1"] == pytest.approx(0.75)


def test_evaluate_chunking_options_and_unknown_options(tiny_data):
    torch.manual_seed(0)
    u, i = torch.randn(4, 3), torch.randn(5, 3)
    ref = evaluate(u, i, tiny_data, "val", ks=(2,))
    assert evaluate(u, i, tiny_data, "val", ks=(2,), chunk_size=1) == ref
    assert evaluate(u, i, tiny_data, "val", ks=(2,), memory_budget_mb=1e-6) == ref
    with pytest.raises(TypeError, match="per_user"):  # per-user rows: evaluate_scores
        evaluate(u, i, tiny_data, "val", per_user=True)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "u,i,match",
    [
        (torch.randn(4, 3), torch.randn(5, 2), "differ in width: 3 vs 2"),
        (torch.randn(4, 3).long(), torch.randn(5, 3).long(), "user_emb must be a 2-D floating"),
        (torch.randn(4), torch.randn(5, 3), r"user_emb .* shape \(4,\)"),
        (torch.randn(4, 3), [[0.0] * 3] * 5, "item_emb .* got list"),
        (torch.randn(3, 3), torch.randn(5, 3), "embeddings are for 3 users / 5 items"),
        # two float dtypes used to reach torch.mm: "expected m1 and m2 to have the same dtype"
        (torch.randn(4, 3), torch.randn(5, 3).double(), "differ in dtype: .*float32 vs .*float64"),
    ],
)
def test_evaluate_names_embeddings_of_the_wrong_shape_or_kind(tiny_data, u, i, match):
    with pytest.raises(ConfigError, match=match):
        evaluate(u, i, tiny_data, "test")


def _const_scores(users, n=5):
    return torch.arange(n, 0, -1, dtype=torch.float).expand(users.numel(), n).clone()


def test_out_of_range_ids_are_refused_not_read_as_another_users_pair():
    # (user 0, item 7) with 5 items has the key of (user 1, item 2): it must not be counted
    # as user 1's positive; every bad id is refused with the argument named
    with pytest.raises(ConfigError, match="positives ids out of range"):
        evaluate_scores(_const_scores, 2, 5, torch.tensor([[0, 1], [7, 1]]), ks=(2,))
    with pytest.raises(ConfigError, match="positives ids out of range"):
        evaluate_scores(_const_scores, 2, 5, torch.tensor([[2], [1]]), ks=(2,))
    with pytest.raises(ConfigError, match="positives ids out of range"):
        evaluate_scores(_const_scores, 2, 5, torch.tensor([[-1], [1]]), ks=(2,))
    with pytest.raises(ConfigError, match="seen ids out of range"):
        evaluate_scores(
            _const_scores, 2, 5, torch.tensor([[0], [1]]), [torch.tensor([[1], [5]])], (2,)
        )
    with pytest.raises(ConfigError, match=r"\[2, E\]"):
        evaluate_scores(_const_scores, 2, 5, torch.tensor([0, 1]), ks=(2,))
    with pytest.raises(ConfigError, match="integer ids"):
        evaluate_scores(_const_scores, 2, 5, torch.tensor([[0.0], [1.0]]), ks=(2,))


def test_repeated_positives_count_once_and_no_positives_are_refused(caplog):
    # a repeated pair used to make |T_u| = 2 for one item: recall@1 0.5, not 1
    res = evaluate_scores(_const_scores, 2, 5, torch.tensor([[0, 0, 1], [0, 0, 1]]), ks=(1,))
    assert res["recall@1"] == 0.5 and res["ndcg@1"] == 0.5  # user 0: 1.0, user 1: 0.0
    assert "repeat 1" in caplog.text
    with pytest.raises(ConfigError, match="empty"):
        evaluate_scores(_const_scores, 1, 5, torch.empty(2, 0, dtype=torch.long), ks=(1,))


def test_repeated_positives_are_checked_and_logged_once_per_source_and_caller(caplog):
    """An evaluation every few epochs on the same held-out pairs: the repeats are found
    once (cached with the pairs' index) and logged once per caller, with the same metrics."""
    pairs = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    first = evaluate_scores(_const_scores, 2, 5, pairs, ks=(1,))
    again = evaluate_scores(_const_scores, 2, 5, pairs, ks=(1,))
    assert first == again and first["recall@1"] == 0.5
    assert caplog.text.count("positives repeat 2") == 1
    idx = positive_index(pairs, 2, 5, "another caller")
    assert idx.keys.numel() == 2  # each pair once
    assert caplog.text.count("another caller: positives repeat 2") == 1
    pairs[1, 3] = 2  # edited in place: a new index, checked again (one repeat left)
    assert positive_index(pairs, 2, 5, "another caller").keys.numel() == 3
    assert "another caller: positives repeat 1" in caplog.text


@pytest.mark.parametrize("ks", [(), (0,), (6,), (2.0,), (True,)])
def test_bad_cutoffs_are_refused(ks):
    with pytest.raises(ConfigError, match="ks must be"):
        evaluate_scores(_const_scores, 1, 5, torch.tensor([[0], [0]]), ks=ks)


@pytest.mark.parametrize("chunk", [0, -3, 2.5])
def test_bad_chunk_sizes_are_refused(chunk):
    # a negative chunk size used to evaluate no user at all and return {}
    with pytest.raises(ConfigError, match="chunk_size"):
        evaluate_scores(_const_scores, 1, 5, torch.tensor([[0], [0]]), ks=(1,), chunk_size=chunk)


def test_metrics_from_hits_refuse_cutoffs_beyond_the_hit_matrix():
    hits = torch.tensor([[1, 0, 1]])
    assert ranking_metrics_from_hits(hits, torch.tensor([2]), (3,))["recall@3"] == 1.0
    with pytest.raises(ConfigError, match="ks must be"):
        ranking_metrics_from_hits(hits, torch.tensor([5]), (5,))


def test_mask_seen_with_no_users():
    out = mask_seen(torch.zeros(0, 4), torch.empty(0, dtype=torch.long), torch.tensor([[0], [1]]))
    assert out.shape == (0, 4)


@pytest.mark.parametrize("num_items", [30, 1000])  # plain topk, and the blocked path
def test_nan_scores_are_refused_not_ranked_first(num_items):
    # topk ranks NaN first: a diverged user would "hit" whatever its NaN columns are
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, num_items, generator=g)
    scores[2, 7] = float("nan")
    positives = torch.tensor([[0, 1, 2, 3], [1, 2, 7, 4]])
    with pytest.raises(PygCFError, match="NaN for 1 of 4 users"):
        evaluate_scores(lambda u: scores[u], 4, num_items, positives, [], ks=(5,))
    scores[2, 7] = 0.0
    evaluate_scores(lambda u: scores[u], 4, num_items, positives, [], ks=(5,))


def test_a_cutoff_at_the_item_count_finds_every_held_out_item():
    """At K = #items every unseen item is ranked: Recall@K is exactly 1. The top-K runs over
    padded blocks; a padding column (id >= #items) must never count as a hit (it aliased
    another user's positive: Recall 1.078)."""
    from pyg_cf.data.synthetic import power_law_bipartite

    data = power_law_bipartite(60, 40, min_user_degree=3, val_ratio=0.1, test_ratio=0.2, seed=3)
    g = torch.Generator().manual_seed(0)
    u, i = torch.randn(60, 4, generator=g), torch.randn(40, 4, generator=g)
    res = evaluate(u, i, data, ks=(40,))
    assert res["recall@40"] == pytest.approx(1.0, abs=1e-12)
    assert 0 < res["ndcg@40"] <= 1.0


@pytest.mark.parametrize(("k", "ndcg"), [(1, 1.0), (4, 1 / (1 + 1 / math.log2(3)))])
def test_a_masked_positive_is_never_a_hit_even_when_k_exceeds_the_unmasked_items(k, ndcg):
    """A test pair that is also a validation pair is masked at test time: with more
    cut-off places than unmasked items the masked (-inf) items fill the list, and that
    positive must not count as found. Item 2 has the top score but is masked."""
    pos = torch.tensor([[0, 0], [2, 3]])
    seen = [torch.tensor([[0, 0], [0, 1]]), torch.tensor([[0], [2]])]
    scores = torch.tensor([[0.1, 0.2, 5.0, 0.3]])
    out = evaluate_scores(lambda u: scores[u].clone(), 1, 4, pos, seen, [k])
    assert out[f"recall@{k}"] == pytest.approx(0.5)  # item 3, the one unmasked positive
    assert out[f"ndcg@{k}"] == pytest.approx(ndcg)  # a hit at rank 1 of min(k, 2) ideal
    assert out[f"precision@{k}"] == pytest.approx(1 / k)


def test_evaluate_scores_never_writes_into_the_callers_scores():
    """The masking works in place: a score_fn returning a view of the caller's matrix must
    not get -inf written into it (a later evaluation would read the mask as scores)."""
    held = torch.tensor([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0]])
    before = held.clone()
    pos = torch.tensor([[0, 1], [2, 2]])
    seen = [torch.tensor([[0, 1], [0, 1]])]
    out = evaluate_scores(lambda u: held[u.min() : u.max() + 1], 2, 3, pos, seen, [1])
    assert out["recall@1"] == pytest.approx(1.0)
    assert torch.equal(held, before)


def test_evaluate_reuses_the_device_copies_of_the_pair_indexes(tiny_data, monkeypatch):
    """With the data on one device and the ranking on another, the training, validation
    and test pairs are copied and sorted once, not at every evaluation. The copy to another
    device is simulated: ``Tensor.to(device)`` returns a new tensor, as a CPU -> GPU copy
    does (the old code re-copied and rebuilt the three indexes at every call)."""
    from pyg_cf.data.graph import train_edges

    built = [0]
    init = UserItemIndex.__init__

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built[0] += 1
        init(self, *args, **kwargs)

    to = torch.Tensor.to

    def copying_to(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = to(self, *args, **kwargs)
        return out.clone() if out is self and (args or "device" in kwargs) else out

    monkeypatch.setattr(UserItemIndex, "__init__", counting)
    monkeypatch.setattr(torch.Tensor, "to", copying_to)
    u, i = torch.randn(4, 3), torch.randn(5, 3)
    first = evaluate(u, i, tiny_data, "test", ks=(2,))
    assert 0 < built[0] <= 3  # train, val (masked), test (some may be cached already)
    built[0] = 0
    assert evaluate(u, i, tiny_data, "test", ks=(2,)) == first
    assert built[0] == 0
    # an in-place edit of the training pairs invalidates their index (only theirs)
    train = train_edges(tiny_data)
    train[1, 0] = train[1, 0]
    evaluate(u, i, tiny_data, "test", ks=(2,))
    assert built[0] == 1


def test_evaluate_names_a_bad_similarity_an_empty_split_and_a_scorer_of_the_wrong_shape(
    tiny_data,
):
    from pyg_cf.data import from_splits

    nu, ni = tiny_data["user"].num_nodes, tiny_data["item"].num_nodes
    u, i = torch.randn(nu, 4), torch.randn(ni, 4)
    with pytest.raises(ConfigError, match="similarity must be 'ip' or 'cos', got 'dot'"):
        evaluate(u, i, tiny_data, "test", similarity="dot")
    frame = pd.DataFrame({"user": [0, 0, 1], "item": [0, 1, 1]})
    no_val = from_splits(frame, test=frame.iloc[:1], keep_dense=True)
    with pytest.raises(ConfigError, match="data has no val positives"):
        evaluate(torch.randn(2, 4), torch.randn(2, 4), no_val, "val")
    pos = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ConfigError, match=r"score_fn returned shape \(2, 6\), expected \(2, 5\)"):
        evaluate_scores(lambda users: torch.zeros(users.numel(), ni + 1), nu, ni, pos, ks=(2,))


def _near_tie_data():
    """One user, three items: item 2 trained on (masked), item 1 held out."""
    from pyg_cf.data import from_splits

    train = pd.DataFrame({"user": [0, 1], "item": [2, 2]})
    test = pd.DataFrame({"user": [0], "item": [1]})
    return from_splits(train, None, test, keep_dense=True)


def test_float64_scores_are_ranked_in_float64():
    # scores 1.000000001 and 1.000000002 are one float32 value: cast, they tied and item 0
    # could take the top spot; ranked in float64, item 1 (the held-out one) is first
    data = _near_tie_data()
    u = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    i = torch.tensor([[1.0 + 1e-9], [1.0 + 2e-9], [0.0]], dtype=torch.float64)
    assert evaluate(u, i, data, ks=(1,))["recall@1"] == 1.0
    scores = (u @ i.T)[:1]
    res = evaluate_scores(lambda users: scores[users], 1, 3, torch.tensor([[0], [1]]), ks=1)
    assert res["recall@1"] == 1.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, torch.int32])
def test_other_score_dtypes_are_ranked_in_float32(dtype):
    scores = torch.tensor([[1, 5, 3, 2]], dtype=dtype)
    seen = [torch.tensor([[0], [1]])]  # masked with -inf: needs a floating-point copy
    res = evaluate_scores(lambda u: scores[u], 1, 4, torch.tensor([[0], [2]]), seen, ks=(1,))
    assert res["recall@1"] == 1.0
    assert scores.tolist() == [[1, 5, 3, 2]]  # the caller's scores are left alone


def test_a_single_cutoff_and_a_numpy_array_of_cutoffs_are_accepted():
    import numpy as np

    pos = torch.tensor([[0], [1]])
    ref = evaluate_scores(_const_scores, 1, 5, pos, ks=(2,))
    assert evaluate_scores(_const_scores, 1, 5, pos, ks=2) == ref
    assert evaluate_scores(_const_scores, 1, 5, pos, ks=np.int64(2)) == ref
    both = evaluate_scores(_const_scores, 1, 5, pos, ks=np.array([1, 2]))
    assert both == evaluate_scores(_const_scores, 1, 5, pos, ks=(1, 2))
    hits = torch.tensor([[0, 1]])
    assert ranking_metrics_from_hits(hits, torch.tensor([1]), 2)["recall@2"] == 1.0


@pytest.mark.parametrize("ks", [None, 2.0, "20", "", [[1, 2]], [2.5], True, torch.tensor([2])])
def test_junk_cutoffs_are_a_config_error(ks):
    with pytest.raises(ConfigError, match="ks must be positive integers"):
        evaluate_scores(_const_scores, 1, 5, torch.tensor([[0], [0]]), ks=ks)


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -5, 0, True, "big"])
def test_bad_memory_budgets_are_refused(tiny_data, budget):
    # nan and inf used to fail in int(); a negative budget ran one user per chunk
    pos = torch.tensor([[0], [0]])
    with pytest.raises(ConfigError, match="memory_budget_mb must be a finite number > 0"):
        evaluate_scores(_const_scores, 1, 5, pos, ks=(1,), memory_budget_mb=budget)
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    for chunk in (None, 2):  # refused even where a chunk size makes it unused
        with pytest.raises(ConfigError, match="memory_budget_mb must be a finite number > 0"):
            evaluate(u, i, tiny_data, chunk_size=chunk, memory_budget_mb=budget)


def test_a_bare_seen_tensor_is_named_as_such():
    seen = torch.tensor([[0, 0], [1, 2]])
    with pytest.raises(ConfigError, match=r"seen must be a list of \[2, E\] tensors.*\(2, 2\)"):
        evaluate_scores(_const_scores, 1, 5, torch.tensor([[0], [3]]), seen, ks=(1,))
    res = evaluate_scores(_const_scores, 1, 5, torch.tensor([[0], [3]]), [seen], ks=(2,))
    assert res["recall@2"] == 1.0  # items 0 and 1 masked: 2 and 3 are recommended


@pytest.mark.parametrize("num_items", [30, 1000])  # plain topk, and the blocked path
def test_inf_scores_are_refused_like_nan_scores(num_items):
    # every +inf item ties for the top: which of them is recommended is arbitrary
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, num_items, generator=g)
    scores[1, [3, 9]] = float("inf")
    positives = torch.tensor([[0, 1, 2, 3], [1, 2, 7, 4]])
    with pytest.raises(PygCFError, match=r"\+inf for 1 of 4 users"):
        evaluate_scores(lambda u: scores[u], 4, num_items, positives, [], ks=(5,))
    # a +inf score that is masked (a seen item) is never ranked: no error
    seen = [torch.tensor([[1, 1], [3, 9]])]
    evaluate_scores(lambda u: scores[u], 4, num_items, positives, seen, ks=(5,))
    # NaN is reported first when a run has both
    scores[2, 0] = float("nan")
    with pytest.raises(PygCFError, match="NaN for 1 of 4 users"):
        evaluate_scores(lambda u: scores[u], 4, num_items, positives, [], ks=(5,))


def test_inf_embeddings_are_refused_by_evaluate(tiny_data):
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    u[0] = torch.tensor([float("inf"), 0.0])  # +inf against items with a positive first entry
    i[:, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    with pytest.raises(PygCFError, match=r"\+inf for 1 of 4 users"):
        evaluate(u, i, tiny_data, ks=(1,))
