import math

import pytest
import torch

from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.metrics import evaluate, evaluate_scores, mask_seen, popularity_baseline


def test_hand_computed_metrics():
    # 2 users, 5 items. User 0: test {1, 3}; user 1: test {4}; user 1 has seen item 0.
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.1], [0.95, 0.1, 0.2, 0.3, 0.4]])
    positives = torch.tensor([[0, 0, 1], [1, 3, 4]])
    seen = torch.tensor([[1], [0]])
    res = evaluate_scores(lambda u: scores[u], 2, 5, positives, [seen], ks=(2,))
    # user 0 top-2 = [0, 1]: 1 hit of 2 -> recall 0.5, ndcg = (1/log2 3) / (1 + 1/log2 3)
    # user 1 top-2 (item 0 masked) = [4, 3]: 1 hit of 1 -> recall 1, ndcg 1
    assert res["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    nd0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert res["ndcg@2"] == pytest.approx((nd0 + 1.0) / 2)
    assert res["precision@2"] == pytest.approx(0.5)
    assert res["hitrate@2"] == pytest.approx(1.0)


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
    pop = popularity_baseline(tiny_data, ks=(1,))
    assert 0 <= pop["recall@1"] <= 1


def test_evaluate_chunking_options_and_unknown_options(tiny_data):
    torch.manual_seed(0)
    u, i = torch.randn(4, 3), torch.randn(5, 3)
    ref = evaluate(u, i, tiny_data, "val", ks=(2,))
    assert evaluate(u, i, tiny_data, "val", ks=(2,), chunk_size=1) == ref
    assert evaluate(u, i, tiny_data, "val", ks=(2,), memory_budget_mb=1e-6) == ref
    with pytest.raises(TypeError, match="per_user"):  # per-user rows: evaluate_scores
        evaluate(u, i, tiny_data, "val", per_user=True)  # type: ignore[call-arg]
