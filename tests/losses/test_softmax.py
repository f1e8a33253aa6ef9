import math
import re
from dataclasses import replace

import pytest
import torch

from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError
from pyg_cf.losses import (
    BSLLoss,
    LossBatch,
    SampledSoftmaxLoss,
    SoftmaxLoss,
    bpr_loss,
    get_loss,
    sampled_softmax_loss,
    softmax_loss,
)

D = torch.float64


def dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def score(a, b, kind):
    if kind == "ip":
        return dot(a, b)
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def lse(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def make_batch(B=4, M=5, d=3, seed=0, users=None, num_items=7):
    g = torch.Generator().manual_seed(seed)
    items = torch.randn(num_items, d, generator=g, dtype=D)
    pos = torch.randint(num_items, (B,), generator=g)
    neg = torch.randint(num_items, (B, M), generator=g)
    u = torch.randn(B, d, generator=g, dtype=D)
    users = torch.arange(B) if users is None else torch.as_tensor(users)
    return LossBatch(
        users=users,
        pos_items=pos,
        user_emb=u,
        pos_emb=items[pos],
        neg_items=neg,
        neg_emb=items[neg],
        all_item_emb=items,
    )


# -- unvectorised references ---------------------------------------------------------------
def ref_ssm_sampled(b, tau, include_positive, kind, log_q=None, tau_pos=None, tau_neg=None):
    out = []
    for r in range(b.users.numel()):
        tp = tau if tau_pos is None else tau_pos[r]
        tn = tau if tau_neg is None else tau_neg[r]
        s_pos = score(b.user_emb[r], b.pos_emb[r], kind)
        terms = [s_pos / tp] if include_positive else []
        for m in range(b.neg_emb.size(1)):
            q = 0.0 if log_q is None else float(log_q[r, m])
            terms.append(score(b.user_emb[r], b.neg_emb[r, m], kind) / tn - q)
        out.append(-s_pos / tp + lse(terms))
    return sum(out) / len(out)


def ref_ssm_in_batch(b, tau, include_positive, kind, collision=None):
    out = []
    B = b.users.numel()
    for r in range(B):
        s_pos = score(b.user_emb[r], b.pos_emb[r], kind)
        terms = [s_pos / tau] if include_positive else []
        for c in range(B):
            if c == r or (collision is not None and bool(collision[r, c])):
                continue
            terms.append(score(b.user_emb[r], b.pos_emb[c], kind) / tau)
        out.append(-s_pos / tau + lse(terms))
    return sum(out) / len(out)


def ref_softmax(b, tau, kind, positives=None, tau_neg=None, reduce=True):
    """``tau_neg`` (per row): the other items' temperature; the row's own positive keeps
    ``tau`` in the numerator and the denominator."""
    out = []
    for r in range(b.users.numel()):
        tn = tau if tau_neg is None else tau_neg[r]
        s_pos = score(b.user_emb[r], b.pos_emb[r], kind)
        terms = [s_pos / tau]
        for j in range(b.all_item_emb.size(0)):
            if j == int(b.pos_items[r]):
                continue
            if positives is not None and (int(b.users[r]), j) in positives:
                continue
            terms.append(score(b.user_emb[r], b.all_item_emb[j], kind) / tn)
        out.append(-s_pos / tau + lse(terms))
    return sum(out) / len(out) if reduce else out


def ref_bsl(b, tau1, tau2, form, kind):
    out = []
    B = b.users.numel()
    for r in range(B):
        if form == "reweight":
            pos_term = score(b.user_emb[r], b.pos_emb[r], kind) / tau1
        else:
            same = [c for c in range(B) if int(b.users[c]) == int(b.users[r])]
            vals = [score(b.user_emb[r], b.pos_emb[c], kind) / tau1 for c in same]
            pos_term = lse(vals) - math.log(len(vals))
        negs = [
            score(b.user_emb[r], b.neg_emb[r, m], kind) / tau1 for m in range(b.neg_emb.size(1))
        ]
        out.append(-pos_term + tau2 * lse(negs))
    return sum(out) / len(out)


# -- against the references ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ip", "cos"])
@pytest.mark.parametrize("include_positive", [True, False])
def test_ssm_sampled_matches_reference(kind, include_positive):
    b = make_batch()
    loss = get_loss(
        "ssm", tau=0.3, similarity=kind, negatives="sampled", include_positive=include_positive
    )
    want = ref_ssm_sampled(b, 0.3, include_positive, kind)
    assert float(loss(b)) == pytest.approx(want, rel=1e-10)


def test_ssm_logq_matches_reference():
    b = make_batch()
    b.neg_log_prob = -torch.rand(b.neg_items.shape, dtype=D) * 3
    loss = get_loss("ssm", tau=0.5, negatives="sampled", logq_correction=True)
    want = ref_ssm_sampled(b, 0.5, True, "cos", log_q=b.neg_log_prob)
    assert float(loss(b)) == pytest.approx(want, rel=1e-10)


def test_logq_correction_with_in_batch_negatives_is_refused_not_ignored():
    """In-batch rows carry no draw probability: the flag would train uncorrected while
    reading as on."""
    with pytest.raises(ConfigError, match="logq_correction applies to sampled negatives"):
        get_loss("ssm", tau=0.5, logq_correction=True)
    assert get_loss("ssm", tau=0.5, negatives="sampled", logq_correction=True).logq_correction


SAMPLED_ONLY = [
    ("num_negatives", 64),
    ("sampler", "popularity"),
    ("pop_beta", 0.5),
    ("reject_positives", True),
    ("shared_negatives", True),
    ("shared_negatives", 16),
]


@pytest.mark.parametrize("name", ["ssm", "bsl"])
@pytest.mark.parametrize("key,value", SAMPLED_ONLY)
def test_sampled_only_options_with_in_batch_negatives_are_refused_not_ignored(name, key, value):
    """In-batch negatives draw nothing: ``get_loss("ssm", shared_negatives=True)`` trained
    exactly as without it while reading as on."""
    with pytest.raises(ConfigError, match=rf"{key}=.*negatives='sampled'"):
        get_loss(name, **{key: value})
    with pytest.raises(ConfigError, match=rf"{key}=.*negatives='sampled'"):
        get_loss(name, negatives="in-batch", tau=0.2, **{key: value})
    loss = get_loss(name, negatives="sampled", **{key: value})  # where it means something
    assert loss.negatives == "sampled" and getattr(loss, key) == value


@pytest.mark.parametrize("name", ["ssm", "bsl"])
def test_in_batch_refusal_names_every_odd_option(name):
    with pytest.raises(ConfigError) as e:
        get_loss(name, shared_negatives=4, num_negatives=32, pop_beta=0.75)
    msg = str(e.value)
    for part in ("shared_negatives=4", "num_negatives=32", "pop_beta=0.75", "in-batch"):
        assert part in msg
    assert "sampler" not in msg and "reject_positives" not in msg


@pytest.mark.parametrize("name", ["ssm", "bsl"])
def test_in_batch_defaults_and_default_valued_options_still_construct(name):
    for kw in ({}, {"negatives": "in-batch"}, {"form": "multi"} if name == "bsl" else {}):
        loss = get_loss(name, **kw)
        assert (loss.negatives, loss.num_negatives, loss.shared_negatives) == ("in-batch", 0, False)
        assert (loss.sampler, loss.pop_beta, loss.reject_positives) == ("uniform", 1.0, False)
    # the defaults spelled out (and shared_negatives=0, per-row negatives) are no change
    get_loss(name, sampler="uniform", pop_beta=1.0, reject_positives=False, shared_negatives=False)
    get_loss(name, shared_negatives=0)
    with pytest.raises(ConfigError, match="sampler must be 'uniform' or 'popularity'"):
        get_loss(name, sampler="bogus")


def test_ssm_ignores_sampling_probabilities_without_logq_correction():
    """The trainer always fills ``neg_log_prob`` for sampled negatives; only
    ``logq_correction=True`` may use it."""
    b = make_batch()
    b.neg_log_prob = -torch.rand(b.neg_items.shape, dtype=D) * 3
    loss = get_loss("ssm", tau=0.5, negatives="sampled", logq_correction=False)
    assert float(loss(b)) == pytest.approx(ref_ssm_sampled(b, 0.5, True, "cos"), rel=1e-10)


def test_functional_softmax_and_bpr_match_their_references():
    b = make_batch()
    all_s = b.user_emb @ b.all_item_emb.t()
    pos = all_s[torch.arange(4), b.pos_items]
    want = ref_softmax(b, 0.3, "ip", reduce=False)
    got = softmax_loss(pos, all_s, 0.3, reduction="none")
    assert torch.allclose(got, torch.tensor(want, dtype=D), rtol=1e-10)
    assert float(softmax_loss(pos, all_s, 0.3, reduction="sum")) == pytest.approx(sum(want))
    # a per-row temperature of the other items; the positive keeps tau in the sum too
    tau_n = torch.tensor([1.0, 0.5, 0.3, 0.2], dtype=D)
    want = ref_softmax(b, 0.1, "ip", tau_neg=tau_n, reduce=False)
    got = softmax_loss(pos, all_s, 0.1, reduction="none", tau_neg=tau_n, pos_items=b.pos_items)
    assert torch.allclose(got, torch.tensor(want, dtype=D), rtol=1e-10)
    with pytest.raises(ConfigError, match="tau_neg needs pos_items"):
        softmax_loss(pos, all_s, 0.1, tau_neg=tau_n)
    neg = b.neg_emb[:, 0]
    s_pos, s_neg = (b.user_emb * b.pos_emb).sum(-1), (b.user_emb * neg).sum(-1)
    want_bpr = sum(
        -math.log(1 / (1 + math.exp(-(float(p) - float(n))))) for p, n in zip(s_pos, s_neg)
    )
    assert float(bpr_loss(s_pos, s_neg)) == pytest.approx(want_bpr / 4, rel=1e-10)


def test_user_with_every_item_positive_under_negative_side_user_tau():
    """mask_positives leaves such a user's row only its own positive: the loss is 0 with
    finite gradients (it was NaN when the own positive was masked and added back)."""
    items = torch.randn(3, 4, dtype=D)
    u = torch.randn(2, 4, dtype=D, requires_grad=True)
    idx = UserItemIndex(torch.tensor([[0, 0, 0, 1], [0, 1, 2, 0]]), 2, 3)  # user 0: all items
    b = LossBatch(torch.tensor([0, 1]), torch.tensor([1, 0]), u, items[[1, 0]], all_item_emb=items)
    loss = get_loss("softmax", tau=0.1, mask_positives=True, positives=idx, similarity="ip")
    loss.user_tau_table = torch.tensor([0.5, 0.5], dtype=D)
    loss.user_tau_scope = "negatives"
    rows = loss.per_row(b)
    assert float(rows[0]) == pytest.approx(0.0, abs=1e-12)
    want = ref_softmax(
        b, 0.1, "ip", positives={(0, 0), (0, 1), (0, 2), (1, 0)}, tau_neg=[0.5, 0.5], reduce=False
    )
    assert float(rows[1]) == pytest.approx(want[1], rel=1e-10)
    rows.sum().backward()
    assert torch.isfinite(u.grad).all()


def test_recorded_unit_loss_is_finite_in_half_precision():
    """Over a catalogue of more than 65504 near-equal logits a float16 log-sum-exp is inf;
    the recorded τ = 1 loss (Adap-τ's per-user statistic) is summed in float32."""
    g = torch.Generator().manual_seed(0)
    n = 70_000
    items = (torch.randn(n, 8, generator=g) * 1e-3).half()
    u = torch.randn(4, 8, generator=g).half()
    pos = torch.arange(4)
    b = LossBatch(torch.arange(4), pos, u, items[pos], all_item_emb=items)
    loss = get_loss("softmax", tau=0.1, similarity="ip")
    loss.record_unit_loss = True
    loss(b)
    unit = loss.unit_temperature_loss(b)
    assert torch.isfinite(unit).all()
    assert torch.allclose(unit.float(), torch.full((4,), math.log(n)), atol=1e-2)


@pytest.mark.parametrize("include_positive", [True, False])
def test_ssm_in_batch_matches_reference_with_collisions(include_positive):
    b = make_batch(B=5)
    coll = torch.zeros(5, 5, dtype=torch.bool)
    coll[0, 3] = coll[2, 1] = True
    b.in_batch_collision = coll
    loss = get_loss("ssm", tau=0.2, include_positive=include_positive)
    want = ref_ssm_in_batch(b, 0.2, include_positive, "cos", coll)
    assert float(loss(b)) == pytest.approx(want, rel=1e-10)
    no_mask = get_loss("ssm", tau=0.2, include_positive=include_positive, mask_collisions=False)
    want = ref_ssm_in_batch(b, 0.2, include_positive, "cos")
    assert float(no_mask(b)) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("kind", ["ip", "cos"])
def test_softmax_matches_reference(kind):
    b = make_batch()
    loss = get_loss("softmax", tau=0.4, similarity=kind)
    assert loss.negatives == "all"
    assert float(loss(b)) == pytest.approx(ref_softmax(b, 0.4, kind), rel=1e-10)


def test_softmax_masks_other_training_positives():
    b = make_batch(B=3, num_items=6)
    b.users = torch.tensor([0, 1, 0])
    b.pos_items = torch.tensor([2, 4, 5])
    b.pos_emb = b.all_item_emb[b.pos_items]
    pairs = {(0, 2), (0, 5), (0, 1), (1, 4), (1, 0)}
    ei = torch.tensor(sorted(pairs)).t()
    index = UserItemIndex(ei, 2, 6)
    loss = get_loss("softmax", tau=0.5, mask_positives=True, positives=index)
    want = ref_softmax(b, 0.5, "cos", positives=pairs)
    assert float(loss(b)) == pytest.approx(want, rel=1e-10)
    # the index may come with the batch instead
    loss2 = get_loss("softmax", tau=0.5, mask_positives=True)
    b.positives = index
    assert float(loss2(b)) == pytest.approx(want, rel=1e-10)
    b.positives = None
    with pytest.raises(ConfigError, match="training pairs"):
        loss2(b)
    # masking removes terms from the sum: the loss can only go down (the package's own
    # masked and unmasked losses, and the reference's)
    assert float(loss(b)) < float(get_loss("softmax", tau=0.5)(b))
    assert want < ref_softmax(b, 0.5, "cos")


@pytest.mark.parametrize("form", ["reweight", "multi"])
@pytest.mark.parametrize("kind", ["ip", "cos"])
def test_bsl_matches_reference(form, kind):
    b = make_batch(B=6, users=[0, 1, 0, 2, 1, 0])
    loss = get_loss(
        "bsl", tau1=0.3, tau2=1.2, form=form, similarity=kind, negatives="sampled", num_negatives=5
    )
    assert float(loss(b)) == pytest.approx(ref_bsl(b, 0.3, 1.2, form, kind), rel=1e-10)


# -- limits --------------------------------------------------------------------------------
def test_ssm_with_all_items_as_negatives_is_softmax():
    b = make_batch(B=4, num_items=9)
    I = b.all_item_emb.size(0)
    b.neg_emb = b.all_item_emb.unsqueeze(0).expand(4, I, -1)
    ssm = get_loss("ssm", tau=0.2, negatives="sampled", include_positive=False)
    sm = get_loss("softmax", tau=0.2)
    assert torch.allclose(ssm.per_row(b), sm.per_row(b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("negatives", ["sampled", "in-batch"])
def test_bsl_with_unit_tau2_is_the_softmax_it_generalises(negatives):
    b = make_batch(B=5)
    bsl = get_loss("bsl", tau1=0.15, tau2=1.0, negatives=negatives)
    ssm = get_loss("ssm", tau=0.15, negatives=negatives, include_positive=False)
    assert torch.allclose(bsl.per_row(b), ssm.per_row(b), rtol=1e-12, atol=1e-12)
    # multi with one positive per user is reweight
    multi = get_loss("bsl", tau1=0.15, tau2=1.3, form="multi", negatives=negatives)
    rew = get_loss("bsl", tau1=0.15, tau2=1.3, negatives=negatives)
    assert torch.allclose(multi.per_row(b), rew.per_row(b), rtol=1e-12, atol=1e-12)


def test_bsl_tau_alias_and_validation():
    assert get_loss("bsl", tau=0.2).tau1 == 0.2
    assert get_loss("bsl").tau1 == 0.1  # the documented default
    assert get_loss("bsl", tau=0.2, tau1=0.2).tau1 == 0.2
    with pytest.raises(ConfigError, match=r"tau is an alias of tau1: got tau=0\.2 and tau1=0\.3"):
        get_loss("bsl", tau=0.2, tau1=0.3)  # tau1 used to be dropped silently
    with pytest.raises(ConfigError, match="form"):
        get_loss("bsl", form="bogus")
    with pytest.raises(ConfigError, match="tau2"):
        get_loss("bsl", tau2=0)
    with pytest.raises(ConfigError, match="negatives"):
        get_loss("ssm", negatives="all")


# -- per-user temperatures -----------------------------------------------------------------
def test_per_user_temperature_table_and_scope():
    b = make_batch(users=[2, 0, 1, 2])
    table = torch.tensor([0.2, 0.5, 0.1], dtype=D)
    loss = get_loss("ssm", tau=0.3, negatives="sampled", include_positive=False)
    plain = float(loss(b))
    loss.user_tau_table = table
    row_tau = [float(table[u]) for u in b.users]
    loss.user_tau_scope = "negatives"  # authors' form: positive at tau, negatives at tau_u
    want = ref_ssm_sampled(b, 0.3, False, "cos", tau_pos=[0.3] * 4, tau_neg=row_tau)
    assert float(loss(b)) == pytest.approx(want, rel=1e-10)
    loss.user_tau_scope = "both"
    want = ref_ssm_sampled(b, 0.3, False, "cos", tau_pos=row_tau, tau_neg=row_tau)
    assert float(loss(b)) == pytest.approx(want, rel=1e-10)
    # the batch's own per-row temperature takes precedence over the table
    b.user_tau = torch.full((4,), 0.3, dtype=D)
    assert float(loss(b)) == pytest.approx(plain, rel=1e-12)


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("users", [[2, 0, 1, 2], [0, 1, 2, 3]])
def test_softmax_negatives_scope_keeps_the_positive_at_its_temperature(mask, users):
    """Adap-τ's scope='negatives': tau_u divides the other items only; the row's own
    positive is at tau in the numerator *and* the denominator, so the loss is >= 0 (with
    the positive at tau_u in the denominator it went to -8 for tau 0.1, tau_u 1)."""
    b = make_batch(users=users, num_items=6)
    pairs = {(int(u), int(i)) for u, i in zip(b.users, b.pos_items)} | {(0, 1), (2, 3)}
    index = UserItemIndex(torch.tensor(sorted(pairs)).t(), 4, 6)
    loss = get_loss("softmax", tau=0.1, mask_positives=mask, positives=index)
    table = torch.tensor([1.0, 0.5, 0.05, 0.3], dtype=D)
    loss.user_tau_table = table
    loss.user_tau_scope = "negatives"
    row_tau = [float(table[u]) for u in b.users]
    want = ref_softmax(b, 0.1, "cos", pairs if mask else None, tau_neg=row_tau, reduce=False)
    got = loss.per_row(b)
    assert torch.allclose(got, torch.tensor(want, dtype=D), rtol=1e-10)
    assert (got >= 0).all()
    loss.user_tau_scope = "both"  # every logit at tau_u: the plain softmax at tau_u
    both = [
        ref_softmax(b, t, "cos", pairs if mask else None, reduce=False)[r]
        for r, t in enumerate(row_tau)
    ]
    assert torch.allclose(loss.per_row(b), torch.tensor(both, dtype=D), rtol=1e-10)


def test_bsl_negatives_scope_keeps_the_added_positive_at_its_temperature():
    b = make_batch(users=[2, 0, 1, 2])
    loss = get_loss("bsl", tau1=0.1, tau2=1.0, negatives="sampled", include_positive=True)
    table = torch.tensor([1.0, 0.5, 0.05], dtype=D)
    loss.user_tau_table = table
    loss.user_tau_scope = "negatives"
    # tau2 = 1 with the positive added is the sampled softmax with the positive included
    ssm = get_loss("ssm", tau=0.1, negatives="sampled", include_positive=True)
    ssm.user_tau_table, ssm.user_tau_scope = table, "negatives"
    assert torch.allclose(loss.per_row(b), ssm.per_row(b), rtol=1e-12)
    assert (loss.per_row(b) >= 0).all()


@pytest.mark.parametrize("name", ["ssm", "softmax", "bsl"])
def test_unit_temperature_loss_is_recorded(name):
    b = make_batch()
    kw = {"negatives": "sampled", "num_negatives": 5} if name != "softmax" else {}
    loss = get_loss(name, **kw)
    loss.user_tau_table = torch.tensor([0.05, 0.3, 0.2, 0.7], dtype=D)
    loss.record_unit_loss = True
    loss(b)
    assert loss.last_unit_loss is not None  # recorded by forward
    recorded = loss.unit_temperature_loss(b)
    assert recorded is loss.last_unit_loss  # served from the record, not recomputed
    assert torch.allclose(recorded, loss.per_row(b, tau=1.0))
    assert not recorded.requires_grad
    # a new batch object is recomputed, not served from the record
    b2 = make_batch(seed=3)
    fresh = loss.unit_temperature_loss(b2)
    assert fresh is not loss.last_unit_loss
    assert torch.allclose(fresh, loss.per_row(b2, tau=1.0))


# -- gradients and extremes ----------------------------------------------------------------
@pytest.mark.parametrize(
    "name,kw",
    [
        ("ssm", {"negatives": "sampled", "similarity": "ip", "tau": 0.7}),
        ("ssm", {"negatives": "sampled", "include_positive": False}),
        ("ssm", {"negatives": "in-batch"}),
        ("softmax", {"tau": 0.5}),
        ("bsl", {"negatives": "sampled", "num_negatives": 5, "tau2": 1.3}),
        ("bsl", {"form": "multi", "tau2": 0.8}),
    ],
)
def test_gradcheck(name, kw):
    b = make_batch(B=4, users=[0, 1, 0, 2])
    loss = get_loss(name, **kw)
    u = b.user_emb.clone().requires_grad_()
    items = b.all_item_emb.clone().requires_grad_()

    def f(u, items):
        bb = LossBatch(
            b.users,
            b.pos_items,
            u,
            items[b.pos_items],
            neg_items=b.neg_items,
            neg_emb=items[b.neg_items],
            all_item_emb=items,
        )
        return loss(bb)

    assert torch.autograd.gradcheck(f, (u, items))


def extreme_batch():
    # inner products of exactly +-1e4
    u = torch.tensor([[100.0, 0.0], [0.0, 100.0]], requires_grad=True)
    items = torch.tensor([[100.0, 0.0], [-100.0, 0.0], [0.0, 100.0], [0.0, -100.0]])
    items.requires_grad_()
    pos = torch.tensor([0, 3])
    neg = torch.tensor([[1, 2, 0], [2, 1, 3]])
    b = LossBatch(
        torch.tensor([0, 1]),
        pos,
        u,
        items[pos],
        neg_items=neg,
        neg_emb=items[neg],
        all_item_emb=items,
    )
    return b, (u, items)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("ssm", {"negatives": "sampled", "similarity": "ip"}),
        ("ssm", {"negatives": "in-batch", "similarity": "ip"}),
        ("ssm", {"negatives": "in-batch", "similarity": "ip", "include_positive": False}),
        ("softmax", {"similarity": "ip"}),
        ("bsl", {"negatives": "sampled", "similarity": "ip", "num_negatives": 3}),
        ("bsl", {"form": "multi", "similarity": "ip"}),
    ],
)
def test_finite_at_extreme_inner_products(name, kw):
    b, leaves = extreme_batch()
    value = get_loss(name, **kw)(b)
    assert torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)


