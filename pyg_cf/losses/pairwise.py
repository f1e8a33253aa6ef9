"""Pairwise losses."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import CFLoss, LossBatch, similarity
from pyg_cf.losses.registry import register_loss

__all__ = ["BPRLoss", "bpr_loss"]


def bpr_loss(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    r"""Bayesian personalized ranking (Rendle et al., UAI 2009), mean over rows.

    .. math::
        \mathcal{L} = \operatorname{softplus}(s_{uj} - s_{ui}) = -\log\sigma(s_{ui} - s_{uj})

    Args:
        pos_score: ``[B]`` positive scores.
        neg_score: ``[B]`` or ``[B, M]`` negative scores (averaged over ``M``).
    """
    if neg_score.dim() == pos_score.dim() + 1:
        return F.softplus(neg_score - pos_score.unsqueeze(-1)).mean()
    return F.softplus(neg_score - pos_score).mean()


@register_loss("bpr")
class BPRLoss(CFLoss):
    r"""BPR with uniformly sampled negatives (Rendle et al., UAI 2009).

    .. math::
        \mathcal{L} = \operatorname{softplus}(s_{uj} - s_{ui})

    Args:
        num_negatives: Negatives per positive (default 1).
        similarity: ``'ip'`` (default) or ``'cos'``.
    """

    negatives = "sampled"
    paper = "Rendle et al., BPR: Bayesian Personalized Ranking from Implicit Feedback, UAI 2009"

    def __init__(self, num_negatives: int = 1, similarity: str = "ip") -> None:
        super().__init__()
        if num_negatives < 1:
            raise ConfigError(f"num_negatives must be >= 1, got {num_negatives}")
        if similarity not in ("ip", "cos"):
            raise ConfigError(f"similarity must be 'ip' or 'cos', got {similarity!r}")
        self.num_negatives = num_negatives
        self.similarity = similarity

    def forward(self, batch: LossBatch) -> Tensor:
        assert batch.neg_emb is not None, "BPR needs sampled negatives"
        pos = similarity(batch.user_emb, batch.pos_emb, self.similarity)
        neg = similarity(batch.user_emb.unsqueeze(1), batch.neg_emb, self.similarity)
        return bpr_loss(pos, neg)
