import math

import numpy as np
import pytest
import torch

from pyg_cf.data.synthetic import pareto_degrees, pareto_sample, power_law_bipartite
from pyg_cf.diagnostics.theory import (
    empirical_coefficients,
    expected_squared_norm,
    fit_theory,
    monte_carlo_check,
    neighbor_degrees,
    pareto_moment,
    pareto_shape_mle,
    simulate_propagation,
    theory_coefficients,
)
from pyg_cf.errors import ConfigError


def test_theory_coefficients_hand_checked():
    # alpha1 = 0: a = sigma^2, b = mu^2 whatever alpha
    assert theory_coefficients(2.0, 0.0, 1.5, 0.7) == pytest.approx((0.7, 2.25))
    # alpha = 2, alpha1 = 1: E d^-1 = 2/3, E d^-2 = 1/2 -> b = 4/9, a = 1/2 * 2 - 4/9
    a, b = theory_coefficients(2.0, 1.0, 1.0, 1.0)
    assert b == pytest.approx(4 / 9) and a == pytest.approx(1 - 4 / 9)
    # scale x_m: E d^-s gains x_m^-s
    a2, b2 = theory_coefficients(2.0, 1.0, 1.0, 1.0, x_min=4.0)
    assert b2 == pytest.approx(4 / 9 / 16) and a2 == pytest.approx(1 / 16 - 4 / 9 / 16)
    with pytest.raises(ConfigError, match="alpha must"):
        theory_coefficients(0.0, 0.5, 1.0, 1.0)
    with pytest.raises(ConfigError, match="sigma0_sq"):
        theory_coefficients(1.0, 0.5, 1.0, -1.0)


@pytest.mark.parametrize("alpha,s,x_min", [(1.5, 0.5, 1), (1.5, 1.0, 2), (2.5, -0.5, 3)])
def test_discrete_pareto_moments_match_a_rounded_down_sample(alpha, s, x_min):
    rng = np.random.default_rng(0)
    d = np.floor(x_min * (1 - rng.random(2_000_000)) ** (-1 / alpha))
    want = float((d ** (-s)).mean())
    assert pareto_moment(alpha, s, x_min, discrete=True) == pytest.approx(want, rel=3e-3)
    # the continuous formula is another law: off by several percent at small x_min
    cont = pareto_moment(alpha, s, x_min)
    assert cont == pytest.approx(alpha * x_min ** (-s) / (alpha + s))
    assert abs(cont / want - 1) > 0.03


def test_discrete_theory_needs_an_integer_scale():
    a, b = theory_coefficients(1.5, 1.0, 1.0, 1.0, x_min=1, discrete=True)
    m1, m2 = pareto_moment(1.5, 1.0, 1, True), pareto_moment(1.5, 2.0, 1, True)
    assert (a, b) == pytest.approx((2 * m2 - m1**2, m1**2))
    with pytest.raises(ConfigError, match=r"integer x_min, got 2\.5"):
        theory_coefficients(1.5, 1.0, 1.0, 1.0, x_min=2.5, discrete=True)
    with pytest.raises(ConfigError, match=r"integer x_min, got 1\.5"):
        pareto_shape_mle(np.array([2.0, 3.0, 9.0]), x_min=1.5, discrete=True)


def test_empirical_coefficients_hand_checked():
    # degrees 1 and 4, alpha1 = 0.5: m1 = (1 + 1/2) / 2, m2 = (1 + 1/4) / 2
    a, b = empirical_coefficients(np.array([1.0, 4.0]), 0.5, mu0=1.0, sigma0_sq=1.0)
    assert b == pytest.approx(0.75**2) and a == pytest.approx(0.625 * 2 - 0.75**2)
    assert empirical_coefficients(torch.tensor([3, 7]), 0.0, 2.0, 0.5) == pytest.approx((0.5, 4.0))
    with pytest.raises(ConfigError, match="positive"):
        empirical_coefficients(np.zeros(2), 0.5, 1.0, 1.0)


