import math
import re

import pytest
import torch
import torch.nn.functional as F

from pyg_cf.errors import ConfigError
from pyg_cf.losses import LossBatch, get_loss
from pyg_cf.losses.pointwise import (
    BinaryCrossEntropyLoss,
    MeanSquaredErrorLoss,
    bce_loss,
    mse_loss,
)

D = torch.float64


def dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def score(a, b, kind):
    return dot(a, b) if kind == "ip" else dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def make_batch(B=4, M=3, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return LossBatch(
        users=torch.arange(B),
        pos_items=torch.arange(B),
        user_emb=torch.randn(B, d, generator=g, dtype=D),
        pos_emb=torch.randn(B, d, generator=g, dtype=D),
        neg_items=torch.zeros(B, M, dtype=torch.long),
        neg_emb=torch.randn(B, M, d, generator=g, dtype=D),
    )


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def ref(b, name, kind, w=1.0, bias=0.0):
    out = []
    for r in range(b.users.numel()):
        sp = score(b.user_emb[r], b.pos_emb[r], kind) + bias
        sn = [score(b.user_emb[r], b.neg_emb[r, m], kind) + bias for m in range(b.neg_emb.size(1))]
        if name == "bce":
            out.append(-math.log(sigmoid(sp)) - sum(math.log(1 - sigmoid(s)) for s in sn))
        else:
            out.append((sp - 1) ** 2 / 2 + w * sum(s * s for s in sn) / 2)
    return sum(out) / len(out)


@pytest.mark.parametrize("kind", ["ip", "cos"])
def test_bce_matches_reference(kind):
    b = make_batch()
    loss = get_loss("bce", similarity=kind, num_negatives=3)
    assert float(loss(b)) == pytest.approx(ref(b, "bce", kind), rel=1e-10)


@pytest.mark.parametrize("bias", [-math.log(3), 0.7])
def test_bce_logit_bias_shifts_every_score(bias):
    b = make_batch()
    loss = get_loss("bce", num_negatives=3, logit_bias=bias)
    assert float(loss(b)) == pytest.approx(ref(b, "bce", "ip", bias=bias), rel=1e-10)
    # at zero scores the bias -log M gives the base-rate loss, below the unbiased 5 log 2
    zero = make_batch()
    zero.user_emb = torch.zeros_like(zero.user_emb)
    want = math.log(4) + 3 * math.log(4 / 3) if bias < 0 else None
    if want is not None:
        assert float(loss(zero)) == pytest.approx(want, rel=1e-10)
        assert float(get_loss("bce", num_negatives=3)(zero)) == pytest.approx(4 * math.log(2))


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_bce_logit_bias_must_be_finite(bad):
    with pytest.raises(Exception, match="logit_bias must be a finite number"):
        get_loss("bce", logit_bias=bad)


def test_bce_learned_bias_is_a_parameter_with_the_analytic_gradient():
    b = make_batch()
    loss = get_loss("bce", num_negatives=3, logit_bias=-0.5, learn_bias=True)
    (param,) = loss.parameters()
    assert float(param) == -0.5 and "learn_bias=True" in repr(loss)
    assert float(loss(b)) == pytest.approx(ref(b, "bce", "ip", bias=-0.5), rel=1e-6)
    loss(b).backward()
    # d/db of the row mean: -(1 - sigma(s+ + b)) + sum_j sigma(s_j + b)
    sp = (b.user_emb * b.pos_emb).sum(-1) - 0.5
    sn = (b.user_emb.unsqueeze(1) * b.neg_emb).sum(-1) - 0.5
    want = (-(1 - torch.sigmoid(sp)) + torch.sigmoid(sn).sum(-1)).mean()
    assert float(param.grad) == pytest.approx(float(want), rel=1e-5)
    # fixed (default): no parameter, nothing for an optimizer to move
    assert list(get_loss("bce", logit_bias=-0.5).parameters()) == []


@pytest.mark.parametrize(
    "bad,msg",
    [
        ({"learn_bias": "yes"}, "learn_bias must be True or False, got 'yes'"),
        ({"logit_bias": "x"}, "logit_bias must be a finite number, got 'x'"),
        ({"logit_bias": math.inf}, "logit_bias must be a finite number, got inf"),
    ],
)
def test_bce_bias_arguments_are_checked(bad, msg):
    # the class's own checks (the registry's type check stands before them in get_loss)
    with pytest.raises(ConfigError, match=re.escape(msg)):
        BinaryCrossEntropyLoss(**bad)
    with pytest.raises(ConfigError):
        get_loss("bce", **bad)


@pytest.mark.parametrize("kind", ["ip", "cos"])
def test_mse_matches_reference(kind):
    b = make_batch()
    assert float(get_loss("mse", similarity=kind)(b)) == pytest.approx(ref(b, "mse", kind))
    loss = get_loss("mse", similarity=kind, neg_weight=0.25)
    assert float(loss(b)) == pytest.approx(ref(b, "mse", kind, 0.25), rel=1e-10)


def test_defaults():
    bce = get_loss("bce")
    assert (bce.negatives, bce.num_negatives, bce.sampler, bce.similarity) == (
        "sampled",
        4,
        "uniform",
        "ip",
    )
    for cls in (BinaryCrossEntropyLoss, MeanSquaredErrorLoss):
        assert cls.paper and ".. math::" in (cls.__doc__ or "")


@pytest.mark.parametrize("name", ["bce", "mse"])
@pytest.mark.parametrize("kind", ["ip", "cos"])
def test_gradcheck(name, kind):
    b = make_batch()
    loss = get_loss(name, similarity=kind)
    leaves = tuple(t.clone().requires_grad_() for t in (b.user_emb, b.pos_emb, b.neg_emb))

    def f(u, p, n):
        return loss(LossBatch(b.users, b.pos_items, u, p, neg_emb=n))

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("name", ["bce", "mse"])
def test_finite_at_extreme_inner_products(name):
    u = torch.tensor([[100.0, 0.0], [0.0, 100.0]], requires_grad=True)
    p = torch.tensor([[-100.0, 0.0], [0.0, 100.0]], requires_grad=True)  # s = -1e4, 1e4
    n = torch.tensor([[[100.0, 0.0]], [[0.0, -100.0]]], requires_grad=True)  # 1e4, -1e4
    value = get_loss(name, num_negatives=1)(
        LossBatch(torch.arange(2), torch.arange(2), u, p, neg_emb=n)
    )
    assert torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(t.grad).all() for t in (u, p, n))


