import math
import re

import pytest
import torch

from pyg_cf.errors import ConfigError
from pyg_cf.losses import LossBatch, get_loss
from pyg_cf.losses.margin import (
    CosineContrastiveLoss,
    HingeLoss,
    MultiMarginLoss,
    ccl_loss,
    hinge_loss,
    mml_loss,
)

D = torch.float64


def dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def score(a, b, kind):
    return dot(a, b) if kind == "ip" else dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def make_batch(B=4, M=6, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return LossBatch(
        users=torch.arange(B),
        pos_items=torch.arange(B),
        user_emb=torch.randn(B, d, generator=g, dtype=D),
        pos_emb=torch.randn(B, d, generator=g, dtype=D),
        neg_items=torch.zeros(B, M, dtype=torch.long),
        neg_emb=torch.randn(B, M, d, generator=g, dtype=D),
    )


def relu(x):
    return max(x, 0.0)


def ref_mml(b, margins, weights, w_neg, w_pos, kind):
    out = []
    M = b.neg_emb.size(1)
    for r in range(b.users.numel()):
        sp = score(b.user_emb[r], b.pos_emb[r], kind)
        neg = 0.0
        for m in range(M):
            s = score(b.user_emb[r], b.neg_emb[r, m], kind)
            neg += sum(w * relu(s - mk) for mk, w in zip(margins, weights))
        out.append(w_pos * relu(1 - sp) + w_neg * neg / M)
    return sum(out) / len(out)


def ref_ccl(b, margin, w, kind):
    return ref_mml(b, [margin], [1.0], w, 1.0, kind)


def ref_hinge(b, margin, kind):
    out = []
    M = b.neg_emb.size(1)
    for r in range(b.users.numel()):
        sp = score(b.user_emb[r], b.pos_emb[r], kind)
        vals = [relu(margin + score(b.user_emb[r], b.neg_emb[r, m], kind) - sp) for m in range(M)]
        out.append(sum(vals) / M)
    return sum(out) / len(out)


@pytest.mark.parametrize("name", ["ccl", "mml"])
def test_positive_term_is_clipped_at_one_under_inner_product(name):
    """SimpleX's positive term is relu(1 - s+): an inner product above 1 adds nothing (a
    plain 1 - s+ would keep rewarding ever larger positive scores)."""
    b = make_batch()
    b.pos_emb = b.pos_emb * 10  # inner products well beyond 1 for some rows
    sp = [score(b.user_emb[r], b.pos_emb[r], "ip") for r in range(b.users.numel())]
    assert max(sp) > 1.5 and min(sp) < 1
    if name == "ccl":
        loss = get_loss("ccl", margin=0.4, neg_weight=3.0, num_negatives=6, similarity="ip")
        want = ref_ccl(b, 0.4, 3.0, "ip")
    else:
        kw = dict(margins=(0.1, 0.4), weights=(1.0, 0.5), neg_weight=2.0)
        loss = get_loss("mml", num_negatives=6, similarity="ip", **kw)
        want = ref_mml(b, [0.1, 0.4], [1.0, 0.5], 2.0, 1.0, "ip")
    assert float(loss(b)) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("kind", ["cos", "ip"])
def test_ccl_matches_reference(kind):
    b = make_batch()
    loss = get_loss("ccl", margin=0.1, neg_weight=3.0, num_negatives=6, similarity=kind)
    assert float(loss(b)) == pytest.approx(ref_ccl(b, 0.1, 3.0, kind), rel=1e-10)


@pytest.mark.parametrize("kind", ["cos", "ip"])
def test_mml_matches_reference(kind):
    b = make_batch()
    m, w = [-0.2, 0.0, 0.3], [0.2, 0.3, 0.5]
    loss = get_loss("mml", margins=m, weights=w, neg_weight=7.0, pos_weight=2.0, similarity=kind)
    assert float(loss(b)) == pytest.approx(ref_mml(b, m, w, 7.0, 2.0, kind), rel=1e-10)


def test_mml_margins_are_device_buffers_outside_the_state_dict():
    loss = get_loss("mml", margins=[0.5, 0.9], weights=[0.3, 0.7]).to(D)
    assert loss.margin_values.dtype == D and loss.margin_values.tolist() == [0.5, 0.9]
    assert loss.weight_values.tolist() == pytest.approx([0.3, 0.7])
    assert loss.state_dict() == {}  # checkpoints stay as they were
    b = make_batch()
    assert float(loss(b)) == pytest.approx(ref_mml(b, [0.5, 0.9], [0.3, 0.7], 700, 1, "cos"))


@pytest.mark.parametrize("kind", ["ip", "cos"])
def test_hinge_matches_reference(kind):
    b = make_batch()
    loss = get_loss("hinge", margin=0.5, similarity=kind, num_negatives=6)
    assert float(loss(b)) == pytest.approx(ref_hinge(b, 0.5, kind), rel=1e-10)


@pytest.mark.parametrize("margin", [-0.1, 0.2, 0.9])
def test_mml_with_one_margin_is_ccl(margin):
    b = make_batch(M=9, seed=1)
    mml = get_loss("mml", margins=[margin], weights=[1.0], neg_weight=150.0)
    ccl = get_loss("ccl", margin=margin, neg_weight=150.0)
    assert torch.allclose(mml.per_row(b), ccl.per_row(b), rtol=1e-12, atol=1e-12)


def test_published_defaults_and_validation():
    mml = get_loss("mml")
    assert mml.margins == [0.7, 0.8, 0.9] and mml.weights == [0.10, 0.15, 0.75]
    assert (mml.neg_weight, mml.pos_weight, mml.num_negatives) == (700.0, 1.0, 100)
    ccl = get_loss("ccl")
    assert (ccl.margin, ccl.neg_weight, ccl.num_negatives, ccl.similarity) == (
        0.9,
        150.0,
        800,
        "cos",
    )
    with pytest.raises(ConfigError, match="same length"):
        get_loss("mml", margins=[0.5, 0.6], weights=[1.0])
    with pytest.raises(ConfigError, match="num_negatives"):
        get_loss("ccl", num_negatives=0)
    for cls in (CosineContrastiveLoss, MultiMarginLoss, HingeLoss):
        assert cls.paper and ".. math::" in (cls.__doc__ or "")


@pytest.mark.parametrize(
    "name,kw",
    [
        ("ccl", {"margin": 0.05, "neg_weight": 2.0}),
        ("mml", {"margins": [-0.31, 0.07], "weights": [0.4, 0.6], "neg_weight": 3.0}),
        ("hinge", {"margin": 0.5}),
        ("hinge", {"margin": 0.5, "similarity": "cos"}),
    ],
)
def test_gradcheck(name, kw):
    b = make_batch()
    loss = get_loss(name, **kw)
    leaves = tuple(t.clone().requires_grad_() for t in (b.user_emb, b.pos_emb, b.neg_emb))

    def f(u, p, n):
        return loss(LossBatch(b.users, b.pos_items, u, p, neg_emb=n))

    assert torch.autograd.gradcheck(f, leaves)


@pytest.mark.parametrize("name", ["ccl", "mml", "hinge"])
def test_finite_at_extreme_inner_products(name):
    u = torch.tensor([[100.0, 0.0], [0.0, 100.0]], requires_grad=True)
    p = torch.tensor([[-100.0, 0.0], [0.0, 100.0]], requires_grad=True)
    n = torch.tensor([[[100.0, 0.0]], [[0.0, -100.0]]], requires_grad=True)
    loss = get_loss(name, similarity="ip", num_negatives=1)
    value = loss(LossBatch(torch.arange(2), torch.arange(2), u, p, neg_emb=n))
    assert torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(t.grad).all() for t in (u, p, n))