def test_expected_squared_norm():
    a, b = theory_coefficients(2.0, 1.0, 1.0, 1.0)
    got = expected_squared_norm(np.array([1.0, 4.0]), 0.5, 1.0, 2.0, 1.0, 1.0)
    assert got == pytest.approx([a + b, a + 4 * b])
    got = expected_squared_norm(torch.tensor([4.0]), 0.0, 1.0, 2.0, 1.0, 1.0)
    assert got == pytest.approx([4 * a + 16 * b])
    with pytest.raises(ConfigError, match="positive"):
        expected_squared_norm(np.array([0.0]), 0.5, 0.5, 2.0, 1.0, 1.0)


@pytest.mark.parametrize("num_bins", [None, 8])
@pytest.mark.parametrize("alpha0", [0.0, 0.5, 1.0])
def test_fit_theory_recovers_noise_free_coefficients(num_bins, alpha0):
    d = np.repeat(np.arange(1, 200), 3).astype(float)
    y = 0.3 * d ** (1 - 2 * alpha0) + 0.02 * d ** (2 - 2 * alpha0)
    fit = fit_theory(d, y, alpha0, num_bins=num_bins)
    assert fit.a == pytest.approx(0.3, rel=1e-6) and fit.b == pytest.approx(0.02, rel=1e-6)
    assert fit.rel_rmse < 1e-8
    assert fit.predict(np.array([10.0])) == pytest.approx(y[d == 10][:1])


def test_fit_theory_nonnegative_and_errors():
    d = np.arange(1, 50).astype(float)
    y = 2.0 - 0.01 * d  # would need b < 0 with alpha0 = 0.5 (basis 1, d)
    assert fit_theory(d, y, 0.5, None).b == 0.0
    assert fit_theory(d, y, 0.5, None, nonnegative=False).b == pytest.approx(-0.01)
    with pytest.raises(ConfigError, match="positive degree"):
        fit_theory(np.zeros(3), np.ones(3), 0.5)
    with pytest.raises(ConfigError, match="shape"):
        fit_theory(np.ones(3), np.ones(2), 0.5)


def test_pareto_shape_mle():
    assert pareto_shape_mle(np.array([1.0, math.e])) == pytest.approx(2.0)  # 2 / (0 + 1)
    assert pareto_shape_mle(np.array([0.5, 1.0, math.e]), x_min=1.0) == pytest.approx(2.0)
    gen = torch.Generator().manual_seed(0)
    assert pareto_shape_mle(pareto_sample(100_000, 1.7, 2.0, gen), 2.0) == pytest.approx(
        1.7, rel=0.02
    )
    # integer degrees: the continuous estimate is biased, the discrete one is not
    d = pareto_degrees(100_000, 1.2, min_degree=1, generator=gen)
    assert pareto_shape_mle(d, 1, discrete=True) == pytest.approx(1.2, rel=0.02)
    assert pareto_shape_mle(d, 1) > 1.4
    with pytest.raises(ConfigError, match="cannot estimate"):
        pareto_shape_mle(np.array([3.0, 3.0]))
    with pytest.raises(ConfigError, match="integer"):
        pareto_shape_mle(np.array([1.0, 2.5]), discrete=True)


