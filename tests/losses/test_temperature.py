import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from scipy.special import lambertw as scipy_lambertw

from pyg_cf.errors import ConfigError
from pyg_cf.losses import LossBatch, get_loss
from pyg_cf.losses.temperature import (
    AdapTau,
    AdapTau0,
    FixedTemperature,
    adaptive_tau0,
    get_temperature_schedule,
    lambertw,
    lambertw_scipy,
    per_user_temperature,
)

D = torch.float64
INV_E = math.exp(-1)


# -- Lambert W -----------------------------------------------------------------------------
def test_lambertw_matches_scipy():
    far = torch.tensor(
        [-0.3, -0.25, -0.1, -1e-9, 0.0, 1e-9, 0.3, 1.0, math.e, 10.0, 1e3, 1e6, 1e30], dtype=D
    )
    want = torch.from_numpy(scipy_lambertw(far.numpy()).real)
    assert torch.allclose(lambertw(far), want, rtol=1e-13, atol=1e-15)
    grid = torch.linspace(-INV_E, 50, 20001, dtype=D)
    want = torch.from_numpy(scipy_lambertw(grid.numpy()).real)
    # float64(-exp(-1)) is just below -1/e, where scipy answers NaN; W there is -1
    assert torch.isnan(want[0]) and not torch.isnan(want[1:]).any()
    want[0] = -1.0
    assert torch.allclose(lambertw(grid), want, rtol=1e-10, atol=1e-7)
    # the branch point and its neighbourhood (W is ill-conditioned there)
    near = -INV_E + torch.tensor([1e-14, 1e-10, 1e-6, 1e-3], dtype=D)
    want = torch.from_numpy(scipy_lambertw(near.numpy()).real)
    assert torch.allclose(lambertw(near), want, rtol=0, atol=1e-8)
    assert torch.allclose(lambertw_scipy(near), want)
    assert float(lambertw(torch.tensor(-INV_E, dtype=D))) == pytest.approx(-1.0, abs=1e-7)


def test_lambertw_inverts_w_exp_w_and_keeps_dtype():
    x = torch.rand(1000) * 100 - INV_E
    w = lambertw(x)
    assert w.dtype == torch.float32 and torch.isfinite(w).all()
    assert torch.allclose(w.double() * torch.exp(w.double()), x.double(), rtol=1e-5, atol=1e-6)


def test_lambertw_at_infinity_is_infinity():
    x = torch.tensor([math.inf, 1e300, 0.0], dtype=D)
    w = lambertw(x)
    assert w[0] == math.inf  # was NaN: the start is inf / inf there
    assert torch.allclose(w[1:], torch.tensor([scipy_lambertw(1e300).real, 0.0], dtype=D))
    assert lambertw(torch.tensor([math.inf])).dtype == torch.float32


def test_lambertw_clamps_below_minus_one_over_e():
    x = torch.tensor([-5.0, -1.0, -0.4], dtype=D)
    assert torch.allclose(lambertw(x), torch.full((3,), -1.0, dtype=D), atol=1e-7)
    assert torch.allclose(lambertw_scipy(x), torch.full((3,), -1.0, dtype=D), atol=1e-7)


# -- Adap-τ0 -------------------------------------------------------------------------------
def clustered_embeddings(n_plus, n_minus, scale_seed=0):
    """Users all along e1; ``n_plus`` items along e1 and ``n_minus`` along -e1, with random
    magnitudes (normalisation must remove them). Users' training items are among the +e1
    items, so mu+ = 1 and mu = (n_plus - n_minus) / (n_plus + n_minus)."""
    g = torch.Generator().manual_seed(scale_seed)
    degrees = [1, 2, 3, 4, 4]
    users = torch.tensor([u for u, k in enumerate(degrees) for _ in range(k)])
    items = torch.tensor([i for k in degrees for i in range(k)])
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=D)
    u_emb = e1 * (torch.rand(5, 1, generator=g, dtype=D) + 0.5)
    signs = torch.tensor([1.0] * n_plus + [-1.0] * n_minus, dtype=D).unsqueeze(1)
    i_emb = e1 * signs * (torch.rand(n_plus + n_minus, 1, generator=g, dtype=D) + 0.5)
    return u_emb, i_emb, torch.stack([users, items])