def test_rows_without_candidates_contribute_zero_with_finite_grads():
    pos = torch.tensor([1.0, 2.0], requires_grad=True)
    neg = torch.tensor([[0.5, 0.1], [3.0, 1.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [False, True]])
    out = sampled_softmax_loss(pos, neg, 0.5, False, mask, reduction="none")
    assert float(out[0].detach()) == 0
    assert float(out[1].detach()) == pytest.approx(-4.0 + 6.0)
    out.sum().backward()
    assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all()


def test_module_attributes():
    for cls in (SampledSoftmaxLoss, SoftmaxLoss, BSLLoss):
        assert cls.paper and ".. math::" in (cls.__doc__ or "")
    ssm = get_loss("ssm", negatives="sampled", num_negatives=7, sampler="popularity", pop_beta=0.5)
    assert (ssm.num_negatives, ssm.sampler, ssm.pop_beta) == (7, "popularity", 0.5)
    assert get_loss("ssm").num_negatives == 0


def test_row_logsumexp_matches_torch_in_value_and_gradient():
    from pyg_cf.losses.base import row_logsumexp

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(5, 7, generator=g, dtype=torch.float64) * 30).requires_grad_()
    masked = x.detach().clone()
    masked[1, :6] = float("-inf")  # masked entries: a row with one finite entry left
    masked.requires_grad_()
    for t in (x, masked):
        w = torch.randn(5, generator=g, dtype=torch.float64)
        got = row_logsumexp(t.clone())
        want = torch.logsumexp(t, dim=1)
        assert torch.allclose(got, want, rtol=1e-12, atol=0)
        (g_got,) = torch.autograd.grad((got * w).sum(), t)
        (g_want,) = torch.autograd.grad((want * w).sum(), t)
        assert torch.allclose(g_got, g_want, rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(row_logsumexp, (x.detach()[:3, :4].requires_grad_(),))
    plain = torch.randn(3, 4)  # without grad: torch's own
    assert torch.equal(row_logsumexp(plain), torch.logsumexp(plain, dim=1))


# a batch whose rows of one user share that user's embedding (gathered from a table)
SHARE_USERS = torch.tensor([2, 0, 2, 1, 0, 2])
SHARE_POS = torch.tensor([1, 4, 7, 0, 8, 3])
SHARE_PAIRS = {(2, 1), (2, 7), (2, 3), (2, 5), (0, 4), (0, 8), (1, 0), (1, 2)}


def _shared_batch(table, items):
    return LossBatch(
        users=SHARE_USERS, pos_items=SHARE_POS, user_emb=table[SHARE_USERS],
        pos_emb=items[SHARE_POS], all_item_emb=items,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["ip", "cos"])
@pytest.mark.parametrize("mask", [False, True])
def test_softmax_shares_one_logit_row_per_user(kind, mask, monkeypatch):
    # the loss scores one [I] row per distinct user (with mask_positives: the user's
    # positives masked, each row's own positive added back), with the per-row value and
    # gradients
    import pyg_cf.losses.softmax as sm

    g = torch.Generator().manual_seed(0)
    table = torch.randn(3, 4, generator=g, dtype=D, requires_grad=True)
    items = torch.randn(9, 4, generator=g, dtype=D, requires_grad=True)
    index = UserItemIndex(torch.tensor(sorted(SHARE_PAIRS)).t(), 3, 9)
    loss = get_loss("softmax", tau=0.3, similarity=kind, mask_positives=mask, positives=index)
    assert sm._distinct_rows(SHARE_USERS, table[SHARE_USERS], 0.3) is not None
    shared = loss(_shared_batch(table, items))
    g_shared = torch.autograd.grad(shared, [table, items])
    plain = _shared_batch(table.detach(), items.detach())
    want = ref_softmax(plain, 0.3, kind, positives=SHARE_PAIRS if mask else None)
    assert float(shared) == pytest.approx(want, rel=1e-10)
    # the unit-temperature record takes the same path
    loss.record_unit_loss = True
    loss(plain)
    assert torch.allclose(loss.unit_temperature_loss(plain), loss.per_row(plain, tau=1.0))
    loss.record_unit_loss = False
    monkeypatch.setattr(sm, "_distinct_rows", lambda *a: None)  # one logit row per row
    per_row = loss(_shared_batch(table, items))
    g_rows = torch.autograd.grad(per_row, [table, items])
    assert float(shared) == pytest.approx(float(per_row), rel=1e-12)
    for x, y in zip(g_shared, g_rows):
        assert torch.allclose(x, y, rtol=1e-10, atol=1e-12)


def test_softmax_row_sharing_falls_back_when_rows_of_a_user_differ():
    import pyg_cf.losses.softmax as sm

    b = make_batch(B=4, users=[0, 1, 0, 1])  # independent embeddings per row
    assert sm._distinct_rows(b.users, b.user_emb, 0.5) is None
    assert float(get_loss("softmax", tau=0.5)(b)) == pytest.approx(
        ref_softmax(b, 0.5, "cos"), rel=1e-10
    )
    # equal embeddings but per-row temperatures that differ within a user: no sharing
    b.user_emb = b.user_emb[torch.tensor([0, 1, 0, 1])]
    tau = torch.tensor([0.2, 0.3, 0.4, 0.3], dtype=D)
    assert sm._distinct_rows(b.users, b.user_emb, tau) is None
    assert sm._distinct_rows(b.users, b.user_emb, tau[torch.tensor([0, 1, 0, 1])]) is not None
    # all users distinct: nothing to share
    assert sm._distinct_rows(torch.arange(4), b.user_emb, 0.5) is None


def test_masked_softmax_without_a_rows_positive_in_the_index_scores_per_row():
    # a row whose positive is not among its user's indexed pairs: no sharing, still exact
    g = torch.Generator().manual_seed(1)
    plain = _shared_batch(torch.randn(3, 4, generator=g, dtype=D), torch.randn(9, 4, dtype=D))
    fewer = SHARE_PAIRS - {(2, 7)}
    index = UserItemIndex(torch.tensor(sorted(fewer)).t(), 3, 9)
    loss = get_loss("softmax", tau=0.3, mask_positives=True, positives=index)
    want = ref_softmax(plain, 0.3, "cos", positives=fewer)
    assert float(loss(plain)) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("mask", [False, True])
def test_softmax_row_sharing_accepts_int32_ids(mask):
    # repeated users with int32 ids: the shared-row path gives the int64 path's value
    g = torch.Generator().manual_seed(2)
    table = torch.randn(3, 4, generator=g, dtype=D)
    items = torch.randn(9, 4, generator=g, dtype=D)
    index = UserItemIndex(torch.tensor(sorted(SHARE_PAIRS)).t(), 3, 9)
    loss = get_loss("softmax", tau=0.3, mask_positives=mask, positives=index)
    want = float(loss(_shared_batch(table, items)))
    b = _shared_batch(table, items)
    b.users, b.pos_items = b.users.int(), b.pos_items.int()
    assert float(loss(b)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("grad", [False, True])
def test_row_logsumexp_of_a_wide_half_precision_row_stays_finite(dtype, grad):
    # 100,000 equal logits (a catalogue at initialisation): the row sum 1e5 exceeds
    # float16's 65504, so an in-dtype sum is inf; the result is log(1e5) in the input dtype
    from pyg_cf.losses.base import row_logsumexp

    x = torch.zeros(2, 100_000, dtype=dtype, requires_grad=grad)
    out = row_logsumexp(x)
    assert out.dtype == dtype
    assert torch.allclose(out.float(), torch.full((2,), math.log(1e5)), rtol=1e-2)
    if grad:
        (g,) = torch.autograd.grad(out.sum(), x)
        assert torch.isfinite(g).all() and g.dtype == dtype


def test_a_row_without_any_negative_contributes_zero():
    """An empty negative axis is a row with no term, as a fully masked one: 0, not -inf."""
    from pyg_cf.losses.softmax import bsl_loss

    pos = torch.randn(3, dtype=D, requires_grad=True)
    empty = torch.randn(3, 0, dtype=D, requires_grad=True)
    for loss in (
        sampled_softmax_loss(pos, empty, include_positive=False),
        bsl_loss(pos, empty),
    ):
        assert float(loss) == 0.0
        (g,) = torch.autograd.grad(loss, pos)
        assert torch.equal(g, torch.zeros_like(g))
    masked = sampled_softmax_loss(
        pos,
        torch.randn(3, 2, dtype=D),
        include_positive=False,
        neg_mask=torch.ones(3, 2, dtype=torch.bool),
    )
    assert float(masked) == 0.0


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("ssm", {}),
        ("ssm", {"negatives": "sampled", "num_negatives": 5, "similarity": "ip"}),
        ("bsl", {"form": "multi", "tau1": 0.2, "tau2": 0.7}),
        ("bsl", {"negatives": "sampled", "num_negatives": 5}),
    ],
)
def test_a_row_mean_loss_is_the_mean_of_its_rows(name, kwargs):
    """``row_mean`` (what DistributedTrainer relies on to score a rank's rows against the
    whole batch) holds: forward is the mean of per_row, repeated users and collisions
    included."""
    from pyg_cf.losses.registry import _REGISTRY

    loss = get_loss(name, **kwargs)
    assert loss.row_mean
    b = make_batch(B=6, users=[0, 1, 0, 2, 3, 3])
    g = torch.Generator().manual_seed(1)
    b = replace(b, in_batch_collision=torch.rand(6, 6, generator=g) > 0.6)
    torch.testing.assert_close(loss(b), loss.per_row(b).mean(), rtol=0, atol=0)
    flagged = sorted(n for n, cls in _REGISTRY.items() if cls.row_mean)
    assert flagged == ["bsl", "ssm"]


