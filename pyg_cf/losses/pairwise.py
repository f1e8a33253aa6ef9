"""Pairwise losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import (
    CFLoss,
    LossBatch,
    check_similarity,
    negative_scores,
    pair_negatives,
    similarity,
)
from pyg_cf.losses.registry import register_loss

__all__ = ["BPRLoss", "bpr_loss"]


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""Bayesian personalized ranking (Rendle et al., UAI 2009), mean over rows.

    .. math::
        \mathcal{L} = \operatorname{softplus}(s_{uj} - s_{ui}) = -\log\sigma(s_{ui} - s_{uj})

    Args:
        pos_score: ``[B]`` positive scores.
        neg_score: ``[B]`` or ``[B, M]`` negative scores (averaged over ``M``); see
            :func:`~pyg_cf.losses.base.pair_negatives`.
    """
    neg_score = pair_negatives(pos_score, neg_score)
    return F.softplus(neg_score - pos_score.unsqueeze(-1)).mean()


@register_loss("bpr")
class BPRLoss(CFLoss):
    r"""BPR with uniformly sampled negatives (Rendle et al., UAI 2009).

    .. math::
        \mathcal{L} = \operatorname{softplus}(s_{uj} - s_{ui})

    Args:
        num_negatives: Negatives per positive (default 1).
        similarity: ``'ip'`` (default) or ``'cos'``.
        sampler: ``'uniform'`` (default) or ``'popularity'``.
        pop_beta: Popularity exponent of the ``'popularity'`` sampler.
        reject_positives: Re-draw negatives that are positives of the user.
        shared_negatives: ``True`` (one set of negatives for the batch), an integer ``G``
            (``G`` sets, each shared by a block of rows) or ``False`` (per row; default);
            see :class:`~pyg_cf.losses.base.CFLoss`.
    """

    negatives = "sampled"
    paper = "Rendle et al., BPR: Bayesian Personalized Ranking from Implicit Feedback, UAI 2009"

    def __init__(
        self,
        num_negatives: int = 1,
        similarity: str = "ip",
        sampler: str = "uniform",
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
    ) -> None:
        super().__init__()
        self.similarity = check_similarity(similarity)
        self._set_sampling(num_negatives, sampler, pop_beta, reject_positives, shared_negatives)

    def per_row(self, batch: LossBatch) -> Tensor:
        """Loss of each row ``[B]`` (averaged over its negatives)."""
        if batch.neg_emb is None:
            raise ConfigError("BPR needs sampled negatives (batch.neg_emb is None)")
        pos = similarity(batch.user_emb, batch.pos_emb, self.similarity)
        neg = negative_scores(batch.user_emb, batch.neg_emb, self.similarity, batch.neg_unit)
        return F.softplus(neg - pos.unsqueeze(-1)).mean(-1)

    def forward(self, batch: LossBatch) -> Tensor:
        return self.per_row(batch).mean()

    def extra_repr(self) -> str:
        return (
            f"num_negatives={self.num_negatives}, similarity={self.similarity!r}"
            + self._sampling_repr()
        )
