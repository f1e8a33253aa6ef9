"""Margin losses: cosine contrastive (CCL), multi-margin (MML) and pairwise hinge."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
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

__all__ = [
    "CosineContrastiveLoss",
    "HingeLoss",
    "MultiMarginLoss",
    "ccl_loss",
    "hinge_loss",
    "mml_loss",
]


def ccl_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    margin: float = 0.9,
    neg_weight: float = 150.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Cosine contrastive loss (Mao et al., SimpleX, CIKM 2021).

    .. math::
        \mathcal{L} = \operatorname{ReLU}(1 - s_{ui}) +
        \frac{w}{M} \sum_{j \in N_u} \operatorname{ReLU}(s_{uj} - m)

    Args:
        pos_score: ``[B]`` positive scores (cosine in the paper).
        neg_score: ``[B, M]`` negative scores, or ``[B]`` (one per row); see
            :func:`~pyg_cf.losses.base.pair_negatives`.
        margin: Margin :math:`m` of the negatives.
        neg_weight: Weight :math:`w` of the negative term.
        reduction: ``'mean'`` (over rows), ``'sum'`` or ``'none'``.
    """
    neg_score = pair_negatives(pos_score, neg_score)
    loss = torch.relu(1 - pos_score) + neg_weight * torch.relu(neg_score - margin).mean(-1)
    return reduce_loss(loss, reduction)


