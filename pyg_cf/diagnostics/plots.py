"""Matplotlib figures of the diagnostics (the optional ``plot`` extra).

Every function builds a :class:`matplotlib.figure.Figure` without :mod:`matplotlib.pyplot`
(no global state, no GUI backend needed: the figure renders with Agg), returns it, and
saves it to ``path`` (any format matplotlib knows from the extension) when one is given.
In a notebook the returned figure displays inline.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pyg_cf.diagnostics.binning import binned_summary, fit_loglog_slope
from pyg_cf.diagnostics.longtail import LongTailRecall
from pyg_cf.diagnostics.similarity import SimilarityView
from pyg_cf.diagnostics.temperature import TemperatureView
from pyg_cf.diagnostics.theory import fit_theory
from pyg_cf.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "plot_long_tail",
    "plot_magnitude_vs_degree",
    "plot_similarity",
    "plot_temperature_vs_degree",
    "plot_theory_check",
    "plot_training_curves",
]

PathLike = str | os.PathLike[str]


def _figure(figsize: tuple[float, float]) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pyg_cf.diagnostics.plots needs matplotlib: pip install 'pyg-cf[plot]'"
        ) from e
    return Figure(figsize=figsize, layout="constrained")


def _finish(fig: Figure, path: PathLike | None, dpi: int = 120) -> Figure:
    if path is not None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=dpi)
    return fig


def _as_mapping(obj: Any, kind: type, name: str) -> dict[str, Any]:
    if isinstance(obj, kind):
        return {"": obj}
    if isinstance(obj, Mapping) and obj and all(isinstance(v, kind) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    raise ConfigError(f"{name} must be a {kind.__name__} or a non-empty dict of them")


def plot_magnitude_vs_degree(
    frames: pd.DataFrame | Mapping[str, pd.DataFrame],
    node_type: str = "item",
    value: str = "norm",
    num_bins: int = 12,
    theory: bool = True,
    path: PathLike | None = None,
) -> Figure:
    r"""Embedding norm against training degree on log–log axes, one line per model.

    Each line is the bin mean (markers) with the inter-quartile range shaded; the legend
    gives the per-node log–log slope. With ``theory``, for a model that propagates
    ``node_type`` (``df.attrs`` of :func:`~pyg_cf.diagnostics.magnitude_vs_degree`), the
    least-squares theory curve :math:`a d^{1-2\alpha_0} + b d^{2-2\alpha_0}` (its square
    root for ``value='norm'``) is drawn dashed in the same colour.

    Args:
        frames: The output of :func:`~pyg_cf.diagnostics.magnitude_vs_degree`, or a dict
            model name → such output.
        node_type: ``'user'`` or ``'item'``.
        value: ``'norm'`` or ``'sq_norm'``.
        num_bins: Number of log-spaced degree bins.
        theory: Draw the fitted theory curves.
        path: Save the figure here.
    """
    models = _as_mapping(frames, pd.DataFrame, "frames")
    if value not in ("norm", "sq_norm"):
        raise ConfigError(f"value must be 'norm' or 'sq_norm', got {value!r}")
    fig = _figure((6.0, 4.2))
    ax = fig.add_subplot()
    for n, (label, df) in enumerate(models.items()):
        g = df[(df["node_type"] == node_type) & (df["degree"] > 0)]
        if g.empty:
            raise ConfigError(f"frame {label!r} has no {node_type} with a positive degree")
        color = f"C{n % 10}"
        b = binned_summary(g["degree"], g[value], num_bins)
        try:
            slope = f"slope {fit_loglog_slope(g['degree'], g[value]).slope:.2f}"
        except ConfigError:  # one distinct degree, or no positive value: nothing to fit
            slope = "no slope to fit"
        name = f"{label + ' ' if label else ''}({slope})"
        ax.plot(b["degree_mean"], b["mean"], "o-", color=color, ms=4, label=name)
        ax.fill_between(b["degree_mean"], b["q25"], b["q75"], color=color, alpha=0.15, lw=0)
        propagated = df.attrs.get("propagated", {}).get(node_type, False)
        fit = None
        if theory and propagated and "alpha0" in df.attrs:
            try:
                fit = fit_theory(g["degree"], g["sq_norm"], df.attrs["alpha0"])
            except ConfigError:  # as the slope: nothing to fit, so no curve
                fit = None
        if fit is not None:
            d = np.geomspace(g["degree"].min(), g["degree"].max(), 100)
            curve = fit.predict(d)
            ax.plot(
                d,
                np.sqrt(curve) if value == "norm" else curve,
                "--",
                color=color,
                lw=1,
                label=f"{label + ' ' if label else ''}theory fit",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{node_type} training degree")
    ax.set_ylabel("embedding norm" if value == "norm" else "squared embedding norm")
    ax.set_title(f"{node_type} embedding magnitude vs degree")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_theory_check(check: pd.DataFrame, path: PathLike | None = None) -> Figure:
    r"""Measured against closed-form :math:`\mathbb{E}(q'^2)` per degree bin (the output of
    :func:`~pyg_cf.diagnostics.theory.monte_carlo_check`): the Pareto closed form and, when
    present, the one with the empirical moments of the neighbour degrees."""
    if not {"degree_mean", "measured", "theory"} <= set(check.columns):
        raise ConfigError("check must be the output of monte_carlo_check")
    fig = _figure((5.5, 4.0))
    ax = fig.add_subplot()
    ax.plot(check["degree_mean"], check["measured"], "o", label="simulation")
    ax.plot(check["degree_mean"], check["theory"], "-", label="closed form (Pareto)")
    if "theory_empirical" in check.columns:
        ax.plot(
            check["degree_mean"],
            check["theory_empirical"],
            ":",
            label="closed form (empirical moments)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("degree")
    ax.set_ylabel(r"$E(q'^2)$")
    alpha = check.attrs.get("alpha")
    ax.set_title("theory vs simulation" + (f" (α̂ = {alpha:.2f})" if alpha else ""))
    ax.legend()
    return _finish(fig, path)


def plot_long_tail(
    results: LongTailRecall | Mapping[str, LongTailRecall],
    path: PathLike | None = None,
    stacked: bool = True,
) -> Figure:
    """Per-group Recall@K, one bar per model or loss (the sampled-softmax paper's Figure 1).

    With ``stacked`` each bar stacks the group contributions (group 1, the least popular,
    at the bottom), so its height is the overall Recall@K; otherwise bars are grouped by
    popularity group.

    Args:
        results: A :class:`~pyg_cf.diagnostics.LongTailRecall` or a dict label → result.
        path: Save the figure here.
        stacked: Stacked (default) or grouped bars.
    """
    runs = _as_mapping(results, LongTailRecall, "results")
    labels = list(runs)
    groups = len(next(iter(runs.values())).table)
    if any(len(r.table) != groups for r in runs.values()):
        raise ConfigError("all results must have the same number of groups")
    k = next(iter(runs.values())).k
    fig = _figure((max(4.0, 1.2 * len(labels) + 2.5) if stacked else 7.0, 4.2))
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    x = np.arange(len(labels))
    if stacked:
        bottom = np.zeros(len(labels))
        for g in range(groups):
            h = np.array([runs[lb].table["recall"].iloc[g] for lb in labels])
            ax.bar(x, h, 0.6, bottom=bottom, color=cmap(g / max(groups - 1, 1)), label=f"{g + 1}")
            bottom += h
        ax.set_xticks(x, [lb or "model" for lb in labels])
        ax.legend(title="group", fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1, 1))
    else:
        width = 0.8 / len(labels)
        gx = np.arange(1, groups + 1)
        for n, lb in enumerate(labels):
            ax.bar(gx + (n - (len(labels) - 1) / 2) * width, runs[lb].table["recall"], width,
                   label=lb or "model")  # fmt: skip
        ax.set_xticks(gx)
        ax.set_xlabel("item group (1 = least popular)")
        ax.legend(fontsize=8)
    ax.set_ylabel(f"Recall@{k} contribution")
    ax.set_title(f"Recall@{k} by item-popularity group")
    return _finish(fig, path)


def plot_temperature_vs_degree(view: TemperatureView, path: PathLike | None = None) -> Figure:
    r"""Per-user :math:`\tau_u` against user degree: the users (points) and the bin
    medians with inter-quartile range."""
    if not isinstance(view, TemperatureView):
        raise ConfigError("view must be the output of temperature_vs_degree")
    fig = _figure((5.5, 4.0))
    ax = fig.add_subplot()
    df = view.per_user[view.per_user["degree"] > 0]
    ax.scatter(df["degree"], df["tau"], s=3, alpha=0.2, color="C0", lw=0, label="users")
    b = view.bins
    ax.plot(b["degree_mean"], b["median"], "o-", color="C1", ms=4, label="bin median")
    ax.fill_between(b["degree_mean"], b["q25"], b["q75"], color="C1", alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("user training degree")
    ax.set_ylabel(r"$\tau_u$")
    ax.set_title(f"per-user temperature (Spearman ρ = {view.spearman:.2f})")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_similarity(
    views: SimilarityView | Mapping[str, SimilarityView], path: PathLike | None = None
) -> Figure:
    """Histograms of positive-pair (solid) and random-pair (dashed) cosine similarity,
    one colour per model."""
    runs = _as_mapping(views, SimilarityView, "views")
    fig = _figure((6.0, 4.0))
    ax = fig.add_subplot()
    for n, (label, v) in enumerate(runs.items()):
        t, color = v.table, f"C{n % 10}"
        edges = np.append(t["bin_lo"].to_numpy(), t["bin_hi"].iloc[-1])
        name = f"{label} " if label else ""
        ax.stairs(t["positive"], edges, color=color, label=f"{name}positive pairs")
        ax.stairs(t["random"], edges, color=color, ls="--", label=f"{name}random pairs")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title("positive vs random pairs")
    ax.legend(fontsize=8)
    return _finish(fig, path)


def plot_training_curves(
    histories: pd.DataFrame | Mapping[str, pd.DataFrame],
    metric: str = "test_recall@20",
    x: str = "elapsed_s",
    path: PathLike | None = None,
) -> Figure:
    """One line per run: ``metric`` of each evaluation against training time (minutes) or
    epoch, from :meth:`~pyg_cf.train.Trainer.fit` histories. On a time axis, runs compared at
    the same x had the same training budget (the equal-budget view of convergence speed).

    Args:
        histories: A history table or a dict label → history table; rows without ``metric``
            (epochs that were not evaluated) are skipped.
        metric: The column to plot, e.g. ``"val_ndcg@20"``.
        x: ``"train_s"`` (training time: the running sum of the rows' ``train_s``,
            evaluations left out, so that runs evaluated at different intervals share one
            clock; a history must then hold every epoch's row), ``"elapsed_s"`` (wall clock
            since the start, evaluations included), both plotted in minutes, or
            ``"epoch"``.
        path: Save the figure here.

    Raises:
        ConfigError: if ``x`` is neither, or a history lacks a column or any evaluation.
    """
    if x not in ("train_s", "elapsed_s", "epoch"):
        raise ConfigError(f"x must be 'train_s', 'elapsed_s' or 'epoch', got {x!r}")
    runs = _as_mapping(histories, pd.DataFrame, "histories")
    fig = _figure((6.0, 4.0))
    ax = fig.add_subplot()
    for n, (label, hist) in enumerate(runs.items()):
        missing = [c for c in (x, metric) if c not in hist.columns]
        if missing:
            raise ConfigError(f"history {label!r} has no column(s) {missing}")
        clock = hist[x].cumsum() if x == "train_s" else hist[x]
        evaluated = hist[metric].notna()
        rows = hist[evaluated]
        if rows.empty:
            raise ConfigError(f"history {label!r} has no evaluation of {metric!r}")
        xs = clock[evaluated].to_numpy(dtype=float) / (1.0 if x == "epoch" else 60.0)
        ax.plot(xs, rows[metric].to_numpy(dtype=float), "o-", ms=2.5, color=f"C{n % 10}",
                label=label or None)  # fmt: skip
    xlabel = {
        "train_s": "training time (min)",
        "elapsed_s": "wall time, evaluations included (min)",
    }
    ax.set_xlabel(xlabel.get(x, "epoch"))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} during training")
    if any(runs):
        ax.legend(fontsize=8)
    return _finish(fig, path)
