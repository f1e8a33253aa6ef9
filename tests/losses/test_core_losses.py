import math

import pytest
import torch

from pyg_cf.errors import ConfigError
from pyg_cf.losses import LossBatch, get_loss, list_losses, register_loss
from pyg_cf.losses.base import CFLoss


def test_bpr_hand_computed():
    u = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    n = torch.tensor([[[0.0, 1.0]], [[0.0, 3.0]]])
    b = LossBatch(torch.tensor([0, 1]), torch.tensor([0, 1]), u, p, neg_emb=n)
    # s_ui = 2, 2 ; s_uj = 0, 6
    want = (math.log1p(math.exp(0 - 2)) + math.log1p(math.exp(6 - 2))) / 2
    assert float(get_loss("bpr")(b)) == pytest.approx(want, rel=1e-6)


def test_ssm_in_batch_hand_computed():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = LossBatch(torch.tensor([0, 1]), torch.tensor([0, 1]), u, p)
    tau = 0.5
    c = 1 / math.sqrt(2)
    # cosine logits: row0 [1, c], row1 [0, c]; positive on the diagonal.
    l0 = -1 / tau + math.log(math.exp(1 / tau) + math.exp(c / tau))
    l1 = -c / tau + math.log(math.exp(0) + math.exp(c / tau))
    loss = get_loss("ssm", tau=tau, similarity="cos")
    assert float(loss(b)) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # a collision mask removes row 0's negative
    b.in_batch_collision = torch.tensor([[False, True], [False, False]])
    assert float(loss(b)) == pytest.approx((0.0 + l1) / 2, abs=1e-6)


def test_ssm_extreme_inner_products_stay_finite():
    u = torch.full((4, 3), 1e4)
    p = torch.full((4, 3), -1e4)
    b = LossBatch(torch.arange(4), torch.arange(4), u, p)
    assert torch.isfinite(get_loss("ssm", tau=0.1, similarity="ip")(b))


def test_registry():
    assert {"bpr", "ssm"} <= set(list_losses())
    with pytest.raises(ConfigError, match="registered losses"):
        get_loss("nope")
    with pytest.raises(ConfigError, match="bad arguments"):
        get_loss("ssm", bogus=1)

    @register_loss("test-zero", overwrite=True)
    class Zero(CFLoss):
        negatives = "none"

        def forward(self, batch):
            return batch.user_emb.sum() * 0

    assert isinstance(get_loss("test-zero"), Zero)
    with pytest.raises(ConfigError, match="already registered"):
        register_loss("test-zero")(type("Other", (CFLoss,), {}))


@pytest.mark.parametrize(
    "name, kw",
    [
        ("bpr", {}),
        ("bce", {}),
        ("mse", {}),
        ("ccl", {}),
        ("mml", {}),
        ("hinge", {}),
        ("ssm", {"negatives": "sampled"}),
        ("bsl", {"negatives": "sampled"}),
    ],
)
def test_sampled_losses_without_negatives_raise_a_config_error(name, kw):
    # a ConfigError naming the missing field (not an assert, which `python -O` strips)
    b = LossBatch(torch.arange(2), torch.arange(2), torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ConfigError, match="neg_emb is None"):
        get_loss(name, **kw)(b)