@pytest.mark.parametrize("fn", [bce_loss, mse_loss])
def test_one_negative_per_row_as_b_is_that_row_s_not_the_batch_s(fn):
    # [B] negatives were summed over the batch, and each row got that sum
    pos, neg = torch.tensor([2.0, 2.0, 2.0], dtype=D), torch.tensor([0.0, 0.0, 5.0], dtype=D)
    rows = fn(pos, neg, reduction="none")
    assert torch.equal(rows, fn(pos, neg.unsqueeze(1), reduction="none"))
    assert rows[0] == rows[1] < rows[2]


@pytest.mark.parametrize("fn", [bce_loss, mse_loss])
def test_negative_shapes_that_mix_rows_are_refused(fn):
    with pytest.raises(ConfigError, match=re.escape("neg_score of shape (2,) does not fit")):
        fn(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ConfigError, match=re.escape("pos_score of shape (3, 1)")):
        fn(torch.zeros(3, 1), torch.zeros(3))


@pytest.mark.parametrize("fn", [bce_loss, mse_loss])
def test_valid_negative_shapes_give_the_same_values_as_before(fn):
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(5, generator=g, dtype=D), torch.randn(5, 3, generator=g, dtype=D)
    if fn is bce_loss:
        old = F.softplus(-pos) + F.softplus(neg).sum(-1)
        old_shared = F.softplus(-pos) + F.softplus(neg[:1]).sum(-1)
    else:
        old = 0.5 * (pos - 1).pow(2) + 0.5 * neg.pow(2).sum(-1)
        old_shared = 0.5 * (pos - 1).pow(2) + 0.5 * neg[:1].pow(2).sum(-1)
    assert torch.equal(fn(pos, neg, reduction="none"), old)
    assert torch.equal(fn(pos, neg[:1], reduction="none"), old_shared)  # [1, M]: shared


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_mse_neg_weight_must_be_finite_and_not_negative(bad):
    message = f"neg_weight must be >= 0 and a finite number, got {bad}"
    with pytest.raises(ConfigError, match=message):
        get_loss("mse", neg_weight=bad)
    assert get_loss("mse", neg_weight=0.0).neg_weight == 0.0
