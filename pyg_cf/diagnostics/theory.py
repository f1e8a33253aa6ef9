r"""The propagation-magnitude theory of the sampled-softmax paper (Wu et al., eqs. 24–30).

One hop of the :math:`(\alpha_0, \alpha_1)` layer gives an item

.. math::
    \mathbf{q}'_i = \sum_{u \in \mathcal{P}_i}
        \frac{\mathbf{p}_u}{|\mathcal{P}_i|^{\alpha_0} |\mathcal{P}_u|^{\alpha_1}}.

With the entries of :math:`\mathbf{p}_u` independent of mean :math:`\mu_0` and variance
:math:`\sigma_0^2`, and the neighbours' degrees :math:`|\mathcal{P}_u|` independent draws of
a Pareto law of shape :math:`\alpha` and scale :math:`x_m` (so that
:math:`\mathbb{E}|\mathcal{P}_u|^{-s} = \alpha x_m^{-s} / (\alpha + s)`), each coordinate
satisfies

.. math::
    \mathbb{E}(q'^2_i) = a\,|\mathcal{P}_i|^{1-2\alpha_0} + b\,|\mathcal{P}_i|^{2-2\alpha_0},

.. math::
    a = \frac{\alpha x_m^{-2\alpha_1}}{\alpha+2\alpha_1}(\sigma_0^2+\mu_0^2)
        - \Bigl(\frac{\alpha x_m^{-\alpha_1}}{\alpha+\alpha_1}\Bigr)^2 \mu_0^2,
    \qquad
    b = \Bigl(\frac{\alpha x_m^{-\alpha_1}}{\alpha+\alpha_1}\Bigr)^2 \mu_0^2

(the paper takes :math:`x_m = 1`). :math:`a` is the variance and :math:`b` the squared mean
of one summand :math:`p_u / |\mathcal{P}_u|^{\alpha_1}`, so both are non-negative. For users
(user-side propagation) swap the roles of users and items.

In a real graph, the degree of the user at the end of a random edge is size-biased: if user
degrees are Pareto of shape :math:`\alpha_u`, the neighbours of an item have shape
:math:`\alpha_u - 1`. :func:`neighbor_degrees` returns exactly these degrees, so
:func:`pareto_shape_mle` on them estimates the :math:`\alpha` of the formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar, nnls
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_cf.data.graph import degrees, train_edges
from pyg_cf.diagnostics.binning import _np, binned_summary, log_degree_bins
from pyg_cf.errors import ConfigError

__all__ = [
    "TheoryFit",
    "empirical_coefficients",
    "expected_squared_norm",
    "fit_theory",
    "monte_carlo_check",
    "neighbor_degrees",
    "pareto_moment",
    "pareto_shape_mle",
    "simulate_propagation",
    "theory_coefficients",
]


_DISCRETE_TERMS = 1_000_000  # exact terms of a discrete moment; the rest in closed form


def pareto_moment(alpha: float, s: float, x_min: float = 1.0, discrete: bool = False) -> float:
    r""":math:`\mathbb{E}\,D^{-s}` of a Pareto law of shape :math:`\alpha` and scale
    :math:`x_m` (needs :math:`\alpha + s > 0`).

    Continuous: :math:`\alpha x_m^{-s} / (\alpha + s)`. Rounded down (``discrete=True``,
    the law :func:`pareto_shape_mle` fits to integer degrees, integer :math:`x_m`):
    :math:`\sum_{k \ge x_m} \bigl((x_m/k)^{\alpha} - (x_m/(k+1))^{\alpha}\bigr) k^{-s}`,
    summed exactly over the first million values and in closed form beyond, where
    :math:`\lfloor X \rfloor^{-s}` and :math:`X^{-s}` agree to :math:`O(10^{-6})`. At small
    :math:`x_m` the two laws differ by tens of percent (degree 1 and 2 carry most of the
    mass), at :math:`x_m = 30` by about one.

    Raises:
        ConfigError: if :math:`\alpha \le 0`, :math:`x_m \le 0`,
            :math:`\alpha + s \le 0` (the moment is infinite there), or ``discrete``
            with a non-integer :math:`x_m`.
    """
    if not (alpha > 0 and x_min > 0 and math.isfinite(alpha) and math.isfinite(x_min)):
        raise ConfigError(f"need a shape alpha > 0 and a scale x_min > 0, got {alpha}, {x_min}")
    if not alpha + s > 0:
        raise ConfigError(
            f"E D^(-s) is infinite for alpha + s <= 0 (alpha {alpha}, s {s}): the Pareto law's "
            "tail is too heavy"
        )
    if not discrete:
        return alpha * x_min ** (-s) / (alpha + s)
    if x_min != int(x_min):  # k = x_m + j would not be the law's integer support
        raise ConfigError(f"discrete=True needs an integer scale x_min, got {x_min}")
    k = x_min + np.arange(_DISCRETE_TERMS, dtype=np.float64)
    mass = (x_min / k) ** alpha - (x_min / (k + 1.0)) ** alpha
    end = x_min + _DISCRETE_TERMS  # P(D >= end) = (x_m / end)^alpha, X^-s beyond it
    tail = (x_min / end) ** alpha * alpha * end ** (-s) / (alpha + s)
    return float((mass * k ** (-s)).sum() + tail)


def theory_coefficients(
    alpha: float,
    alpha1: float,
    mu0: float,
    sigma0_sq: float,
    x_min: float = 1.0,
    discrete: bool = False,
) -> tuple[float, float]:
    r"""The coefficients :math:`(a, b)` of :func:`expected_squared_norm`.

    Args:
        alpha: Pareto shape :math:`\alpha > 0` of the neighbours' degrees.
        alpha1: Source-degree exponent :math:`\alpha_1` (with :math:`\alpha + 2\alpha_1 > 0`).
        mu0: Mean :math:`\mu_0` of an initial embedding entry.
        sigma0_sq: Variance :math:`\sigma_0^2 \ge 0` of an initial embedding entry.
        x_min: Pareto scale :math:`x_m` (smallest degree).
        discrete: The degrees follow the rounded-down law (integer ``x_min``), as the shape
            that :func:`pareto_shape_mle` fits with ``discrete=True``: its moments
            (:func:`pareto_moment`) replace the continuous ones.
    """
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0, got {alpha}")
    if not (alpha + alpha1 > 0 and alpha + 2 * alpha1 > 0):
        raise ConfigError(f"alpha + 2 * alpha1 must be > 0, got alpha={alpha}, alpha1={alpha1}")
    if sigma0_sq < 0:
        raise ConfigError(f"sigma0_sq must be >= 0, got {sigma0_sq}")
    if not x_min > 0:
        raise ConfigError(f"x_min must be > 0, got {x_min}")
    if discrete and x_min != int(x_min):
        raise ConfigError(f"discrete=True needs an integer x_min, got {x_min}")
    m1 = pareto_moment(alpha, alpha1, x_min, discrete)  # E |P_u|^-alpha1
    m2 = pareto_moment(alpha, 2 * alpha1, x_min, discrete)  # E |P_u|^-2 alpha1
    b = m1**2 * mu0**2
    a = m2 * (sigma0_sq + mu0**2) - b
    return float(a), float(b)


def empirical_coefficients(
    neighbor_degree: Tensor | np.ndarray, alpha1: float, mu0: float, sigma0_sq: float
) -> tuple[float, float]:
    r""":math:`(a, b)` of :func:`theory_coefficients` with the Pareto moments replaced by the
    empirical ones of the given neighbour degrees (:func:`neighbor_degrees`):
    :math:`m_s = \operatorname{mean}_e d_e^{-s}`, :math:`b = m_{\alpha_1}^2 \mu_0^2`,
    :math:`a = m_{2\alpha_1}(\sigma_0^2 + \mu_0^2) - b`. This keeps the structure of the
    theory (independent neighbour degrees) without assuming their law.
    """
    d = _np(neighbor_degree)
    d = d[d > 0]
    if d.size == 0:
        raise ConfigError("neighbor_degree has no positive entries")
    if sigma0_sq < 0:
        raise ConfigError(f"sigma0_sq must be >= 0, got {sigma0_sq}")
    m1, m2 = float((d**-alpha1).mean()), float((d ** (-2 * alpha1)).mean())
    b = m1**2 * mu0**2
    return m2 * (sigma0_sq + mu0**2) - b, b


def _basis(degree: np.ndarray, alpha0: float) -> np.ndarray:
    return np.stack([degree ** (1.0 - 2.0 * alpha0), degree ** (2.0 - 2.0 * alpha0)], axis=1)


def expected_squared_norm(
    degree: Tensor | np.ndarray | float,
    alpha0: float,
    alpha1: float,
    alpha: float,
    mu0: float,
    sigma0_sq: float,
    x_min: float = 1.0,
    discrete: bool = False,
) -> np.ndarray:
    r""":math:`\mathbb{E}(q'^2) = a|\mathcal{P}_i|^{1-2\alpha_0} + b|\mathcal{P}_i|^{2-2\alpha_0}`
    per embedding coordinate, with :math:`(a, b)` from :func:`theory_coefficients`.

    Args:
        degree: Degrees :math:`|\mathcal{P}_i| > 0` of the propagated nodes.
        alpha0: Target-degree exponent :math:`\alpha_0`.
        alpha1: Source-degree exponent :math:`\alpha_1`.
        alpha: Pareto shape of the neighbours' degrees.
        mu0: Mean of an initial embedding entry.
        sigma0_sq: Variance of an initial embedding entry.
        x_min: Pareto scale.
        discrete: Rounded-down Pareto degrees (see :func:`theory_coefficients`).

    Returns:
        ``float64`` array shaped like ``degree`` (multiply by the dimension for
        :math:`\mathbb{E}\|\mathbf{q}'\|^2`).
    """
    a, b = theory_coefficients(alpha, alpha1, mu0, sigma0_sq, x_min, discrete)
    d = np.asarray(_np(degree) if isinstance(degree, Tensor) else degree, dtype=np.float64)
    if (d <= 0).any():
        raise ConfigError("degree must be positive (a node without neighbours has q' = 0)")
    return a * d ** (1.0 - 2.0 * alpha0) + b * d ** (2.0 - 2.0 * alpha0)


@dataclass(frozen=True)
class TheoryFit:
    r"""Fitted :math:`\hat{a}\,d^{1-2\alpha_0} + \hat{b}\,d^{2-2\alpha_0}`.

    Attributes:
        a: :math:`\hat{a}`.
        b: :math:`\hat{b}`.
        alpha0: The :math:`\alpha_0` of the basis.
        rel_rmse: Root-mean-square relative error of the fit over the fitted points.
        num_points: Number of fitted points (bins or nodes).
    """

    a: float
    b: float
    alpha0: float
    rel_rmse: float
    num_points: int

    def predict(self, degree: Tensor | np.ndarray | float) -> np.ndarray:
        """The fitted curve at ``degree``."""
        d = np.atleast_1d(np.asarray(_np(degree) if isinstance(degree, Tensor) else degree))
        return _basis(d.astype(np.float64), self.alpha0) @ np.array([self.a, self.b])


def fit_theory(
    degree: Tensor | np.ndarray | pd.Series,
    sq_norm: Tensor | np.ndarray | pd.Series,
    alpha0: float,
    num_bins: int | None = 20,
    nonnegative: bool = True,
) -> TheoryFit:
    r"""Least-squares fit of :math:`(a, b)` in
    :math:`y \approx a\,d^{1-2\alpha_0} + b\,d^{2-2\alpha_0}` to measured squared norms.

    With ``num_bins`` the nodes are first grouped into log-spaced degree bins; the model is
    linear in :math:`(a, b)`, so the bin mean of :math:`y` is fitted by the bin means of the
    two basis functions, and each bin's residual is divided by its mean :math:`\bar y`
    (relative least squares), so that every degree range counts alike rather than the
    thousands of low-degree nodes. With ``num_bins=None`` every node is one point
    (ordinary least squares).

    Args:
        degree: ``[N]`` degrees (nodes of degree 0 are left out).
        sq_norm: ``[N]`` measured squared norms (or per-coordinate squares).
        alpha0: The :math:`\alpha_0` of the model's propagation.
        num_bins: Number of degree bins, or ``None`` to fit nodes.
        nonnegative: Constrain :math:`a, b \ge 0` (the theory's signs; non-negative least
            squares).
    """
    d, y = _np(degree), _np(sq_norm)
    if d.shape != y.shape:
        raise ConfigError(f"degree and sq_norm differ in shape: {d.shape} vs {y.shape}")
    if not np.isfinite(alpha0):
        raise ConfigError(f"alpha0 must be a finite number, got {alpha0}")
    keep = (d > 0) & np.isfinite(d) & np.isfinite(y)
    d, y = d[keep], y[keep]
    if d.size == 0:
        raise ConfigError("no node with a positive degree to fit")
    basis = _basis(d, alpha0)
    if num_bins is not None:
        edges = log_degree_bins(d, num_bins)
        idx = np.searchsorted(edges, d, side="right") - 1
        nb = len(edges) - 1
        cnt = np.bincount(idx, minlength=nb).astype(np.float64)
        ok = cnt > 0
        ybar = np.bincount(idx, y, nb)[ok] / cnt[ok]
        fbar = np.stack([np.bincount(idx, basis[:, j], nb)[ok] / cnt[ok] for j in range(2)], 1)
        pos = ybar > 0
        y, basis = ybar[pos], fbar[pos]
        w = 1.0 / y
    else:
        w = np.ones_like(y)
    if y.size == 0:
        raise ConfigError("no positive squared norm to fit")
    if y.size < 2 or np.ptp(basis[:, 1] / basis[:, 0]) == 0:
        # d^(2-2 alpha0) / d^(1-2 alpha0) = d: one distinct degree cannot separate a from b
        raise ConfigError(
            "need points at two or more distinct positive degrees to fit (a, b), got "
            f"{y.size} point(s) at one degree"
        )
    A, t = basis * w[:, None], y * w
    if nonnegative:
        coef, _ = nnls(A, t)
    else:
        coef = np.linalg.lstsq(A, t, rcond=None)[0]
    pred = basis @ coef
    rel = (pred - y) / np.where(y != 0, np.abs(y), 1.0)
    return TheoryFit(
        float(coef[0]), float(coef[1]), float(alpha0), float(np.sqrt((rel**2).mean())), y.size
    )


def pareto_shape_mle(
    values: Tensor | np.ndarray | pd.Series, x_min: float | None = None, discrete: bool = False
) -> float:
    r"""Maximum-likelihood Pareto shape of the values at or above ``x_min``.

    Continuous law (:math:`\Pr[X \ge x] = (x_{\min}/x)^{\alpha}`):

    .. math::
        \hat{\alpha} = \frac{n}{\sum_{k=1}^{n} \ln(x_k / x_{\min})}.

    Integer data (``discrete=True``), read as Pareto values rounded down,
    :math:`\Pr[D \ge k] = (x_{\min}/k)^{\alpha}` for integers :math:`k \ge x_{\min}`: the
    likelihood :math:`\prod_k \bigl((x_{\min}/k)^{\alpha} - (x_{\min}/(k+1))^{\alpha}\bigr)`
    is maximized numerically (treating integer degrees as continuous overestimates
    :math:`\alpha`, much so when many degrees equal :math:`x_{\min}`).

    Args:
        values: Samples (e.g. degrees, or :func:`neighbor_degrees`).
        x_min: Lower end of the fitted tail (``None``: the smallest value).
        discrete: Integer data (rounded-down Pareto law).
    """
    v = _np(values)
    v = v[np.isfinite(v)]
    if x_min is None:
        if v.size == 0:
            raise ConfigError("values is empty")
        x_min = float(v.min())
    if not x_min > 0:
        raise ConfigError(f"x_min must be > 0, got {x_min}")
    v = v[v >= x_min]
    if v.size == 0 or float(v.max()) <= x_min:
        raise ConfigError(
            f"cannot estimate a Pareto shape: {v.size} value(s) >= x_min={x_min}, "
            "none of them above it"
        )
    if not discrete:
        return v.size / float(np.log(v / x_min).sum())
    if (v != np.floor(v)).any():
        raise ConfigError("discrete=True needs integer values")
    if x_min != int(x_min):  # the likelihood below is normalised for integer x_min only
        raise ConfigError(f"discrete=True needs an integer x_min, got {x_min}")
    k, cnt = np.unique(v, return_counts=True)
    lk, lk1 = np.log(x_min / k), np.log(x_min / (k + 1.0))

    def nll(a: float) -> float:
        # log((m/k)^a - (m/(k+1))^a) = a*lk + log1p(-exp(a*(lk1 - lk)))
        return -float((cnt * (a * lk + np.log1p(-np.exp(a * (lk1 - lk))))).sum())

    res = minimize_scalar(nll, bounds=(1e-4, 100.0), method="bounded", options={"xatol": 1e-7})
    return float(res.x)


def neighbor_degrees(data: HeteroData, node_type: str = "item") -> Tensor:
    r"""Degrees of the neighbours that propagation into ``node_type`` averages over: for
    every training edge, the degree of its endpoint on the *other* side (the users'
    :math:`|\mathcal{P}_u|` for ``'item'``). Their law is the :math:`\alpha` of
    :func:`theory_coefficients`.

    Returns:
        ``[E]`` ``int64`` degrees.
    """
    ei = train_edges(data)
    du, di = degrees(data)
    if node_type == "item":
        return du[ei[0]]
    if node_type == "user":
        return di[ei[1]]
    raise ConfigError(f"node_type must be 'user' or 'item', got {node_type!r}")


@torch.no_grad()
def simulate_propagation(
    data: HeteroData,
    alpha0: float,
    alpha1: float,
    mu0: float = 1.0,
    sigma0: float = 1.0,
    dim: int = 32,
    node_type: str = "item",
    seed: int = 0,
) -> pd.DataFrame:
    r"""One hop of :class:`~pyg_cf.nn.BipartiteNormConv` over ``data``'s training graph
    from random Gaussian embeddings :math:`\mathcal{N}(\mu_0, \sigma_0^2)`: each target
    node's squared embedding per coordinate, :math:`\|\mathbf{q}'_i\|^2 / d`.

    Args:
        data: A pyg-cf data object.
        alpha0: Target-degree exponent.
        alpha1: Source-degree exponent.
        mu0: Mean of the initial entries.
        sigma0: Standard deviation of the initial entries.
        dim: Embedding dimension :math:`d` (more: less Monte-Carlo noise).
        node_type: The propagated side, ``'item'`` (users → items) or ``'user'``.
        seed: Seed of the initial embeddings.

    Returns:
        One row per target node: ``node``, ``degree``, ``sq_norm`` (per coordinate).
    """
    from pyg_cf.nn.conv import BipartiteNormConv

    if node_type not in ("user", "item"):
        raise ConfigError(f"node_type must be 'user' or 'item', got {node_type!r}")
    if dim < 1:
        raise ConfigError(f"dim must be >= 1, got {dim}")
    ei = train_edges(data)
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    du, di = degrees(data)
    if node_type == "item":
        n_src, n_dst, deg = nu, ni, di
    else:
        ei, n_src, n_dst, deg = ei.flip(0), ni, nu, du
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_src, dim, generator=gen, dtype=torch.float64) * sigma0 + mu0
    out = BipartiteNormConv(alpha0, alpha1)((x.to(ei.device), None), ei, size=(n_src, n_dst))
    return pd.DataFrame(
        {
            "node": np.arange(n_dst),
            "degree": deg.cpu().numpy(),
            "sq_norm": out.pow(2).mean(1).cpu().numpy(),
        }
    )


def monte_carlo_check(
    data: HeteroData,
    alpha0: float,
    alpha1: float,
    mu0: float = 1.0,
    sigma0: float = 1.0,
    dim: int = 32,
    node_type: str = "item",
    num_bins: int = 12,
    x_min: float | None = None,
    discrete: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    r"""Compare the closed form with a simulation on ``data``'s graph.

    Propagates random embeddings once (:func:`simulate_propagation`), estimates the
    Pareto shape :math:`\hat\alpha` of :func:`neighbor_degrees` (:func:`pareto_shape_mle`,
    with :math:`x_m` their smallest value unless given), and reports per log-spaced degree
    bin the measured mean of :math:`q'^2` beside :func:`expected_squared_norm` averaged over
    the bin's nodes.

    Args:
        data: A pyg-cf data object (e.g. :func:`pyg_cf.data.synthetic.power_law_bipartite`).
        alpha0: Target-degree exponent.
        alpha1: Source-degree exponent.
        mu0: Mean of the initial entries.
        sigma0: Standard deviation of the initial entries.
        dim: Embedding dimension of the simulation.
        node_type: Propagated side.
        num_bins: Number of degree bins.
        x_min: Pareto scale used both for the fit and the closed form.
        discrete: Fit the integer (rounded-down) Pareto law in :func:`pareto_shape_mle`
            and take the closed form's moments from that law (:func:`pareto_moment`).
        seed: Seed of the simulation.

    Returns:
        One row per non-empty bin with ``degree_lo``, ``degree_hi``, ``degree_mean``,
        ``count``, ``measured``, ``theory`` and ``rel_error``
        (``measured / theory - 1``), and ``theory_empirical`` / ``rel_error_empirical``
        for the closed form with the empirical moments of the neighbour degrees
        (:func:`empirical_coefficients`: no Pareto assumption); ``df.attrs`` holds
        ``alpha`` (:math:`\hat\alpha`), ``x_min``, ``a``, ``b`` (closed form) and
        ``fit_a``, ``fit_b`` (:func:`fit_theory` of the simulated squared norms).
    """
    sim = simulate_propagation(data, alpha0, alpha1, mu0, sigma0, dim, node_type, seed)
    nd = neighbor_degrees(data, node_type)
    if x_min is None:
        x_min = float(nd.min())
    alpha = pareto_shape_mle(nd, x_min, discrete=discrete)
    sim = sim[sim["degree"] > 0]
    theory = expected_squared_norm(
        sim["degree"].to_numpy(), alpha0, alpha1, alpha, mu0, sigma0**2, x_min, discrete
    )
    edges = log_degree_bins(sim["degree"], num_bins)
    meas = binned_summary(sim["degree"], sim["sq_norm"], edges=edges)
    theo = binned_summary(sim["degree"], theory, edges=edges)
    out = meas[["degree_lo", "degree_hi", "degree_mean", "count"]].copy()
    out["measured"] = meas["mean"].to_numpy()
    out["theory"] = theo["mean"].to_numpy()
    out["rel_error"] = out["measured"] / out["theory"] - 1.0
    ea, eb = empirical_coefficients(nd, alpha1, mu0, sigma0**2)
    d = sim["degree"].to_numpy().astype(np.float64)
    emp = _basis(d, alpha0) @ np.array([ea, eb])
    out["theory_empirical"] = binned_summary(d, emp, edges=edges)["mean"].to_numpy()
    out["rel_error_empirical"] = out["measured"] / out["theory_empirical"] - 1.0
    a, b = theory_coefficients(alpha, alpha1, mu0, sigma0**2, x_min, discrete)
    fit = fit_theory(sim["degree"], sim["sq_norm"], alpha0, num_bins)
    out.attrs.update(
        {"alpha": alpha, "x_min": x_min, "a": a, "b": b, "fit_a": fit.a, "fit_b": fit.b}
    )
    return out