def mml_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    margins: Sequence[float] | Tensor = (0.7, 0.8, 0.9),
    weights: Sequence[float] | Tensor = (0.10, 0.15, 0.75),
    neg_weight: float = 700.0,
    pos_weight: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Multi-margin loss (Ozsoy, arXiv:2405.04614, 2024).

    .. math::
        \mathcal{L} = w_{pos}\operatorname{ReLU}(1 - s_{ui}) + w_{neg} \frac{1}{M}
        \sum_{j \in N_u} \sum_{k} w_k \operatorname{ReLU}(s_{uj} - m_k)

    With one margin and weight 1 it is :func:`ccl_loss` with ``neg_weight``.

    Args:
        pos_score: ``[B]`` positive scores.
        neg_score: ``[B, M]`` negative scores, or ``[B]`` (one per row); see
            :func:`~pyg_cf.losses.base.pair_negatives`.
        margins: The margins :math:`m_k`.
        weights: Their weights :math:`w_k` (same length).
        neg_weight: :math:`w_{neg}`.
        pos_weight: :math:`w_{pos}`.
        reduction: ``'mean'`` (over rows), ``'sum'`` or ``'none'``.
    """
    neg_score = pair_negatives(pos_score, neg_score)
    m = torch.as_tensor(margins, dtype=neg_score.dtype, device=neg_score.device)
    w = torch.as_tensor(weights, dtype=neg_score.dtype, device=neg_score.device)
    neg = (torch.relu(neg_score.unsqueeze(-1) - m) * w).sum(-1).mean(-1)
    loss = pos_weight * torch.relu(1 - pos_score) + neg_weight * neg
    return reduce_loss(loss, reduction)


def hinge_loss(
    pos_score: Tensor, neg_score: Tensor, margin: float = 1.0, reduction: str = "mean"
) -> Tensor:
    r"""Pairwise margin-ranking hinge, averaged over the ``M`` negatives of a row.

    .. math::
        \mathcal{L} = \operatorname{ReLU}(m + s_{uj} - s_{ui})

    Args:
        pos_score: ``[B]`` positive scores.
        neg_score: ``[B]`` or ``[B, M]`` negative scores; see
            :func:`~pyg_cf.losses.base.pair_negatives`.
        margin: Margin :math:`m`.
        reduction: ``'mean'`` (over rows), ``'sum'`` or ``'none'``.
    """
    neg_score = pair_negatives(pos_score, neg_score)
    loss = torch.relu(margin + neg_score - pos_score.unsqueeze(-1)).mean(-1)
    return reduce_loss(loss, reduction)


@register_loss("ccl")
class CosineContrastiveLoss(SampledScoreLoss):
    r"""Cosine contrastive loss (Mao et al., "SimpleX: A Simple and Strong Baseline for
    Collaborative Filtering", CIKM 2021).

    .. math::
        \mathcal{L} = \operatorname{ReLU}(1 - s_{ui}) +
        \frac{w}{M} \sum_{j \in N_u} \operatorname{ReLU}(s_{uj} - m)

    Defaults are SimpleX's Gowalla MF settings: :math:`m = 0.9`, :math:`w = 150`, 800
    uniform negatives, cosine.

    Args:
        margin: Margin :math:`m` (default 0.9; finite).
        neg_weight: Weight :math:`w` (default 150; finite, ``>= 0``).
        num_negatives: :math:`M` (default 800).
        similarity: ``'cos'`` (default) or ``'ip'``.
        sampler: ``'uniform'`` (default) or ``'popularity'``.
        pop_beta: Popularity exponent of the ``'popularity'`` sampler.
        reject_positives: Re-draw negatives that are positives of the user.
        shared_negatives: ``True`` (one set of negatives for the batch), an integer ``G``
            (``G`` sets, each shared by a block of rows) or ``False`` (per row; default);
            see :class:`~pyg_cf.losses.base.CFLoss`.
    """

    paper = (
        "Mao et al., SimpleX: A Simple and Strong Baseline for Collaborative Filtering, CIKM 2021"
    )

    def __init__(
        self,
        margin: float = 0.9,
        neg_weight: float = 150.0,
        num_negatives: int = 800,
        similarity: str = "cos",
        sampler: str = "uniform",
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
    ) -> None:
        super().__init__(
            num_negatives, similarity, sampler, pop_beta, reject_positives, shared_negatives
        )
        self.margin = check_number(margin, "margin")
        self.neg_weight = check_number(neg_weight, "neg_weight", low=0.0, strict=False)

    def per_row(self, batch: LossBatch) -> Tensor:
        """Loss of each row ``[B]``."""
        pos, neg = self._pos_neg(batch)
        return ccl_loss(pos, neg, self.margin, self.neg_weight, "none")

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, neg_weight={self.neg_weight}, "
            f"num_negatives={self.num_negatives}, similarity={self.similarity!r}"
            + self._sampling_repr()
        )


@register_loss("mml")
class MultiMarginLoss(SampledScoreLoss):
    r"""Multi-margin loss (Ozsoy, "Multi-Margin Loss: Proposal and Application in Recommender
    Systems", arXiv:2405.04614, 2024; later titled "Multi-Margin Cosine Loss").

    .. math::
        \mathcal{L} = w_{pos}\operatorname{ReLU}(1 - s_{ui}) + w_{neg} \frac{1}{M}
        \sum_{j \in N_u} \sum_{k} w_k \operatorname{ReLU}(s_{uj} - m_k)

    Defaults are the paper's Gowalla settings: margins :math:`[0.7, 0.8, 0.9]`, weights
    :math:`[0.10, 0.15, 0.75]`, :math:`w_{neg} = 700`, :math:`w_{pos} = 1`, 100 uniform
    negatives, cosine (Yelp2018: margins :math:`[0.6, 0.7, 0.8, 0.9]`, weights
    :math:`[0.05, 0.15, 0.20, 0.60]`, :math:`w_{neg}` 350–400). With one margin, weight
    :math:`w_1 = 1` and :math:`w_{pos} = 1` it is :class:`CosineContrastiveLoss`.

    Args:
        margins: The margins :math:`m_k` (finite).
        weights: Their weights :math:`w_k` (finite, ``>= 0``).
        neg_weight: :math:`w_{neg}` (default 700; finite, ``>= 0``).
        pos_weight: :math:`w_{pos}` (default 1; finite, ``>= 0``).
        num_negatives: :math:`M` (default 100).
        similarity: ``'cos'`` (default) or ``'ip'``.
        sampler: ``'uniform'`` (default) or ``'popularity'``.
        pop_beta: Popularity exponent of the ``'popularity'`` sampler.
        reject_positives: Re-draw negatives that are positives of the user.
        shared_negatives: ``True`` (one set of negatives for the batch), an integer ``G``
            (``G`` sets, each shared by a block of rows) or ``False`` (per row; default);
            see :class:`~pyg_cf.losses.base.CFLoss`.
    """

    paper = (
        "Ozsoy, Multi-Margin Loss: Proposal and Application in Recommender Systems, "
        "arXiv:2405.04614, 2024"
    )
    margin_values: Tensor
    weight_values: Tensor

    def __init__(
        self,
        margins: Sequence[float] = (0.7, 0.8, 0.9),
        weights: Sequence[float] = (0.10, 0.15, 0.75),
        neg_weight: float = 700.0,
        pos_weight: float = 1.0,
        num_negatives: int = 100,
        similarity: str = "cos",
        sampler: str = "uniform",
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
    ) -> None:
        super().__init__(
            num_negatives, similarity, sampler, pop_beta, reject_positives, shared_negatives
        )
        margins = [float(m) for m in margins]
        weights = [float(w) for w in weights]
        if not margins or len(margins) != len(weights):
            raise ConfigError(
                f"margins and weights must be non-empty and of the same length, got "
                f"{len(margins)} margins and {len(weights)} weights"
            )
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ConfigError(f"weights must be >= 0 and finite, got {weights}")
        if not all(math.isfinite(m) for m in margins):
            raise ConfigError(f"margins must be finite, got {margins}")
        self.margins, self.weights = margins, weights
        # as (non-persistent) buffers too: they follow loss.to(device), so a CUDA step
        # makes no host-to-device copy of them (which a CUDA graph could not record)
        self.register_buffer(
            "margin_values", torch.tensor(margins, dtype=torch.float64), persistent=False
        )
        self.register_buffer(
            "weight_values", torch.tensor(weights, dtype=torch.float64), persistent=False
        )
        self.neg_weight = check_number(neg_weight, "neg_weight", low=0.0, strict=False)
        self.pos_weight = check_number(pos_weight, "pos_weight", low=0.0, strict=False)

    def per_row(self, batch: LossBatch) -> Tensor:
        """Loss of each row ``[B]``."""
        pos, neg = self._pos_neg(batch)
        return mml_loss(
            pos,
            neg,
            self.margin_values,
            self.weight_values,
            self.neg_weight,
            self.pos_weight,
            "none",
        )

    def extra_repr(self) -> str:
        return (
            f"margins={self.margins}, weights={self.weights}, neg_weight={self.neg_weight}, "
            f"num_negatives={self.num_negatives}, similarity={self.similarity!r}"
            + self._sampling_repr()
        )


@register_loss("hinge")
class HingeLoss(SampledScoreLoss):
    r"""Pairwise margin-ranking hinge (Weston, Bengio, Usunier, "WSABIE: Scaling Up To Large
    Vocabulary Image Annotation", IJCAI 2011), averaged over the row's negatives.

    .. math::
        \mathcal{L} = \operatorname{ReLU}(m + s_{uj} - s_{ui})

    Args:
        margin: Margin :math:`m` (default 1.0, for inner products; finite).
        num_negatives: Negatives per positive (default 1).
        similarity: ``'ip'`` (default) or ``'cos'``.
        sampler: ``'uniform'`` (default) or ``'popularity'``.
        pop_beta: Popularity exponent of the ``'popularity'`` sampler.
        reject_positives: Re-draw negatives that are positives of the user.
        shared_negatives: ``True`` (one set of negatives for the batch), an integer ``G``
            (``G`` sets, each shared by a block of rows) or ``False`` (per row; default);
            see :class:`~pyg_cf.losses.base.CFLoss`.
    """

    paper = (
        "Weston, Bengio, Usunier, WSABIE: Scaling Up To Large Vocabulary Image Annotation, "
        "IJCAI 2011"
    )

    def __init__(
        self,
        margin: float = 1.0,
        num_negatives: int = 1,
        similarity: str = "ip",
        sampler: str = "uniform",
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
    ) -> None:
        super().__init__(
            num_negatives, similarity, sampler, pop_beta, reject_positives, shared_negatives
        )
        self.margin = check_number(margin, "margin")

    def per_row(self, batch: LossBatch) -> Tensor:
        """Loss of each row ``[B]``."""
        pos, neg = self._pos_neg(batch)
        return hinge_loss(pos, neg, self.margin, "none")

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, num_negatives={self.num_negatives}, "
            f"similarity={self.similarity!r}" + self._sampling_repr()
        )