def test_neighbor_degrees_and_simulation_hand_checked(tiny_data):
    # train: u0 {0, 1}, u1 {1, 2, 3}, u2 {0}, u3 {2, 3}; user degrees 2, 3, 1, 2
    assert neighbor_degrees(tiny_data, "item").tolist() == [2, 2, 3, 3, 3, 1, 2, 2]
    assert neighbor_degrees(tiny_data, "user").tolist() == [2, 2, 2, 2, 2, 2, 2, 2]
    # sigma0 = 0, mu0 = 1: q'_i = sum_u 1 / (n^a0 d_u^a1) exactly
    sim = simulate_propagation(tiny_data, 0.5, 0.5, mu0=1.0, sigma0=0.0, dim=3)
    q0 = (1 / math.sqrt(2)) * (1 / math.sqrt(2) + 1.0)  # item 0: users 0 (d=2), 2 (d=1)
    q1 = (1 / math.sqrt(2)) * (1 / math.sqrt(2) + 1 / math.sqrt(3))
    assert sim["sq_norm"].tolist() == pytest.approx([q0**2, q1**2, q1**2, q1**2, 0.0])
    assert sim["degree"].tolist() == [2, 2, 2, 2, 0]
    users = simulate_propagation(tiny_data, 1.0, 0.0, mu0=2.0, sigma0=0.0, node_type="user")
    assert users["sq_norm"].tolist() == pytest.approx([4.0, 4.0, 4.0, 4.0])  # mean of 2s
    with pytest.raises(ConfigError, match="node_type"):
        simulate_propagation(tiny_data, 0.5, 0.5, node_type="both")


@pytest.fixture(scope="module")
def power_law_graph():
    # user degrees: discrete Pareto(2.5) from 30 -> seen from items, shape 1.5
    return power_law_bipartite(
        10_000, 20_000, user_alpha=2.5, item_alpha=1.2, min_user_degree=30, seed=0
    )


@pytest.mark.parametrize(
    "alpha0,alpha1",
    [(0.0, 0.0), (0.5, 0.5), (1.0, 0.0), (0.5, 0.0), (0.0, 1.0), (0.25, 0.75), (1.0, 0.5)],
)
def test_monte_carlo_matches_closed_form(power_law_graph, alpha0, alpha1):
    check = monte_carlo_check(power_law_graph, alpha0, alpha1, mu0=1.0, sigma0=1.0, dim=32)
    assert check.attrs["alpha"] == pytest.approx(1.5, abs=0.1)
    assert check.attrs["x_min"] == 30.0
    well = check[check["count"] >= 50]  # bins with enough items for a stable mean
    assert len(well) >= 7  # the curve spans degrees ~2 .. ~600
    assert well["degree_mean"].max() / well["degree_mean"].min() > 100
    # the rounded-down law's moments at the fitted shape (1.52 here): within about 1.5
    # points of the empirical moments, which carry the simulation's own noise
    assert np.abs(well["rel_error"]).max() < 0.07
    # the same structure with the empirical moments of the neighbour degrees (no Pareto law)
    assert np.abs(well["rel_error_empirical"]).max() < 0.06
    # the least-squares fit of the simulation lands on the closed-form b (the mean term)
    if alpha0 < 1.0:  # with alpha0 = 1 the b-term is flat and a, b trade off
        assert check.attrs["fit_b"] == pytest.approx(check.attrs["b"], rel=0.1)


@pytest.mark.parametrize("sigma0", [2.0, 0.5])
def test_monte_carlo_at_small_degrees_and_other_init_scales(sigma0):
    """Neighbour degrees from 2 up: the rounded-down law's moments matter (the continuous
    ones were 15-34 % off here); sigma0 != 1 tells sigma0 from its square."""
    graph = power_law_bipartite(10_000, 20_000, user_alpha=2.5, min_user_degree=2, seed=0)
    for alpha1 in (0.5, 1.0):
        check = monte_carlo_check(graph, 0.5, alpha1, mu0=1.0, sigma0=sigma0, dim=32)
        assert check.attrs["x_min"] == 2.0
        well = check[check["count"] >= 50]
        assert len(well) >= 5
        assert np.abs(well["rel_error"]).max() < 0.09
        assert np.abs(well["rel_error_empirical"]).max() < 0.06


