"""Evaluation: all-ranking top-K metrics and baselines."""

from pyg_cf.metrics.baselines import popularity_baseline
from pyg_cf.metrics.ranking import (
    evaluate,
    evaluate_scores,
    mask_seen,
    ranking_metrics_from_hits,
)

__all__ = [
    "evaluate",
    "evaluate_scores",
    "mask_seen",
    "popularity_baseline",
    "ranking_metrics_from_hits",
]
