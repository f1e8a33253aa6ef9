import itertools
import math

import numpy as np
import pytest
import torch

from pyg_cf.diagnostics.binning import binned_summary, fit_loglog_slope, log_degree_bins
from pyg_cf.errors import ConfigError


def test_log_degree_bins():
    edges = log_degree_bins(torch.tensor([0, 1, 10, 100]), 2)
    assert edges[0] == 1.0 and edges[1] == pytest.approx(10.0) and edges[2] > 100.0
    assert edges[2] == pytest.approx(100.0)
    one = log_degree_bins(np.array([3, 3, 3]), 5)
    assert len(one) == 2 and one[0] == 3.0 < one[1]
    with pytest.raises(ConfigError, match="positive"):
        log_degree_bins(np.zeros(3))
    with pytest.raises(ConfigError, match="num_bins"):
        log_degree_bins(np.ones(3), 0)


def test_binned_summary_hand_checked():
    deg = np.array([0, 1, 2, 10, 20, 100])
    val = np.array([9.0, 1.0, 3.0, 5.0, 7.0, 11.0])
    b = binned_summary(deg, val, edges=np.array([1.0, 5.0, 50.0, 101.0]))
    assert b["count"].tolist() == [2, 2, 1]  # degree 0 left out
    assert b["mean"].tolist() == [2.0, 6.0, 11.0]
    assert b["median"].tolist() == [2.0, 6.0, 11.0]
    assert b["q25"].iloc[0] == pytest.approx(1.5) and b["q75"].iloc[0] == pytest.approx(2.5)
    assert b["degree_mean"].iloc[1] == pytest.approx(math.sqrt(200))
    with pytest.raises(ConfigError, match="shape"):
        binned_summary(deg, val[:3])


def test_binned_summary_skips_empty_bins():
    b = binned_summary(np.array([1, 1, 100]), np.array([1.0, 2.0, 3.0]), num_bins=4)
    assert b["count"].tolist() == [2, 1]


@pytest.mark.parametrize("binned", [False, True])
def test_fit_loglog_slope_recovers_power_law(binned):
    d = np.arange(1, 500)
    fit = fit_loglog_slope(d, 3.0 * d**0.5, binned=binned)
    assert fit.slope == pytest.approx(0.5, abs=1e-3 if binned else 1e-9)
    if not binned:
        assert fit.intercept == pytest.approx(math.log(3.0))
        assert fit.r2 == pytest.approx(1.0)
        assert fit.num_points == 499
    assert fit.predict(np.array([4.0]))[0] == pytest.approx(6.0, rel=1e-2)


def test_fit_loglog_slope_flat_and_errors():
    fit = fit_loglog_slope(np.array([1, 2, 4, 8]), np.array([2.0, 2.0, 2.0, 2.0]))
    assert fit.slope == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="two or more"):
        fit_loglog_slope(np.array([5, 5]), np.array([1.0, 2.0]))
    with pytest.raises(ConfigError, match="shape"):
        fit_loglog_slope(np.array([1, 2]), np.array([1.0]))


def test_fit_loglog_slope_leaves_out_non_finite_degrees():
    fit = fit_loglog_slope(np.array([1.0, 2.0, 4.0, np.inf]), np.array([1.0, 2.0, 4.0, 3.0]))
    assert fit.num_points == 3 and fit.slope == pytest.approx(1.0)


def test_infinite_degrees_are_left_out_of_the_bins():
    # one inf used to make a last bin [1, inf) that swallowed every node
    d, y = np.array([1.0, 2.0, 4.0, np.inf]), np.array([1.0, 2.0, 4.0, 3.0])
    edges = log_degree_bins(d, 2)
    assert np.isfinite(edges).all() and edges[0] == 1.0 and edges[-1] == pytest.approx(4.0)
    b = binned_summary(d, y, 2)
    assert b["count"].tolist() == [1, 2] and b["mean"].tolist() == [1.0, 3.0]
    assert np.isfinite(b["degree_hi"]).all()
    fit = fit_loglog_slope(d, y, binned=True, num_bins=2)
    assert fit.num_points == 2 and math.isfinite(fit.slope)
    with pytest.raises(ConfigError, match="positive, finite"):
        log_degree_bins(np.array([0.0, np.inf, np.nan]))


@pytest.mark.parametrize(("hi", "bins"), [(1024, 10), (64, 6), (81, 4)])
def test_exact_integer_edges_put_their_degree_in_the_upper_bin(hi, bins):
    """The documented edges d_min (d_max/d_min)^(j/B) are exact integers here; geomspace
    landed some a rounding step above, so that degree fell into the bin below."""
    d = np.arange(1, hi + 1, dtype=float)
    edges = log_degree_bins(d, bins)
    exact = hi ** (np.arange(bins + 1) / bins)
    ints = np.isclose(exact, np.round(exact), rtol=1e-12)
    assert np.array_equal(edges[:-1][ints[:-1]], np.round(exact[:-1][ints[:-1]]))
    exact[ints] = np.round(exact[ints])
    want = [int(((d >= lo) & (d < up)).sum()) for lo, up in itertools.pairwise(exact)]
    want[-1] += 1  # the last bin holds d_max
    b = binned_summary(d, d, bins)
    assert b["count"].tolist() == [w for w in want if w]


@pytest.mark.parametrize("y", [0.1, 0.3, 7.0])
def test_a_constant_value_fits_exactly_whatever_the_rounding(y):
    """A constant y leaves ~1e-29 of rounding in the total sum of squares: R² was an
    arbitrary number (0.24, -64.6) instead of the exact fit's 1."""
    d = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
    fit = fit_loglog_slope(d, np.full(6, y))
    assert fit.slope == pytest.approx(0.0, abs=1e-12)
    assert fit.r2 == 1.0