@pytest.mark.parametrize("name", ["ccl", "mml", "hinge"])
@pytest.mark.parametrize("kind", ["ip", "cos"])
def test_shared_negatives_equal_the_expanded_per_row_form(name, kind):
    b = make_batch(B=5, M=7, d=4, seed=3)
    one = b.neg_emb[:1].clone().requires_grad_(True)
    shared = LossBatch(**{**b.__dict__, "neg_emb": one})
    rows = LossBatch(**{**b.__dict__, "neg_emb": one.expand(5, -1, -1)})
    loss = get_loss(name, similarity=kind, num_negatives=7, shared_negatives=True)
    a, r = loss(shared), loss(rows)
    assert torch.allclose(a, r)
    (ga,) = torch.autograd.grad(a, one)
    (gr,) = torch.autograd.grad(r, one)
    assert torch.allclose(ga, gr)


def test_shared_negatives_cannot_reject_positives():
    with pytest.raises(ConfigError, match="shared_negatives"):
        get_loss("mml", shared_negatives=True, reject_positives=True)


def _old_mml(pos, neg, margins, weights, neg_weight, pos_weight):
    m, w = torch.tensor(margins, dtype=neg.dtype), torch.tensor(weights, dtype=neg.dtype)
    rows = (torch.relu(neg.unsqueeze(-1) - m) * w).sum(-1).mean(-1)
    return pos_weight * torch.relu(1 - pos) + neg_weight * rows