def test_row_mean_is_trusted_only_where_the_forward_in_use_declares_it():
    """A subclass that overrides forward (adding a term, say) must declare row_mean again:
    DistributedTrainer would otherwise replace its forward by the mean of per_row."""
    from pyg_cf.losses.base import forward_is_row_mean
    from pyg_cf.losses.softmax import BSLLoss, SampledSoftmaxLoss

    class WithTerm(SampledSoftmaxLoss):
        def forward(self, batch):  # type: ignore[no-untyped-def]
            return super().forward(batch) + (batch.user_emb - batch.pos_emb).pow(2).sum()

    class Declared(WithTerm):
        row_mean = True

        def forward(self, batch):  # type: ignore[no-untyped-def]
            return self.per_row(batch).mean()

    class Renamed(BSLLoss):  # forward inherited: still trusted
        pass

    assert forward_is_row_mean(get_loss("ssm")) and forward_is_row_mean(get_loss("bsl"))
    assert forward_is_row_mean(Renamed())
    assert not forward_is_row_mean(WithTerm())
    assert forward_is_row_mean(Declared())
    assert not forward_is_row_mean(get_loss("bpr"))


# -- checks added after the review of pyg_cf/losses ----------------------------------------
def test_logq_correction_without_draw_probabilities_is_refused_not_ignored():
    """The batch carries no ``neg_log_prob``: the flag read as on while training ran
    uncorrected (the loss equalled the uncorrected one)."""
    b = make_batch()
    assert b.neg_log_prob is None
    loss = get_loss("ssm", negatives="sampled", num_negatives=5, logq_correction=True)
    with pytest.raises(ConfigError, match=r"logq_correction=True .*neg_log_prob is None"):
        loss(b)
    loss.record_unit_loss = True
    with pytest.raises(ConfigError, match="neg_log_prob is None"):
        loss.unit_temperature_loss(b)


