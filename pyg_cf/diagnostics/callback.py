"""A trainer callback that records the diagnostics every few epochs."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pyg_cf.diagnostics.longtail import (
    LongTailRecall,
    _check_groups,
    long_tail_recall,
    positive_int,
)
from pyg_cf.diagnostics.magnitude import (
    NODE_TYPES,
    check_node_types,
    magnitude_slopes,
    magnitude_vs_degree,
)
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
    ``'tau_degree_spearman'`` (an epoch whose temperatures give no view, e.g. all NaN, is
    skipped with a warning: a diagnostic never stops training).

    With ``split='val'`` and data without a validation split, the long-tail Recall is
    computed on ``'test'`` (logged once).

    :meth:`state_dict` / :meth:`load_state_dict` carry what accumulated (records, frames,
    long-tail results) through a checkpoint; a resumed callback keeps its own settings.

    The arguments are checked when the callback is built, and ``k`` against the data's
    number of items when an epoch starts, so that a bad setting fails before any training
    rather than at the first recorded epoch.

    Args:
        every: Record every this many epochs (the last epoch of a run is not forced).
        node_types: Node types of the magnitude view (a sequence: ``('item',)``, not
            ``'item'``).
        keep_frames: Keep every epoch's full :func:`magnitude_vs_degree` frame in
            :attr:`frames`.
        long_tail: Also compute :func:`long_tail_recall` on ``split``.
        k: Cut-off of the long-tail Recall (at most the number of items).
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
        if split not in ("val", "test"):
            raise ConfigError(f"split must be 'val' or 'test', got {split!r}")
        self.every, self.node_types = every, check_node_types(node_types)
        self.keep_frames, self.do_long_tail = keep_frames, long_tail
        self.k, self.groups = positive_int("k", k), _check_groups(groups)
        self.split, self.temperature = split, temperature
        self.records: list[dict[str, Any]] = []
        self.frames: dict[int, pd.DataFrame] = {}
        self.long_tail: dict[int, LongTailRecall] = {}
        self._unfitted: set[str] = set()  # node types whose slope could not be fitted
        self._warned_split = False  # the val -> test fallback was logged
        self._warned_tau = False  # a temperature view failed and was logged

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Check ``k`` against the data's number of items before the epoch trains (the
        trainer has no earlier hook), rather than at the first recorded epoch."""
        if not self.do_long_tail:
            return
        num_items = trainer.data["item"].num_nodes
        if self.k > num_items:
            raise ConfigError(
                f"k must be at most the number of items ({num_items}) for the long-tail "
                f"Recall, got {self.k}"
            )

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
                if not self._warned_split:
                    log.warning(
                        "DiagnosticsCallback: the data has no validation split; long-tail "
                        "Recall is computed on 'test' instead of split='val'"
                    )
                    self._warned_split = True
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
            try:
                view = temperature_vs_degree(trainer, trainer.data)
            except PygCFError as e:  # e.g. every tau NaN: a diagnostic must not stop training
                log.log(
                    logging.DEBUG if self._warned_tau else logging.WARNING,
                    "DiagnosticsCallback: no temperature view at epoch %d (%s); skipped",
                    epoch,
                    e,
                )
                self._warned_tau = True
                return
            row["tau_degree_spearman"] = view.spearman

    def history(self) -> pd.DataFrame:
        """:attr:`records` as a frame (one row per recorded epoch and node type)."""
        return pd.DataFrame(self.records)

    def _settings(self) -> dict[str, Any]:
        return {
            "every": self.every,
            "node_types": list(self.node_types),
            "keep_frames": self.keep_frames,
            "long_tail": self.do_long_tail,
            "k": self.k,
            "groups": self.groups,
            "split": self.split,
            "temperature": self.temperature,
        }

    def state_dict(self) -> dict[str, Any]:
        """What accumulated, as plain data for a checkpoint: :attr:`records`, the node
        types without a slope, :attr:`frames` (squared norms as ``float32``; node ids and
        degree columns are rebuilt, degrees stored once) and :attr:`long_tail` (item groups
        stored once). ``settings`` holds the constructor's arguments, only to compare on
        :meth:`load_state_dict`."""
        degree: dict[str, Tensor] = {}
        frames: dict[int, dict[str, Any]] = {}
        for epoch, df in self.frames.items():
            sq: dict[str, Tensor] = {}
            own: dict[str, Tensor] = {}
            for t, g in df.groupby("node_type", sort=False):
                sq[str(t)] = torch.tensor(g["sq_norm"].to_numpy(np.float32))
                d = torch.tensor(g["degree"].to_numpy())
                if str(t) not in degree:
                    degree[str(t)] = d
                elif not torch.equal(degree[str(t)], d):
                    own[str(t)] = d
            frames[int(epoch)] = {"sq_norm": sq, "degree": own, "attrs": dict(df.attrs)}
        item_group: Tensor | None = None
        long_tail: dict[int, dict[str, Any]] = {}
        for epoch, res in self.long_tail.items():
            group = res.item_group.detach().cpu()
            if item_group is None:
                item_group = group
            long_tail[int(epoch)] = {
                "table": {str(c): torch.tensor(res.table[c].to_numpy()) for c in res.table},
                "recall": float(res.recall),
                "k": int(res.k),
                "item_group": None if torch.equal(group, item_group) else group,
            }
        return {
            "version": 1,
            "settings": self._settings(),
            "records": [dict(r) for r in self.records],
            "unfitted": sorted(self._unfitted),
            "degree": degree,
            "frames": frames,
            "item_group": item_group,
            "long_tail": long_tail,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved. The callback keeps its own settings
        (``every``, ``long_tail``, ``k``, ...); where they differ from the saved ones a
        warning names them. Tensors may come on any device (a checkpoint is read onto the
        trainer's); the results are rebuilt on the CPU, as :meth:`state_dict` saves them."""
        saved, now = state.get("settings", {}), self._settings()
        diff = {k: (saved[k], v) for k, v in now.items() if k in saved and saved[k] != v}
        if diff:
            log.warning(
                "DiagnosticsCallback: resumed with other settings than the checkpoint's "
                "(saved vs this: %s); keeping this callback's settings",
                diff,
            )
        self.records = [dict(r) for r in state.get("records", [])]
        self._unfitted = set(state.get("unfitted", []))
        degree: dict[str, Tensor] = state.get("degree", {})
        self.frames = {}
        for epoch, fr in state.get("frames", {}).items():
            parts = []
            for t, sq32 in fr["sq_norm"].items():
                d = fr["degree"].get(t, degree[t]).cpu()
                sq = sq32.cpu().double().numpy()
                parts.append(
                    pd.DataFrame(
                        {
                            "node_type": t,
                            "node": np.arange(d.numel()),
                            "degree": d.numpy(),
                            "norm": np.sqrt(sq),
                            "sq_norm": sq,
                        }
                    )
                )
            df = pd.concat(parts, ignore_index=True)
            df.attrs.update(fr["attrs"])
            self.frames[int(epoch)] = df
        self.long_tail = {}
        for epoch, lt in state.get("long_tail", {}).items():
            group = lt["item_group"] if lt["item_group"] is not None else state["item_group"]
            table = pd.DataFrame({c: v.cpu().numpy() for c, v in lt["table"].items()})
            self.long_tail[int(epoch)] = LongTailRecall(
                table, float(lt["recall"]), int(lt["k"]), group.cpu()
            )
