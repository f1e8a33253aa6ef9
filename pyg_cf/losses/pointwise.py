"""Pointwise losses: each positive and each negative is scored on its own."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import (
    LossBatch,
    SampledScoreLoss,
    check_number,
    pair_negatives,
    reduce_loss,
)
from pyg_cf.losses.registry import register_loss

__all__ = ["BinaryCrossEntropyLoss", "MeanSquaredErrorLoss", "bce_loss", "mse_loss"]


def bce_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    reduction: str = "mean",
    logit_bias: float | Tensor = 0.0,
) -> Tensor:
    r"""Binary cross-entropy on one positive and its ``M`` negatives (summed), computed as
    softplus so that it stays finite for any score.

    .. math::
        \mathcal{L} = -\log\sigma(s_{ui} + b)
            - \sum_{j \in N_u} \log\big(1 - \sigma(s_{uj} + b)\big)
        = \operatorname{softplus}(-s_{ui} - b)
            + \sum_{j \in N_u} \operatorname{softplus}(s_{uj} + b)

    Args:
        pos_score: ``[B]`` positive scores (logits).
        neg_score: ``[B, M]`` negative scores (logits), or ``[B]`` (one per row); see
            :func:`~pyg_cf.losses.base.pair_negatives`.
        reduction: ``'mean'`` (over rows), ``'sum'`` or ``'none'``.
        logit_bias: A global logit bias :math:`b` (default 0; a number, or a scalar tensor
            such as a trainable parameter): it leaves every ranking unchanged but lets a
            model whose scores cannot all be negative (LightGCN, whose layer mean mixes user
            and item embeddings) reach the base rate :math:`\sigma(b) = 1 / (1 + M)`
            (``b = -log M``).
    """
    neg_score = pair_negatives(pos_score, neg_score)
    if isinstance(logit_bias, Tensor) or logit_bias != 0:  # no truth test of a tensor
        pos_score, neg_score = pos_score + logit_bias, neg_score + logit_bias
    loss = F.softplus(-pos_score) + F.softplus(neg_score).sum(-1)
    return reduce_loss(loss, reduction)


def mse_loss(
    pos_score: Tensor, neg_score: Tensor, neg_weight: float = 1.0, reduction: str = "mean"
) -> Tensor:
    r"""Squared error towards 1 for the positive and 0 for the negatives.

    .. math::
        \mathcal{L} = \tfrac12 (s_{ui} - 1)^2 + \tfrac{w}{2} \sum_{j \in N_u} s_{uj}^2

    Args:
        pos_score: ``[B]`` positive scores.
        neg_score: ``[B, M]`` negative scores, or ``[B]`` (one per row); see
            :func:`~pyg_cf.losses.base.pair_negatives`.
        neg_weight: Weight :math:`w` of the negative terms (default 1).
        reduction: ``'mean'`` (over rows), ``'sum'`` or ``'none'``.
    """
    neg_score = pair_negatives(pos_score, neg_score)
    loss = 0.5 * (pos_score - 1).pow(2) + 0.5 * neg_weight * neg_score.pow(2).sum(-1)
    return reduce_loss(loss, reduction)


@register_loss("bce")
class BinaryCrossEntropyLoss(SampledScoreLoss):
    r"""Pointwise binary cross-entropy with sampled negatives, as compared in Wu et al.,
    "On the Effectiveness of Sampled Softmax Loss for Item Recommendation", TOIS 2024.

    .. math::
        \mathcal{L} = -\log\sigma(s_{ui}) - \sum_{j \in N_u} \log\big(1 - \sigma(s_{uj})\big)

    Args:
        num_negatives: Negatives per positive (default 4, uniform).
        similarity: ``'ip'`` (default) or ``'cos'``.
        sampler: ``'uniform'`` (default) or ``'popularity'``.
        pop_beta: Popularity exponent of the ``'popularity'`` sampler.
        reject_positives: Re-draw negatives that are positives of the user.
        shared_negatives: ``True`` (one set of negatives for the batch), an integer ``G``
            (``G`` sets, each shared by a block of rows) or ``False`` (per row; default);
            see :class:`~pyg_cf.losses.base.CFLoss`.
        logit_bias: Global logit bias :math:`b` added to every score inside the sigmoid
            (default 0; see :func:`bce_loss`). Rankings are unchanged.
        learn_bias: Make :math:`b` a trainable parameter (starting at ``logit_bias``),
            optimised with the model by :class:`~pyg_cf.train.Trainer` and saved in its
            checkpoints; ``False`` (default) keeps it fixed.
    """

    paper = (
        "Wu et al., On the Effectiveness of Sampled Softmax Loss for Item Recommendation, "
        "TOIS 2024 (BCE baseline)"
    )

    def __init__(
        self,
        num_negatives: int = 4,
        similarity: str = "ip",
        sampler: str = "uniform",
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
        logit_bias: float = 0.0,
        learn_bias: bool = False,
    ) -> None:
        super().__init__(
            num_negatives, similarity, sampler, pop_beta, reject_positives, shared_negatives
        )
        try:
            bias = float(logit_bias)
        except (TypeError, ValueError):
            bias = math.nan
        if not math.isfinite(bias):
            raise ConfigError(f"logit_bias must be a finite number, got {logit_bias!r}")
        if not isinstance(learn_bias, bool):
            raise ConfigError(f"learn_bias must be True or False, got {learn_bias!r}")
        self.logit_bias: float | torch.nn.Parameter = (
            torch.nn.Parameter(torch.tensor(bias)) if learn_bias else bias
        )

    def extra_repr(self) -> str:
        b = self.logit_bias
        learned = isinstance(b, Tensor)
        value = float(b.detach()) if isinstance(b, Tensor) else b
        return (
            f"num_negatives={self.num_negatives}, logit_bias={value:g}, learn_bias={learned}"
            + self._sampling_repr()
        )

    def per_row(self, batch: LossBatch) -> Tensor:
        """Loss of each row ``[B]``."""
        pos, neg = self._pos_neg(batch)
        return bce_loss(pos, neg, "none", self.logit_bias)


@register_loss("mse")
class MeanSquaredErrorLoss(SampledScoreLoss):
    r"""Pointwise squared error with sampled negatives (the regression loss of implicit
    feedback, Hu et al., "Collaborative Filtering for Implicit Feedback Datasets",
    ICDM 2008, with sampled zeros).

    .. math::
        \mathcal{L} = \tfrac12 (s_{ui} - 1)^2 + \tfrac{w}{2} \sum_{j \in N_u} s_{uj}^2

    Args:
        num_negatives: Negatives per positive (default 4, uniform).
        similarity: ``'ip'`` (default) or ``'cos'``.
        neg_weight: Weight :math:`w` of the negative terms (default 1; finite, ``>= 0``).
        sampler: ``'uniform'`` (default) or ``'popularity'``.
        pop_beta: Popularity exponent of the ``'popularity'`` sampler.
        reject_positives: Re-draw negatives that are positives of the user.
        shared_negatives: ``True`` (one set of negatives for the batch), an integer ``G``
            (``G`` sets, each shared by a block of rows) or ``False`` (per row; default);
            see :class:`~pyg_cf.losses.base.CFLoss`.
    """

    paper = "Hu, Koren, Volinsky, Collaborative Filtering for Implicit Feedback Datasets, ICDM 2008"

    def __init__(
        self,
        num_negatives: int = 4,
        similarity: str = "ip",
        neg_weight: float = 1.0,
        sampler: str = "uniform",
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
    ) -> None:
        super().__init__(
            num_negatives, similarity, sampler, pop_beta, reject_positives, shared_negatives
        )
        self.neg_weight = check_number(neg_weight, "neg_weight", low=0.0, strict=False)

    def per_row(self, batch: LossBatch) -> Tensor:
        """Loss of each row ``[B]``."""
        pos, neg = self._pos_neg(batch)
        return mse_loss(pos, neg, self.neg_weight, "none")

    def extra_repr(self) -> str:
        return (
            f"num_negatives={self.num_negatives}, neg_weight={self.neg_weight}, "
            f"similarity={self.similarity!r}" + self._sampling_repr()
        )
