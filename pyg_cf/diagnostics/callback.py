"""A trainer callback that records the diagnostics every few epochs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from pyg_cf.diagnostics.longtail import LongTailRecall, long_tail_recall
from pyg_cf.diagnostics.magnitude import NODE_TYPES, magnitude_slopes, magnitude_vs_degree
from pyg_cf.diagnostics.temperature import find_user_tau, temperature_vs_degree
from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.train.trainer import Callback

if TYPE_CHECKING:
    from pyg_cf.train.trainer import Trainer

__all__ = ["DiagnosticsCallback"]

log = logging.getLogger(__name__)


class DiagnosticsCallback(Callback):
    """Records magnitude-vs-degree (and optionally long-tail Recall and the per-user
    temperature view) at the end of every ``every``-th epoch, so that one can watch
    magnitudes evolve during training.

    Per recorded epoch and node type it adds to the history row
    ``'{type}_norm_mean'`` and ``'{type}_norm_slope'`` (log–log slope of norm on degree;
    NaN, with one warning, where no slope can be fitted, e.g. every node has one degree),
    and appends a row to :attr:`records`; with ``long_tail`` it stores the
    :class:`~pyg_cf.diagnostics.LongTailRecall` in :attr:`long_tail`; with
    ``temperature`` and a loss that exposes per-user temperatures, it adds
    ``'tau_degree_spearman'``.

    Args:
        every: Record every this many epochs (the last epoch of a run is not forced).
        node_types: Node types of the magnitude view.
        keep_frames: Keep every epoch's full :func:`magnitude_vs_degree` frame in
            :attr:`frames`.
        long_tail: Also compute :func:`long_tail_recall` on ``split``.
        k: Cut-off of the long-tail Recall.
        groups: Number of popularity groups.
        split: Split of the long-tail Recall (``'val'`` to keep the test set unseen).
        temperature: Also record the per-user temperature view when available.
    """

    def __init__(
        self,
        every: int = 1,
        node_types: Sequence[str] = NODE_TYPES,
        keep_frames: bool = False,
        long_tail: bool = False,
        k: int = 20,
        groups: int = 10,
        split: str = "val",
        temperature: bool = True,
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be a positive integer, got {every!r}")
        self.every, self.node_types = every, tuple(node_types)
        self.keep_frames, self.do_long_tail = keep_frames, long_tail
        self.k, self.groups, self.split, self.temperature = k, groups, split, temperature
        self.records: list[dict[str, Any]] = []
        self.frames: dict[int, pd.DataFrame] = {}
        self.long_tail: dict[int, LongTailRecall] = {}
        self._unfitted: set[str] = set()  # node types whose slope could not be fitted

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        if epoch % self.every:
            return
        df = magnitude_vs_degree(trainer.model, trainer.data, self.node_types)
        for t, g in df.groupby("node_type", sort=False):
            try:
                s = magnitude_slopes(g)[str(t)]
                slope, r2 = s.slope, s.r2
            except ConfigError as e:  # e.g. every node of the type has one degree
                if str(t) not in self._unfitted:
                    log.warning("DiagnosticsCallback: no %s norm slope (%s); recorded NaN", t, e)
                    self._unfitted.add(str(t))
                slope = r2 = math.nan
            rec = {
                "epoch": epoch,
                "node_type": t,
                "norm_mean": float(g["norm"].mean()),
                "norm_median": float(g["norm"].median()),
                "slope": slope,
                "r2": r2,
            }
            self.records.append(rec)
            row[f"{t}_norm_mean"], row[f"{t}_norm_slope"] = rec["norm_mean"], slope
        if self.keep_frames:
            self.frames[epoch] = df
        if self.do_long_tail:
            split = self.split
            if split == "val" and not getattr(trainer, "has_val", False):
                split = "test"
            self.long_tail[epoch] = long_tail_recall(
                trainer.model,
                trainer.data,
                self.k,
                self.groups,
                split,
                similarity=trainer.config.test_similarity,
            )
        if self.temperature:
            try:
                find_user_tau(trainer)
            except PygCFError:
                return
            row["tau_degree_spearman"] = temperature_vs_degree(trainer, trainer.data).spearman

    def history(self) -> pd.DataFrame:
        """:attr:`records` as a frame (one row per recorded epoch and node type)."""
        return pd.DataFrame(self.records)
