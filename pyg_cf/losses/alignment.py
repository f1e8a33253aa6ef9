"""Alignment and uniformity (DirectAU): a loss without negatives."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import CFLoss, LossBatch, check_number
from pyg_cf.losses.registry import register_loss

__all__ = ["DirectAULoss", "alignment", "directau_loss", "uniformity"]


def alignment(user_emb: Tensor, item_emb: Tensor) -> Tensor:
    r"""Alignment of positive pairs, :math:`\frac{1}{B}\sum \|\hat u - \hat i\|^2` on
    L2-normalized embeddings."""
    u = F.normalize(user_emb, dim=-1)
    i = F.normalize(item_emb, dim=-1)
    return (u - i).pow(2).sum(-1).mean()


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    r"""Uniformity of a set of embeddings, computed with log-sum-exp.

    .. math::
        U(X) = \log \frac{1}{n(n-1)} \sum_{x \ne x'} e^{-t \|\hat x - \hat x'\|^2}

    Squared distances are taken as :math:`2 - 2\hat x^\top \hat x'` (differentiable even
    when two rows coincide, unlike ``torch.pdist``). Needs at least two rows.
    """
    n = x.size(0)
    if n < 2:
        raise ConfigError(f"uniformity needs at least 2 embeddings, got {n}")
    z = F.normalize(x, dim=-1)
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    sq = (2 - 2 * (z @ z.t())).clamp(min=0)[iu[0], iu[1]]
    return torch.logsumexp(-t * sq, dim=0) - math.log(iu.size(1))


def directau_loss(user_emb: Tensor, item_emb: Tensor, gamma: float = 1.0) -> Tensor:
    r"""DirectAU (Wang et al., KDD 2022).

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_{(u,i)} \|\hat u - \hat i\|^2 +
        \gamma \frac{U(\text{users}) + U(\text{items})}{2},\qquad
        U(X) = \log \frac{1}{n(n-1)} \sum_{x \ne x'} e^{-2\|\hat x - \hat x'\|^2}

    Args:
        user_emb: ``[B, d]`` user embeddings of the batch's positive pairs.
        item_emb: ``[B, d]`` item embeddings of the same pairs.
        gamma: Weight :math:`\gamma` of the uniformity term.

    A batch of one pair (an epoch's last batch can be one) has no uniformity term: it is
    the alignment alone.
    """
    align = alignment(user_emb, item_emb)
    if user_emb.size(0) < 2:
        return align
    return align + gamma * (uniformity(user_emb) + uniformity(item_emb)) / 2


@register_loss("directau")
class DirectAULoss(CFLoss):
    r"""Alignment and uniformity (Wang et al., "Towards Representation Alignment and
    Uniformity in Collaborative Filtering", KDD 2022).

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_{(u,i)} \|\hat u - \hat i\|^2 +
        \gamma \frac{U(\text{users}) + U(\text{items})}{2},\qquad
        U(X) = \log \frac{1}{n(n-1)} \sum_{x \ne x'} e^{-2\|\hat x - \hat x'\|^2}

    over the users and items of the batch (as in the official code, repeated ids are kept).
    No negatives are sampled.

    Args:
        gamma: Weight :math:`\gamma` of uniformity (default 1; Gowalla 5 in the paper;
            finite, ``>= 0``).
        similarity: Only ``'cos'``: the loss is defined on normalized embeddings.
    """

    negatives = "none"
    num_negatives = 0
    paper = (
        "Wang et al., Towards Representation Alignment and Uniformity in Collaborative "
        "Filtering, KDD 2022"
    )

    def __init__(self, gamma: float = 1.0, similarity: str = "cos") -> None:
        super().__init__()
        if similarity != "cos":
            raise ConfigError(
                f"directau is defined on normalized embeddings: similarity must be 'cos', "
                f"got {similarity!r}"
            )
        self.gamma = check_number(gamma, "gamma", low=0.0, strict=False)
        self.similarity = similarity

    def forward(self, batch: LossBatch) -> Tensor:
        return directau_loss(batch.user_emb, batch.pos_emb, self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"
