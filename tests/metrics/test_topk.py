import pytest
import torch

from pyg_cf.metrics import evaluate_scores
from pyg_cf.metrics.ranking import topk_indices


@pytest.mark.parametrize("n", [50, 640, 1000, 4099])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_blockwise_topk_equals_torch_topk(n, k):
    torch.manual_seed(n + k)
    scores = torch.randn(37, n)
    scores[:, ::7] = float("-inf")  # masked entries
    ours = topk_indices(scores, k, block=16)
    ref = scores.topk(k, dim=1)
    assert torch.equal(scores.gather(1, ours), ref.values)  # same values, same order
    assert torch.equal(ours.sort(1).values, ref.indices.sort(1).values)
    # a non-contiguous view takes the gather path
    wide = torch.randn(37, n + 9)
    view = wide[:, :n]
    assert torch.equal(view.gather(1, topk_indices(view, k, block=16)), view.topk(k, 1).values)


def test_top_entries_concentrated_in_one_block():
    scores = torch.zeros(2, 260)  # 16 blocks of 16 and a ragged tail of 4 (256..259)
    scores[0, 32:40] = torch.arange(8.0) + 1  # all of row 0's top-5 in one block
    scores[1, 255:] = torch.arange(5.0) + 1  # row 1's: four in the tail, one in a block
    top = topk_indices(scores, 5, block=16)
    assert sorted(top[0].tolist()) == [35, 36, 37, 38, 39]
    assert top[1].tolist() == [259, 258, 257, 256, 255]  # by decreasing score


def test_evaluation_does_not_depend_on_the_topk_block():
    torch.manual_seed(0)
    nu, ni = 60, 3000
    scores = torch.randn(nu, ni)
    pos = torch.unique(torch.stack([torch.randint(nu, (900,)), torch.randint(ni, (900,))]), dim=1)
    seen = torch.unique(torch.stack([torch.randint(nu, (900,)), torch.randint(ni, (900,))]), dim=1)
    seen = seen[:, ~torch.isin(seen[0] * ni + seen[1], pos[0] * ni + pos[1])]
    ours = evaluate_scores(lambda u: scores[u].clone(), nu, ni, pos, [seen], ks=(10, 20))
    masked = scores.clone()
    masked[seen[0], seen[1]] = float("-inf")
    top = masked.topk(20, dim=1).indices
    truth = torch.zeros(nu, ni, dtype=torch.bool)
    truth[pos[0], pos[1]] = True
    hits = truth.gather(1, top)
    users = torch.unique(pos[0])
    recall = (hits[users, :20].sum(1) / truth[users].sum(1)).mean()
    assert ours["recall@20"] == pytest.approx(float(recall), abs=1e-6)
