"""What every loss receives, and the base class of loss modules."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from pyg_cf.errors import ConfigError

__all__ = ["CFLoss", "LossBatch", "similarity"]


def similarity(a: Tensor, b: Tensor, kind: str = "ip") -> Tensor:
    """Row-wise similarity of broadcastable ``[..., d]`` tensors: inner product or cosine."""
    if kind == "ip":
        return (a * b).sum(-1)
    if kind == "cos":
        return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)
    raise ConfigError(f"similarity must be 'ip' or 'cos', got {kind!r}")


def normalize_if(x: Tensor, kind: str) -> Tensor:
    """``x`` L2-normalized along the last axis when ``kind == 'cos'``, else ``x``."""
    if kind == "cos":
        return F.normalize(x, dim=-1)
    if kind != "ip":
        raise ConfigError(f"similarity must be 'ip' or 'cos', got {kind!r}")
    return x


@dataclass
class LossBatch:
    """One training batch as a loss sees it.

    Attributes:
        users: ``[B]`` global user ids of the positive pairs.
        pos_items: ``[B]`` global item ids of the positive pairs.
        user_emb: ``[B, d]`` final user embeddings.
        pos_emb: ``[B, d]`` final embeddings of the positive items.
        neg_items: ``[B, M]`` sampled negative ids (``None`` unless the loss samples).
        neg_emb: ``[B, M, d]`` their final embeddings.
        neg_log_prob: ``[B, M]`` log-probability with which each negative was drawn
            (for logQ correction), when known.
        all_item_emb: ``[I, d]`` every item's final embedding (full-softmax losses only).
        in_batch_collision: ``[B, B]`` boolean, ``True`` at ``(r, c)`` when
            ``pos_items[c]`` is a training positive of ``users[r]`` and ``c != r``
            (in-batch losses may mask these false negatives).
        user_tau: ``[B]`` per-row temperature from an adaptive schedule, or ``None``.
    """

    users: Tensor
    pos_items: Tensor
    user_emb: Tensor
    pos_emb: Tensor
    neg_items: Tensor | None = None
    neg_emb: Tensor | None = None
    neg_log_prob: Tensor | None = None
    all_item_emb: Tensor | None = None
    in_batch_collision: Tensor | None = None
    user_tau: Tensor | None = None


class CFLoss(nn.Module):
    """Base class of registered losses.

    Subclasses set what the trainer must provide:

    * ``negatives``: ``'in-batch'`` (other rows' positives), ``'sampled'`` (``num_negatives``
      per row from ``sampler``), ``'all'`` (full catalogue) or ``'none'``;
    * ``num_negatives``: ``M`` for sampled negatives;
    * ``sampler``: ``'uniform'`` or ``'popularity'``;

    and implement :meth:`forward` on a :class:`LossBatch`, returning a scalar. Losses with a
    temperature expose ``tau`` so that temperature schedules can set it.
    """

    negatives: str = "sampled"
    num_negatives: int = 1
    sampler: str = "uniform"
    pop_beta: float = 1.0
    paper: str = ""

    def forward(self, batch: LossBatch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def per_row(self, batch: LossBatch) -> Tensor:
        """Per-row loss ``[B]`` (used by adaptive temperatures); defaults to the mean."""
        raise NotImplementedError(f"{type(self).__name__} has no per-row form")