def test_monte_carlo_detects_wrong_alpha0(power_law_graph):
    # the simulated curve follows alpha0 = 0.5, not the closed form of alpha0 = 0.75
    sim = simulate_propagation(power_law_graph, 0.5, 0.5, dim=32)
    sim = sim[sim["degree"] > 0]
    alpha = pareto_shape_mle(neighbor_degrees(power_law_graph), 30, discrete=True)
    wrong = expected_squared_norm(sim["degree"].to_numpy(), 0.75, 0.5, alpha, 1.0, 1.0, 30)
    big = sim["degree"].to_numpy() >= 100
    assert np.median(sim["sq_norm"].to_numpy()[big] / wrong[big]) > 2.0


@pytest.mark.parametrize("num_bins", [20, None])
def test_fit_theory_needs_two_distinct_degrees(num_bins):
    # one degree cannot separate a from b (any split fits): a clear error, not a made-up fit
    with pytest.raises(ConfigError, match="two or more distinct"):
        fit_theory(np.full(3, 5.0), np.array([1.0, 2.0, 3.0]), 0.5, num_bins)
    with pytest.raises(ConfigError, match="alpha0"):
        fit_theory(np.array([1.0, 2.0, 4.0]), np.ones(3), float("nan"), num_bins)
    # a non-finite degree is left out like a non-finite value
    fit = fit_theory(
        np.array([1.0, 2.0, 4.0, np.inf]), np.array([1.0, 2.0, 4.0, 1.0]), 0.5, num_bins
    )
    assert fit.num_points == 3


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize(("alpha", "s", "x_min"), [(0.5, -1.0, 1), (1.0, -1.0, 1), (1.0, -2.0, 2)])
def test_an_infinite_pareto_moment_is_refused_not_returned_negative(alpha, s, x_min, discrete):
    """alpha + s <= 0: the moment diverges; it came back negative or as ZeroDivisionError."""
    with pytest.raises(ConfigError, match="infinite"):
        pareto_moment(alpha, s, x_min, discrete=discrete)


@pytest.mark.parametrize(("alpha", "x_min"), [(0.0, 1), (-1.0, 1), (1.5, 0)])
def test_pareto_moment_refuses_a_shape_or_scale_that_is_no_pareto_law(alpha, x_min):
    with pytest.raises(ConfigError, match="shape alpha > 0 and a scale x_min > 0"):
        pareto_moment(alpha, 0.5, x_min)


def test_a_discrete_pareto_moment_needs_an_integer_scale():
    """k = x_m + j is the rounded-down law's support only for an integer x_m (1.5 gave
    0.5036 where a rounded-down sample gives 0.516)."""
    with pytest.raises(ConfigError, match=r"integer scale x_min, got 1\.5"):
        pareto_moment(1.5, 0.5, 1.5, discrete=True)
    assert pareto_moment(1.5, 0.5, 2.0, discrete=True) == pareto_moment(1.5, 0.5, 2, True)
    assert pareto_moment(1.5, 0.5, 1.5) == pytest.approx(1.5 * 1.5**-0.5 / 2.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: theory_coefficients(0.5, -0.3, 0.1, 1.0), "alpha \\+ 2 \\* alpha1 must be > 0"),
        (lambda: theory_coefficients(2.0, 0.5, 0.1, 1.0, x_min=0.0), "x_min must be > 0"),
        (lambda: empirical_coefficients(np.array([1.0, 2.0]), 0.5, 0.1, -1.0), "sigma0_sq"),
        (lambda: pareto_shape_mle(np.array([])), "values is empty"),
        (lambda: pareto_shape_mle(np.array([1.0, 2.0]), x_min=0.0), "x_min must be > 0"),
    ],
)
def test_theory_settings_out_of_range_are_named(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_simulation_and_neighbor_degrees_name_a_bad_node_type_or_dim(tiny_data):
    with pytest.raises(ConfigError, match="node_type must be 'user' or 'item', got 'users'"):
        neighbor_degrees(tiny_data, "users")
    with pytest.raises(ConfigError, match="dim must be >= 1, got 0"):
        simulate_propagation(tiny_data, 0.5, 0.5, dim=0)
