r"""Embedding diagnostics: magnitude vs degree and its theory, long-tail Recall, temperature
and similarity views, plots, and a trainer callback.

>>> from pyg_cf.diagnostics import magnitude_vs_degree, magnitude_slopes, long_tail_recall
>>> df = magnitude_vs_degree(model, data)              # doctest: +SKIP
>>> magnitude_slopes(df)["item"].slope                 # doctest: +SKIP
>>> long_tail_recall(model, data, k=20).table          # doctest: +SKIP

Plotting functions live in :mod:`pyg_cf.diagnostics.plots` (needs matplotlib).
"""

from pyg_cf.diagnostics.binning import (
    SlopeFit,
    binned_summary,
    fit_loglog_slope,
    log_degree_bins,
)
from pyg_cf.diagnostics.callback import DiagnosticsCallback
from pyg_cf.diagnostics.embeddings import final_embeddings
from pyg_cf.diagnostics.longtail import LongTailRecall, item_groups, long_tail_recall
from pyg_cf.diagnostics.magnitude import (
    magnitude_slopes,
    magnitude_summary,
    magnitude_vs_degree,
)
from pyg_cf.diagnostics.similarity import SimilarityView, pair_cosine, similarity_histograms
from pyg_cf.diagnostics.temperature import (
    TemperatureView,
    find_user_tau,
    temperature_vs_degree,
    user_temperatures,
)
from pyg_cf.diagnostics.theory import (
    TheoryFit,
    empirical_coefficients,
    expected_squared_norm,
    fit_theory,
    monte_carlo_check,
    neighbor_degrees,
    pareto_shape_mle,
    simulate_propagation,
    theory_coefficients,
)

__all__ = [
    "DiagnosticsCallback",
    "LongTailRecall",
    "SimilarityView",
    "SlopeFit",
    "TemperatureView",
    "TheoryFit",
    "binned_summary",
    "empirical_coefficients",
    "expected_squared_norm",
    "final_embeddings",
    "find_user_tau",
    "fit_loglog_slope",
    "fit_theory",
    "item_groups",
    "log_degree_bins",
    "long_tail_recall",
    "magnitude_slopes",
    "magnitude_summary",
    "magnitude_vs_degree",
    "monte_carlo_check",
    "neighbor_degrees",
    "pair_cosine",
    "pareto_shape_mle",
    "similarity_histograms",
    "simulate_propagation",
    "temperature_vs_degree",
    "theory_coefficients",
    "user_temperatures",
]
