import math
import re

import pytest
import torch
import torch.nn.functional as F

from pyg_cf.errors import ConfigError
from pyg_cf.losses import LossBatch, bpr_loss, get_loss

D = torch.float64


def _score(a, b, kind):
    s = float(a @ b)
    return s if kind == "ip" else s / float(a.norm() * b.norm())


@pytest.mark.parametrize("kind", ["ip", "cos"])
def test_bpr_matches_reference_with_several_negatives(kind):
    g = torch.Generator().manual_seed(0)
    u, p = torch.randn(3, 4, generator=g, dtype=D), torch.randn(3, 4, generator=g, dtype=D)
    n = torch.randn(3, 5, 4, generator=g, dtype=D)
    want = 0.0
    for r in range(3):
        sp = _score(u[r], p[r], kind)
        want += sum(math.log1p(math.exp(_score(u[r], n[r, m], kind) - sp)) for m in range(5)) / 5
    b = LossBatch(torch.arange(3), torch.arange(3), u, p, neg_emb=n)
    loss = get_loss("bpr", num_negatives=5, similarity=kind)
    assert float(loss(b)) == pytest.approx(want / 3, rel=1e-10)
    leaves = (u.clone().requires_grad_(), p.clone().requires_grad_(), n.clone().requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, bb, c: loss(LossBatch(b.users, b.pos_items, a, bb, neg_emb=c)), leaves
    )


def test_bpr_sampling_options():
    loss = get_loss("bpr", sampler="popularity", pop_beta=0.75, reject_positives=True)
    assert (loss.sampler, loss.pop_beta, loss.reject_positives) == ("popularity", 0.75, True)
    # and the trainer draws by them: degree^0.75 log-probabilities, no training positive
    from pyg_cf.data import degrees, train_edges
    from pyg_cf.data.synthetic import power_law_bipartite
    from pyg_cf.nn import GraphCF
    from pyg_cf.train import TrainConfig, Trainer

    data = power_law_bipartite(60, 40, min_user_degree=3, seed=2)
    cfg = TrainConfig(epochs=1, batch_size=256, progress=False)
    tr = Trainer(GraphCF.from_data(data, "mf", embedding_dim=4), data, loss, cfg)
    cb = tr.collate(next(iter(tr.batches())))
    deg = degrees(data)[1].double()
    law = deg**0.75 / (deg**0.75).sum()
    assert torch.allclose(cb.neg_log_prob.double(), law.log()[cb.neg_items], atol=1e-6)
    train = set(map(tuple, train_edges(data).t().tolist()))
    pairs = zip(cb.users.tolist(), cb.neg_items.view(cb.users.numel(), -1)[:, 0].tolist())
    assert not any(p in train for p in pairs)


def test_bpr_loss_refuses_negatives_that_would_broadcast_across_rows():
    # a [B, 1] positive with [B] negatives became a [B, B] loss matrix, silently
    with pytest.raises(ConfigError, match=re.escape("(3,) does not fit pos_score of shape (3, 1)")):
        bpr_loss(torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(ConfigError, match=re.escape("(2, 5) does not fit")):
        bpr_loss(torch.zeros(3), torch.zeros(2, 5))


def test_bpr_loss_keeps_its_values_on_valid_shapes():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(6, generator=g, dtype=D), torch.randn(6, 4, generator=g, dtype=D)
    assert torch.equal(bpr_loss(pos, neg[:, 0]), F.softplus(neg[:, 0] - pos).mean())
    assert torch.equal(bpr_loss(pos, neg), F.softplus(neg - pos.unsqueeze(-1)).mean())
    assert torch.equal(bpr_loss(pos, neg[:1]), F.softplus(neg[:1] - pos.unsqueeze(-1)).mean())
