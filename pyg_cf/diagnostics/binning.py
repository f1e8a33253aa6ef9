r"""Log-spaced degree bins, binned summaries and log–log slope fits shared by the views."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from torch import Tensor

from pyg_cf.errors import ConfigError

__all__ = ["SlopeFit", "binned_summary", "fit_loglog_slope", "log_degree_bins"]


def _np(x: Tensor | np.ndarray | pd.Series) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def log_degree_bins(degree: Tensor | np.ndarray | pd.Series, num_bins: int = 12) -> np.ndarray:
    r"""Edges of ``num_bins`` log-spaced bins covering the positive degrees.

    The edges :math:`e_0 < \dots < e_B` are :math:`e_j = d_{\min} (d_{\max}/d_{\min})^{j/B}`
    with :math:`e_B` nudged up so that :math:`d_{\max}` falls in the last bin; bins are
    half-open :math:`[e_j, e_{j+1})`. Integer degrees can leave low bins empty; when all
    degrees are equal there is a single bin.

    Args:
        degree: Degrees (zeros and non-finite degrees are ignored).
        num_bins: Number of bins.

    Returns:
        ``num_bins + 1`` increasing edges.
    """
    if num_bins < 1:
        raise ConfigError(f"num_bins must be >= 1, got {num_bins}")
    d = _np(degree)
    d = d[(d > 0) & np.isfinite(d)]
    if d.size == 0:
        raise ConfigError("degree has no positive, finite entries to bin")
    lo, hi = float(d.min()), float(d.max())
    if hi <= lo:
        return np.array([lo, np.nextafter(lo, math.inf)])  # one degree: one bin
    edges = np.geomspace(lo, hi, num_bins + 1)
    # geomspace may land a rounding step above an exact integer (32.00000000000001): a
    # degree equal to it would fall into the bin below, whose upper edge it then equals
    near = np.round(edges)
    snap = np.abs(edges - near) <= 8 * np.finfo(np.float64).eps * np.maximum(np.abs(near), 1.0)
    edges = np.where(snap, near, edges)
    edges[-1] = np.nextafter(hi, math.inf)
    return edges


def binned_summary(
    degree: Tensor | np.ndarray | pd.Series,
    value: Tensor | np.ndarray | pd.Series,
    num_bins: int = 12,
    edges: np.ndarray | None = None,
) -> pd.DataFrame:
    """Summary of ``value`` per log-spaced bin of ``degree`` (nodes of degree 0 or of a
    non-finite degree left out).

    Args:
        degree: ``[N]`` degrees.
        value: ``[N]`` values (e.g. embedding norms).
        num_bins: Number of bins when ``edges`` is ``None``.
        edges: Bin edges (see :func:`log_degree_bins`).

    Returns:
        One row per non-empty bin: ``degree_lo``, ``degree_hi``, ``degree_mean``
        (geometric mean of the bin's degrees), ``count``, ``mean``, ``std``, ``median``,
        ``q25``, ``q75``.
    """
    d, v = _np(degree), _np(value)
    if d.shape != v.shape:
        raise ConfigError(f"degree and value differ in shape: {d.shape} vs {v.shape}")
    if edges is None:
        edges = log_degree_bins(d, num_bins)
    keep = (d > 0) & np.isfinite(d)
    d, v = d[keep], v[keep]
    idx = np.searchsorted(edges, d, side="right") - 1
    rows = []
    for j in range(len(edges) - 1):
        m = idx == j
        if not m.any():
            continue
        vj = v[m]
        rows.append(
            {
                "degree_lo": float(edges[j]),
                "degree_hi": float(edges[j + 1]),
                "degree_mean": float(np.exp(np.log(d[m]).mean())),
                "count": int(m.sum()),
                "mean": float(vj.mean()),
                "std": float(vj.std()),
                "median": float(np.median(vj)),
                "q25": float(np.quantile(vj, 0.25)),
                "q75": float(np.quantile(vj, 0.75)),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SlopeFit:
    r"""Least-squares line :math:`\log y = c + s \log d`.

    Attributes:
        slope: :math:`s`.
        intercept: :math:`c` (natural logarithms).
        r2: Coefficient of determination of the fit.
        num_points: Number of points fitted.
    """

    slope: float
    intercept: float
    r2: float
    num_points: int

    def predict(self, degree: np.ndarray) -> np.ndarray:
        """:math:`e^{c} d^{s}`."""
        return np.exp(self.intercept) * np.asarray(degree, dtype=np.float64) ** self.slope


def fit_loglog_slope(
    degree: Tensor | np.ndarray | pd.Series,
    value: Tensor | np.ndarray | pd.Series,
    binned: bool = False,
    num_bins: int = 12,
) -> SlopeFit:
    r"""Slope of :math:`\log y` against :math:`\log d` by ordinary least squares.

    Points with :math:`d \le 0` or :math:`y \le 0` are left out. With ``binned=True`` the
    fit is over the (geometric-mean degree, mean value) points of :func:`binned_summary`,
    which weighs every degree decade alike instead of every node.

    Args:
        degree: ``[N]`` degrees.
        value: ``[N]`` values.
        binned: Fit the bin means instead of the nodes.
        num_bins: Number of bins when ``binned``.
    """
    d, v = _np(degree), _np(value)
    if d.shape != v.shape:
        raise ConfigError(f"degree and value differ in shape: {d.shape} vs {v.shape}")
    if binned:
        b = binned_summary(d, v, num_bins)
        b = b[b["mean"] > 0]
        d, v = b["degree_mean"].to_numpy(), b["mean"].to_numpy()
    keep = (d > 0) & np.isfinite(d) & (v > 0) & np.isfinite(v)
    x, y = np.log(d[keep]), np.log(v[keep])
    if x.size < 2 or np.ptp(x) == 0:
        raise ConfigError(
            f"need points at two or more distinct positive degrees to fit a slope, got {x.size}"
        )
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    # a constant y leaves rounding noise (~1e-29) in ss_tot, not 0: its fit is exact
    flat = ss_tot <= (64 * np.finfo(np.float64).eps) ** 2 * float((y**2).sum())
    r2 = 1.0 if flat else 1.0 - float((resid**2).sum()) / ss_tot
    return SlopeFit(float(slope), float(intercept), r2, int(x.size))