FUNCTIONAL = {
    "ccl": lambda pos, neg, r: ccl_loss(pos, neg, 0.9, 2.0, r),
    "mml": lambda pos, neg, r: mml_loss(pos, neg, (0.7, 0.8), (0.5, 0.5), 3.0, 1.5, r),
    "hinge": lambda pos, neg, r: hinge_loss(pos, neg, 0.5, r),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_one_negative_per_row_as_b_is_that_row_s_not_the_batch_s(name):
    fn = FUNCTIONAL[name]
    pos, neg = torch.tensor([0.95, 0.95, 0.95], dtype=D), torch.tensor([0.0, 0.0, 5.0], dtype=D)
    rows = fn(pos, neg, "none")
    assert torch.equal(rows, fn(pos, neg.unsqueeze(1), "none"))
    assert rows.shape == (3,) and rows[0] == rows[1] < rows[2]


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_negative_shapes_that_mix_rows_are_refused(name):
    fn = FUNCTIONAL[name]
    # a [B, 1] positive with [B] negatives broadcast to [B, B] (hinge) or mixed rows
    message = "shape (3,) does not fit pos_score of shape (3, 1)"
    with pytest.raises(ConfigError, match=re.escape(message)):
        fn(torch.zeros(3, 1), torch.zeros(3), "none")
    with pytest.raises(ConfigError, match=re.escape("shape (4, 2) does not fit")):
        fn(torch.zeros(3), torch.zeros(4, 2), "none")


def test_valid_negative_shapes_give_the_same_values_as_before():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(5, generator=g, dtype=D), torch.randn(5, 4, generator=g, dtype=D)
    for n in (neg, neg[:1]):  # per row, and one set shared by every row
        ccl = torch.relu(1 - pos) + 2.0 * torch.relu(n - 0.9).mean(-1)
        assert torch.equal(FUNCTIONAL["ccl"](pos, n, "none"), ccl)
        mml = _old_mml(pos, n, (0.7, 0.8), (0.5, 0.5), 3.0, 1.5)
        assert torch.equal(FUNCTIONAL["mml"](pos, n, "none"), mml)
        hinge = torch.relu(0.5 + n - pos.unsqueeze(-1)).mean(-1)
        assert torch.equal(FUNCTIONAL["hinge"](pos, n, "none"), hinge)
    hinge_one = torch.relu(0.5 + neg[:, 0] - pos)  # [B] negatives: one per row, as before
    assert torch.equal(FUNCTIONAL["hinge"](pos, neg[:, 0], "none"), hinge_one)


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("ccl", {"neg_weight": -1.0}, "neg_weight must be >= 0 and a finite number, got -1.0"),
        ("ccl", {"neg_weight": math.inf}, "neg_weight must be >= 0 and a finite number, got inf"),
        ("ccl", {"margin": math.nan}, "margin must be a finite number, got nan"),
        ("hinge", {"margin": math.nan}, "margin must be a finite number, got nan"),
        ("hinge", {"margin": -math.inf}, "margin must be a finite number, got -inf"),
        ("mml", {"neg_weight": -5.0}, "neg_weight must be >= 0 and a finite number, got -5.0"),
        ("mml", {"pos_weight": -1.0}, "pos_weight must be >= 0 and a finite number, got -1.0"),
        ("mml", {"pos_weight": math.nan}, "pos_weight must be >= 0 and a finite number, got nan"),
        ("mml", {"margins": [math.nan], "weights": [1.0]}, "margins must be finite, got [nan]"),
        ("mml", {"margins": [0.5], "weights": [math.nan]}, "weights must be >= 0 and finite"),
    ],
)
def test_values_out_of_range_are_refused_by_name(name, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        get_loss(name, **kwargs)


def test_boundary_values_stay_accepted():
    assert get_loss("ccl", neg_weight=0.0, margin=-0.5).margin == -0.5
    mml = get_loss("mml", margins=[0.0], weights=[0.0], neg_weight=0.0, pos_weight=0.0)
    assert (mml.neg_weight, mml.pos_weight) == (0.0, 0.0)
    assert get_loss("hinge", margin=0.0).margin == 0.0
