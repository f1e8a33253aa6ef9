r"""Per-user temperatures of adaptive-temperature losses against user degree.

Adaptive schedules (e.g. :class:`~pyg_cf.losses.temperature.AdapTau`) give every user
:math:`u` its own :math:`\tau_u`. This view reads those temperatures from wherever they
live — a ``[num_users]`` tensor, a loss with ``user_tau_table``, a schedule with
``user_tau``, or a trainer whose loss or callbacks have one — and relates them to the
user's training degree :math:`|\mathcal{P}_u|` (Spearman's rank correlation and the
log–log slope).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_cf.data.graph import degrees
from pyg_cf.diagnostics.binning import SlopeFit, binned_summary, fit_loglog_slope
from pyg_cf.errors import ConfigError, PygCFError

__all__ = ["TemperatureView", "find_user_tau", "temperature_vs_degree", "user_temperatures"]

TAU_ATTRIBUTES = ("user_tau_table", "user_tau")


def find_user_tau(source: Any) -> Tensor:
    """The per-user temperature tensor of ``source``.

    Args:
        source: A ``[num_users]`` tensor; an object (loss, schedule) with a tensor
            attribute ``user_tau_table`` or ``user_tau``; or a trainer, whose ``loss`` and
            then ``callbacks`` are searched.

    Raises:
        PygCFError: if no per-user temperature is found (e.g. a fixed-temperature loss, or
            an adaptive one before its first epoch).
    """
    if isinstance(source, Tensor):
        return source
    for name in TAU_ATTRIBUTES:
        value = getattr(source, name, None)
        if isinstance(value, Tensor):
            return value
    candidates = [getattr(source, "loss", None), *getattr(source, "callbacks", [])]
    for obj in candidates:
        if obj is None:
            continue
        for name in TAU_ATTRIBUTES:
            value = getattr(obj, name, None)
            if isinstance(value, Tensor):
                return value
    raise PygCFError(
        f"{type(source).__name__} has no per-user temperature: pass a [num_users] tensor or "
        f"an object with one of the attributes {TAU_ATTRIBUTES} (set by adaptive schedules "
        "such as AdapTau once an epoch has started)"
    )


def user_temperatures(source: Any, data: HeteroData) -> pd.DataFrame:
    """Every user's temperature beside its training degree.

    Args:
        source: See :func:`find_user_tau`.
        data: The pyg-cf data object.

    Returns:
        One row per user with a finite temperature: ``user``, ``degree``, ``tau``.
    """
    tau = find_user_tau(source)
    if tau.dim() != 1:
        raise ConfigError(
            f"per-user temperature must be a 1-D [num_users] tensor, got shape {tuple(tau.shape)}"
        )
    tau = tau.detach().cpu().double()
    deg = degrees(data)[0].cpu()
    if tau.numel() != deg.numel():
        raise ConfigError(
            f"per-user temperature has {tau.numel()} entries but the data has {deg.numel()} users"
        )
    df = pd.DataFrame({"user": np.arange(deg.numel()), "degree": deg.numpy(), "tau": tau.numpy()})
    return df[np.isfinite(df["tau"])].reset_index(drop=True)


@dataclass
class TemperatureView:
    r"""Per-user temperatures against degree.

    Attributes:
        per_user: :func:`user_temperatures`.
        bins: :func:`~pyg_cf.diagnostics.binning.binned_summary` of :math:`\tau_u` in
            log-spaced degree bins.
        spearman: Spearman's rank correlation of degree and :math:`\tau_u` (``nan`` when
            either is constant).
        slope: Log–log slope fit of :math:`\tau_u` on degree (``None`` when undefined).
    """

    per_user: pd.DataFrame
    bins: pd.DataFrame
    spearman: float
    slope: SlopeFit | None


def temperature_vs_degree(source: Any, data: HeteroData, num_bins: int = 10) -> TemperatureView:
    """The per-user temperature distribution and its relation to user degree.

    Args:
        source: See :func:`find_user_tau`.
        data: The pyg-cf data object.
        num_bins: Number of log-spaced degree bins.
    """
    df = user_temperatures(source, data)
    pos = df[df["degree"] > 0]
    if pos.empty:
        raise ConfigError("no user with a positive degree and a finite temperature")
    bins = binned_summary(pos["degree"], pos["tau"], num_bins)
    d, t = pos["degree"].to_numpy(), pos["tau"].to_numpy()
    rho = float(spearmanr(d, t)[0]) if np.ptp(d) > 0 and np.ptp(t) > 0 else float("nan")
    try:
        slope: SlopeFit | None = fit_loglog_slope(d, t)
    except ConfigError:
        slope = None
    return TemperatureView(df, bins, rho, slope)