@pytest.mark.parametrize("shape", [(4, 4), (4,), (1, 5)])
def test_logq_correction_needs_one_log_probability_per_negative(shape):
    b = make_batch()  # [4, 5] negatives
    b.neg_log_prob = torch.zeros(shape, dtype=D)
    loss = get_loss("ssm", negatives="sampled", num_negatives=5, logq_correction=True)
    message = rf"neg_log_prob has shape {re.escape(str(shape))}, but .* shape \(4, 5\)"
    with pytest.raises(ConfigError, match=message):
        loss(b)


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("ssm", {"tau": math.inf}, "tau must be > 0 and a finite number, got inf"),
        ("ssm", {"tau": math.nan}, "tau must be > 0 and a finite number, got nan"),
        ("ssm", {"tau": 0.0}, "tau must be > 0 and a finite number, got 0.0"),
        ("softmax", {"tau": math.inf}, "tau must be > 0 and a finite number, got inf"),
        ("bsl", {"tau1": math.inf}, "tau must be > 0 and a finite number, got inf"),
        ("bsl", {"tau2": math.inf}, "tau2 must be > 0 and a finite number, got inf"),
        ("bsl", {"tau2": math.nan}, "tau2 must be > 0 and a finite number, got nan"),
    ],
)
def test_temperatures_must_be_finite_and_positive(name, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        get_loss(name, **kwargs)


def test_functional_softmax_never_masks_the_row_s_own_positive():
    b = make_batch()
    all_s = b.user_emb @ b.all_item_emb.t()
    rows = torch.arange(4)
    pos = all_s[rows, b.pos_items]
    others = torch.zeros_like(all_s, dtype=torch.bool)
    others[:, 0] = True  # some other item masked in every row ...
    others[rows, b.pos_items] = False
    mask = others.clone()
    mask[rows, b.pos_items] = True  # ... and, wrongly, the row's own positive
    want = softmax_loss(pos, all_s, 0.3, others, "none", pos_items=b.pos_items)
    got = softmax_loss(pos, all_s, 0.3, mask, "none", pos_items=b.pos_items)
    assert torch.equal(got, want)
    assert (got >= 0).all()  # the own positive is in its sum: -log p >= 0
    assert mask[rows, b.pos_items].all()  # the caller's mask is left as it was
    # the same with a per-row temperature of the other items (the positive's logit rewritten)
    tau_n = torch.tensor([1.0, 0.5, 0.3, 0.2], dtype=D)
    want = softmax_loss(pos, all_s, 0.1, others, "none", tau_n, b.pos_items)
    assert torch.equal(softmax_loss(pos, all_s, 0.1, mask, "none", tau_n, b.pos_items), want)
    # a mask shared by every row ([1, I]) is broadcast, as masked_logsumexp does
    shared = others[:1] | torch.nn.functional.one_hot(b.pos_items[:1], 7).bool()
    got = softmax_loss(pos, all_s, 0.3, shared, "none", pos_items=b.pos_items)
    full = shared.expand(4, -1).clone()
    full[rows, b.pos_items] = False
    assert torch.equal(got, softmax_loss(pos, all_s, 0.3, full, "none"))