@pytest.mark.parametrize("n_plus,n_minus", [(4, 4), (6, 2), (7, 1)])
def test_tau0_on_synthetic_embeddings_with_known_means(n_plus, n_minus):
    u, i, ei = clustered_embeddings(n_plus, n_minus)
    st = adaptive_tau0(u, i, ei)
    n_items = n_plus + n_minus
    # degrees [1, 2, 3, 4, 4]: the 20 % quantile is 1.8, so U' = 4 users, D' = 13 pairs
    assert (st.num_users, st.num_pairs) == (4, 13)
    mu = (n_plus - n_minus) / n_items
    assert st.mu_pos == pytest.approx(1.0) and st.mu == pytest.approx(mu)
    assert st.log_ratio == pytest.approx(math.log(4 * n_items / 26))
    assert st.tau0 == pytest.approx((1.0 - mu) / math.log(4 * n_items / 26))


@pytest.mark.parametrize("aligned", [False, True])
def test_tau0_statistics_match_brute_force_on_random_embeddings(aligned):
    g = torch.Generator().manual_seed(1)
    u, it = torch.randn(12, 4, generator=g, dtype=D), torch.randn(9, 4, generator=g, dtype=D)
    deg = torch.randint(1, 6, (12,), generator=g)
    users = torch.repeat_interleave(torch.arange(12), deg)
    items = torch.randint(9, (users.numel(),), generator=g)
    if aligned:  # each user near the mean of its items: positives score high, disc > 0
        for k in range(12):
            u[k] = it[items[users == k]].mean(0) + 0.05 * torch.randn(4, generator=g, dtype=D)
    st = adaptive_tau0(u, it, torch.stack([users, items]), use_variance=True)
    q = sorted(deg.tolist())
    pos = 0.2 * (len(q) - 1)
    thresh = q[int(pos)] + (pos - int(pos)) * (q[min(int(pos) + 1, len(q) - 1)] - q[int(pos)])
    keep = [x for x in range(12) if deg[x] > thresh]

    def cos(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    pos_s = [cos(u[a], it[b]) for a, b in zip(users.tolist(), items.tolist()) if a in keep]
    all_s = [cos(u[a], it[b]) for a in keep for b in range(9)]
    mu_p, mu = sum(pos_s) / len(pos_s), sum(all_s) / len(all_s)
    var_p = sum((s - mu_p) ** 2 for s in pos_s) / len(pos_s)
    var = sum((s - mu) ** 2 for s in all_s) / len(all_s)
    assert (st.num_users, st.num_pairs) == (len(keep), len(pos_s))
    assert st.mu_pos == pytest.approx(mu_p, rel=1e-10)
    assert st.mu == pytest.approx(mu, rel=1e-10)
    assert st.var_pos == pytest.approx(var_p, rel=1e-10)
    assert st.var == pytest.approx(var, rel=1e-10)
    log_ratio = math.log(len(keep) * 9 / (2 * len(pos_s)))
    assert st.log_ratio == pytest.approx(log_ratio, rel=1e-12)
    a, gap = var - var_p, mu_p - mu
    disc = gap * gap - 2 * a * log_ratio
    if not aligned:  # random embeddings: a negative discriminant, clamped at 0
        assert disc < 0
        assert st.tau0_raw == pytest.approx(gap / (2 * log_ratio), rel=1e-9)
        return
    # w = 1 / tau0 solves (var - var+) w^2 - 2 (mu+ - mu) w + 2 log_ratio = 0; of its two
    # roots, the one continuous at var = var+ (both roots satisfy the quadratic, so the
    # residual alone would not tell them apart)
    assert disc > 0 and a > 0
    w = 1 / st.tau0_raw
    assert a * w * w - 2 * gap * w + 2 * log_ratio == pytest.approx(0, abs=1e-9)
    assert st.tau0_raw == pytest.approx((gap + math.sqrt(disc)) / (2 * log_ratio), rel=1e-9)
    assert st.tau0_raw != pytest.approx((gap - math.sqrt(disc)) / (2 * log_ratio), rel=1e-3)


def test_tau0_variance_form_reduces_to_eq14_for_equal_variances_and_warmup_gap():
    u, i, ei = clustered_embeddings(6, 2)
    plain = adaptive_tau0(u, i, ei)
    # here var+ = 0 and var = 1 - mu^2 > 0: the variance form differs ...
    full = adaptive_tau0(u, i, ei, use_variance=True)
    assert full.var_pos == pytest.approx(0, abs=1e-12) and full.var == pytest.approx(0.75)
    assert full.tau0 != pytest.approx(plain.tau0)
    # ... and it is the eq.-14 value when both variances vanish (all items along +e1)
    u2, i2, ei2 = clustered_embeddings(8, 0)
    a, b = adaptive_tau0(u2, i2, ei2), adaptive_tau0(u2, i2, ei2, use_variance=True)
    assert a.mu_pos == pytest.approx(a.mu)
    assert b.tau0_raw == pytest.approx(a.tau0_raw, abs=1e-12)
    warm = adaptive_tau0(u, i, ei, gap=0.7)
    assert warm.tau0 == pytest.approx(0.7 / plain.log_ratio)


def test_tau0_is_clamped_when_the_gap_is_not_positive():
    u, i, ei = clustered_embeddings(6, 2)
    st = adaptive_tau0(-u, i, ei, tau_min=0.05, tau_max=1.0)  # mu+ = -1 < mu = -0.5
    assert st.tau0_raw < 0 and st.tau0 == 0.05
    assert adaptive_tau0(u, i, ei, tau_max=0.2).tau0 == 0.2


# -- per-user τ ----------------------------------------------------------------------------
def test_user_tau_is_monotone_in_the_loss():
    g = torch.Generator().manual_seed(0)
    loss = torch.sort(torch.rand(500, generator=g, dtype=D) * 4).values
    tau = per_user_temperature(loss, 0.1, divisor=0.5)
    assert (tau.diff() >= 0).all()
    arg = (loss - loss.mean()) / 0.5
    strict = (arg[1:] > -INV_E) & (loss.diff() > 0)
    assert (tau.diff()[strict] > 0).all()
    # harder users (above the mean) get tau > tau0
    assert ((tau > 0.1) == (loss > loss.mean())).all()


def test_user_tau_known_values_and_clamp():
    # mean 1 and beta = 1: L = 1 -> tau0;  L - 1 = 2e -> W(e) = 1 -> tau0 e;
    # L - 1 = -2e -> argument -e < -1/e, clamped -> W(-1/e) = -1 -> tau0 / e
    loss = torch.tensor([1.0, 1.0 + 2 * math.e, 1.0 - 2 * math.e, 0.5, 1.5], dtype=D)
    tau = per_user_temperature(loss, 0.3)
    assert float(tau[0]) == pytest.approx(0.3, rel=1e-12)
    assert float(tau[1]) == pytest.approx(0.3 * math.e, rel=1e-10)
    assert float(tau[2]) == pytest.approx(0.3 / math.e, rel=1e-6)
    args = [(float(x) - 1) / 2 for x in loss]
    want = [0.3 * math.exp(-1 if a <= -INV_E else float(scipy_lambertw(a).real)) for a in args]
    assert torch.allclose(tau, torch.tensor(want, dtype=D), rtol=1e-6)


def test_user_tau_options():
    g = torch.Generator().manual_seed(2)
    loss = torch.rand(1000, generator=g, dtype=D)
    torch_tau = per_user_temperature(loss, 0.1, base=0.9, divisor=0.25)
    scipy_tau = per_user_temperature(loss, 0.1, base=0.9, divisor=0.25, method="scipy")
    assert torch.allclose(torch_tau, scipy_tau, rtol=1e-9)
    assert float((torch_tau <= 0.1).double().mean()) == pytest.approx(0.9, abs=0.002)
    valid = torch.rand(1000, generator=g) > 0.3
    masked = per_user_temperature(loss, 0.1, valid=valid)
    assert (masked[~valid] == 0.1).all()
    with pytest.raises(ConfigError, match="base"):
        per_user_temperature(loss, 0.1, base=1.5)
    with pytest.raises(ConfigError, match="divisor"):
        per_user_temperature(loss, 0.1, divisor=0)


def test_users_without_a_measured_loss_do_not_move_the_base():
    """m is the mean (or quantile) over the valid users only: an unmeasured user's loss
    entry (0, or a stale value) must not shift every other user's τ_u."""
    g = torch.Generator().manual_seed(3)
    loss = torch.rand(200, generator=g, dtype=D)
    valid = torch.rand(200, generator=g) > 0.5
    stale = torch.where(valid, loss, torch.full_like(loss, 50.0))
    for base in ("mean", 0.9):
        got = per_user_temperature(stale, 0.1, base=base, valid=valid)
        want = per_user_temperature(loss[valid], 0.1, base=base)
        assert torch.allclose(got[valid], want, rtol=1e-12)
        assert (got[~valid] == 0.1).all()


def test_a_non_finite_user_loss_keeps_tau0_and_spares_the_others(caplog):
    loss = torch.tensor([1.0, 2.0, float("inf"), 3.0, float("nan")], dtype=D)
    with caplog.at_level("WARNING"):
        tau = per_user_temperature(loss, 0.2)
    assert "2 user loss(es) are not finite" in caplog.text
    want = per_user_temperature(loss[[0, 1, 3]], 0.2)
    assert torch.allclose(tau[[0, 1, 3]], want, rtol=1e-12)
    assert tau[2] == 0.2 and tau[4] == 0.2


def test_the_lambert_argument_is_clamped_at_max_arg():
    # mean 1, divisor 2: L = 1 + 2e6 -> argument 1e6, clamped to 1000 (or 10)
    loss = torch.tensor([1.0 + 2e6, 1.0 - 2e6 / 3, 1.0 - 2e6 / 3, 1.0 - 2e6 / 3], dtype=D)
    assert float(loss.mean()) == pytest.approx(1.0)
    for cap in (1000.0, 10.0):
        tau = per_user_temperature(loss, 0.1, max_arg=cap)
        w = float(scipy_lambertw(cap).real)
        assert float(tau[0]) == pytest.approx(0.1 * math.exp(w), rel=1e-9)


def test_tau0_keeps_only_users_strictly_above_the_degree_quantile():
    """U' is the users whose degree is *above* the quantile: with ties at the quantile
    (degrees 1 1 1 1 1 2 2 2 2 2, quantile 0.2 = 1) the five degree-1 users are out."""
    g = torch.Generator().manual_seed(4)
    deg = torch.tensor([1] * 5 + [2] * 5)
    users = torch.repeat_interleave(torch.arange(10), deg)
    items = torch.randint(6, (users.numel(),), generator=g)
    u, it = torch.randn(10, 4, generator=g, dtype=D), torch.randn(6, 4, generator=g, dtype=D)
    st = adaptive_tau0(u, it, torch.stack([users, items]))
    assert (st.num_users, st.num_pairs) == (5, 10)


# -- schedules -----------------------------------------------------------------------------
def fake_trainer(loss, n_users=5, n_items=8):
    u, i, ei = clustered_embeddings(6, 2)
    return SimpleNamespace(
        loss=loss,
        model=lambda: (u.float(), i.float()),
        train_ei=ei,
        num_users=n_users,
        device=torch.device("cpu"),
    )


def test_adap_tau_accumulates_per_user_losses_and_sets_the_table():
    loss = get_loss("ssm", tau=0.1, negatives="sampled", include_positive=False)
    tr = fake_trainer(loss)
    sched = AdapTau(divisor=0.5)
    sched.on_epoch_start(tr, 1)
    tau0 = adaptive_tau0(*tr.model(), tr.train_ei, tau_min=0.05, tau_max=1.0).tau0
    assert loss.tau == pytest.approx(tau0)
    assert loss.record_unit_loss and loss.user_tau_scope == "negatives"
    assert torch.allclose(loss.user_tau_table, torch.full((5,), tau0))
    g = torch.Generator().manual_seed(0)
    seen = {u: [] for u in range(5)}
    for users in ([0, 1, 1, 3], [3, 3, 1, 0]):
        b = LossBatch(
            torch.tensor(users),
            torch.zeros(4, dtype=torch.long),
            torch.randn(4, 3, generator=g),
            torch.randn(4, 3, generator=g),
            neg_emb=torch.randn(4, 6, 3, generator=g),
        )
        value = loss(b)
        sched.on_batch_end(tr, b, value)
        unit = loss.per_row(b, tau=1.0)
        for r, u in enumerate(users):
            seen[u].append(float(unit[r]))
    row = {}
    sched.on_epoch_end(tr, 1, row)
    assert row["tau0"] == pytest.approx(tau0) and "tau_user_max" in row
    sched.on_epoch_start(tr, 2)
    valid = torch.tensor([bool(seen[u]) for u in range(5)])
    want_loss = torch.tensor([sum(v) / len(v) if v else 0.0 for v in seen.values()], dtype=D)
    assert torch.allclose(sched.user_loss[valid].double(), want_loss[valid], rtol=1e-5)
    assert torch.isnan(sched.user_loss[~valid]).all()
    want = per_user_temperature(want_loss, loss.tau, "mean", 0.5, valid)
    assert torch.allclose(sched.user_tau.double(), want, rtol=1e-5)
    assert loss.user_tau_table is sched.user_tau
    assert torch.allclose(sched.user_tau[~valid], torch.tensor(loss.tau))


def test_schedule_factory_and_errors():
    assert isinstance(get_temperature_schedule("adap-tau0"), AdapTau0)
    assert isinstance(get_temperature_schedule("ADAP-TAU", base=0.9, divisor=0.25), AdapTau)
    assert isinstance(get_temperature_schedule("fixed", tau=0.2), FixedTemperature)
    with pytest.raises(ConfigError, match="unknown temperature"):
        get_temperature_schedule("cosine")
    with pytest.raises(ConfigError, match="bad arguments"):
        get_temperature_schedule("adap-tau", bogus=1)
    with pytest.raises(ConfigError, match="scope"):
        AdapTau(scope="positives")
    with pytest.raises(ConfigError, match="temperature"):
        AdapTau0().on_epoch_start(fake_trainer(get_loss("mml")), 1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FixedTemperature(0.0), r"tau must be > 0, got 0\.0"),
        (lambda: FixedTemperature(float("nan")), "tau must be > 0, got nan"),
        (lambda: AdapTau0(quantile=1.0), r"quantile must be in \[0, 1\), got 1\.0"),
        (lambda: AdapTau0(quantile=-0.1), "quantile must be in"),
        (lambda: AdapTau0(warmup_epochs=-1), "warmup_epochs must be >= 0, got -1"),
        (lambda: AdapTau0(warmup_gap=float("nan")), "warmup_gap must be a finite number, got nan"),
        (lambda: AdapTau0(warmup_gap=float("inf")), "warmup_gap must be a finite number, got inf"),
        (lambda: AdapTau0(tau_min=0.5, tau_max=0.1), "need 0 < tau_min <= tau_max"),
        (lambda: AdapTau0(tau_min=0.0), "need 0 < tau_min <= tau_max"),
        (lambda: AdapTau(divisor=0), "divisor must be > 0, got 0"),
        (lambda: AdapTau(divisor=float("nan")), "divisor must be > 0, got nan"),
        (lambda: AdapTau(method="numpy"), "method must be 'torch' or 'scipy', got 'numpy'"),
        (lambda: AdapTau(base=1.0), "base must be 'mean' or a quantile in"),
        (lambda: AdapTau(base="median"), "base must be 'mean' or a quantile in"),
        (
            lambda: per_user_temperature(torch.ones(3, dtype=D), 0.1, method="numpy"),
            "method must be 'torch' or 'scipy'",
        ),
    ],
)
def test_schedule_settings_are_checked_by_name(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_adaptive_tau0_without_training_pairs_is_refused():
    emb = torch.randn(4, 3, dtype=D)
    with pytest.raises(ConfigError, match="no training pairs"):
        adaptive_tau0(emb, emb, torch.empty(2, 0, dtype=torch.long))
    loss = get_loss("ssm", tau=0.3)
    loss.user_tau_table = torch.ones(5)
    FixedTemperature(0.2).on_epoch_start(fake_trainer(loss), 1)
    assert loss.tau == 0.2 and loss.user_tau_table is None


def clustered_data(n_users=200, n_items=100, seed=0):
    from pyg_cf.data import from_dataframe

    g = torch.Generator().manual_seed(seed)
    users = torch.randint(n_users, (1500,), generator=g)
    half = n_items // 2
    items = torch.randint(half, (1500,), generator=g) + (users % 2) * half
    return from_dataframe(pd.DataFrame({"user": users.numpy(), "item": items.numpy()}), seed=0)


@pytest.mark.parametrize("schedule", ["adap-tau0", "adap-tau"])
@pytest.mark.parametrize("loss_name", ["ssm", "softmax", "bsl"])
def test_schedules_run_inside_the_trainer(schedule, loss_name):
    from pyg_cf.nn import GraphCF
    from pyg_cf.train import TrainConfig, Trainer

    data = clustered_data()
    model = GraphCF.from_data(data, "mf", embedding_dim=8)
    kw = {"negatives": "sampled", "num_negatives": 16} if loss_name != "softmax" else {}
    loss = get_loss(loss_name, **kw)
    sched = get_temperature_schedule(schedule, warmup_epochs=1)
    cfg = TrainConfig(epochs=3, batch_size=128, lr=0.05, patience=None, progress=False)
    with torch.no_grad():
        u0, i0 = model()
    tr = Trainer(model, data, loss, cfg, callbacks=[sched])
    hist = tr.fit()
    assert {"tau0", "mu_pos", "mu", "tau"} <= set(hist.columns)
    assert torch.isfinite(torch.tensor(hist["loss"].to_numpy())).all()
    # epoch 1 is the warm-up (gap 0.7); later epochs measure the gap
    assert sched.records[0]["tau0"] == pytest.approx(0.7 / sched.records[0]["log_ratio"])
    assert hist["tau0"].tolist() == pytest.approx([r["tau0"] for r in sched.records])
    assert hist["tau"].tolist() == pytest.approx(hist["tau0"].tolist())
    st = adaptive_tau0(u0, i0, tr.train_ei, gap=0.7, tau_min=0.05)
    assert sched.records[0]["tau0"] == pytest.approx(st.tau0)
    if schedule == "adap-tau":
        assert sched.user_tau.shape == (data["user"].num_nodes,)
        assert loss.user_tau_table is sched.user_tau
        assert (
            hist["tau_user_max"].iloc[-1] >= hist["tau0"].iloc[-1] >= hist["tau_user_min"].iloc[-1]
        )
        assert hist["tau_user_min"].iloc[-1] < hist["tau_user_max"].iloc[-1]


def test_cli_selects_the_schedule():
    import pyg_cf.__main__ as cli

    args = cli.build_parser().parse_args(
        [
            "train",
            "--loss",
            "ssm",
            "--temperature",
            "adap-tau",
            "--temperature-arg",
            "divisor=0.25",
            "--temperature-arg",
            "base=0.9",
        ]
    )
    assert args.temperature == "adap-tau"
    kw = cli._key_values(args.temperature_arg, "--temperature-arg")
    sched = get_temperature_schedule(args.temperature, **kw)
    assert isinstance(sched, AdapTau) and (sched.divisor, sched.base) == (0.25, 0.9)


def _cli_mf_adap_tau_run(tmp_path, dataset: str, args: str) -> dict:
    """``python -m pyg_cf train`` of MF + SSM (cosine, positive left out of the denominator)
    with Adap-τ on a bundled real data set, plus ``args``; returns its output JSON."""
    import json

    import pyg_cf.__main__ as cli
    from tests.conftest import data_dir

    if data_dir(dataset) is None:
        pytest.skip(f"{dataset} not bundled")
    out = tmp_path / "run.json"
    argv = f"train --dataset {dataset} --model mf --loss ssm --train-sim cos --test-sim cos"
    argv += " --loss-arg include_positive=false --temperature adap-tau --quiet " + args
    assert cli.main([*argv.split(), "--output", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_cli_adap_tau_smoke_run_on_ml1m(tmp_path):
    args = "--temperature-arg warmup_epochs=1 --max-steps 3 --epochs 2"
    hist = _cli_mf_adap_tau_run(tmp_path, "ml-1m", args)["history"]
    assert len(hist) == 2 and all("tau0" in r and "tau_user_max" in r for r in hist)


def test_cli_authors_adap_tau_regime_short_run_on_gowalla(tmp_path):
    """A short real-data version of the issue-4 proof run (examples/run_losses_proof.sh): the
    authors' per-user settings with 16 sets of shared negatives, on the bundled Gowalla."""
    import math

    args = "--loss-arg negatives=sampled --loss-arg num_negatives=64 --loss-arg shared_negatives=16"
    args += " --temperature-arg warmup_epochs=1 --temperature-arg base=0.9"
    args += " --temperature-arg divisor=0.25 --user-dropout 0.1"
    args += " --lr 1e-4 --max-steps 4 --epochs 3 --eval-every 3"
    run = _cli_mf_adap_tau_run(tmp_path, "gowalla", args)
    hist = run["history"]
    assert len(hist) == 3 and all(math.isfinite(r["loss"]) for r in hist)
    # epoch 1: warm-up tau0 from the assumed gap 0.7, every user at tau0 (no losses yet)
    assert hist[0]["tau_user_min"] == pytest.approx(hist[0]["tau0"])
    assert hist[0]["tau_user_max"] == pytest.approx(hist[0]["tau0"])
    for r in hist[1:]:  # per-user tau from the previous epoch's losses, clamped at tau0 / e
        assert r["tau_user_min"] >= r["tau0"] / math.e - 1e-6
        assert r["tau_user_min"] < r["tau_user_max"]
    assert 0 <= run["test"]["recall@20"] <= 1
