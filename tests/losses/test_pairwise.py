import math

import pytest
import torch

from pyg_cf.losses import LossBatch, get_loss

D = torch.float64


def test_bpr_matches_reference_with_several_negatives():
    g = torch.Generator().manual_seed(0)
    u, p = torch.randn(3, 4, generator=g, dtype=D), torch.randn(3, 4, generator=g, dtype=D)
    n = torch.randn(3, 5, 4, generator=g, dtype=D)
    want = 0.0
    for r in range(3):
        sp = float(u[r] @ p[r])
        want += sum(math.log1p(math.exp(float(u[r] @ n[r, m]) - sp)) for m in range(5)) / 5
    b = LossBatch(torch.arange(3), torch.arange(3), u, p, neg_emb=n)
    loss = get_loss("bpr", num_negatives=5)
    assert float(loss(b)) == pytest.approx(want / 3, rel=1e-10)
    leaves = (u.clone().requires_grad_(), p.clone().requires_grad_(), n.clone().requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, bb, c: loss(LossBatch(b.users, b.pos_items, a, bb, neg_emb=c)), leaves
    )


def test_bpr_sampling_options():
    loss = get_loss("bpr", sampler="popularity", pop_beta=0.75, reject_positives=True)
    assert (loss.sampler, loss.pop_beta, loss.reject_positives) == ("popularity", 0.75, True)
