"""Softmax-family losses."""

from __future__ import annotations

import torch
from torch import Tensor

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import CFLoss, LossBatch, normalize_if
from pyg_cf.losses.registry import register_loss

__all__ = ["SampledSoftmaxLoss", "sampled_softmax_loss"]


def sampled_softmax_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    tau: float | Tensor = 1.0,
    include_positive: bool = True,
    neg_mask: Tensor | None = None,
    log_q: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""Sampled softmax (Wu et al., TOIS 2024, eq. 3), computed with log-sum-exp.

    .. math::
        \mathcal{L} = -\frac{s_{ui}}{\tau} +
        \log\Big(e^{s_{ui}/\tau} + \sum_{j \in N_u} e^{s_{uj}/\tau - \log Q_j}\Big)

    Args:
        pos_score: ``[B]`` positive scores :math:`s_{ui}`.
        neg_score: ``[B, M]`` negative scores :math:`s_{uj}`.
        tau: Temperature, a float or a ``[B]`` tensor (per row).
        include_positive: Keep :math:`e^{s_{ui}/\tau}` in the denominator.
        neg_mask: ``[B, M]`` boolean, ``True`` for negatives to ignore (false negatives).
        log_q: ``[B, M]`` log sampling probabilities for logQ correction, or ``None``.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
    """
    if isinstance(tau, Tensor) and tau.dim() == 1:
        tau_p, tau_n = tau, tau.unsqueeze(-1)
    else:
        tau_p = tau_n = tau  # type: ignore[assignment]
    pos = pos_score / tau_p
    neg = neg_score / tau_n
    if log_q is not None:
        neg = neg - log_q
    if neg_mask is not None:
        neg = neg.masked_fill(neg_mask, float("-inf"))
    logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1) if include_positive else neg
    loss = torch.logsumexp(logits, dim=-1) - pos
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


@register_loss("ssm")
class SampledSoftmaxLoss(CFLoss):
    r"""Sampled softmax loss (Wu et al., "On the Effectiveness of Sampled Softmax Loss for
    Item Recommendation", TOIS 2024, eq. 3).

    .. math::
        \mathcal{L} = -\frac{s_{ui}}{\tau} +
        \log\Big(e^{s_{ui}/\tau} + \sum_{j \in N_u} e^{s_{uj}/\tau}\Big)

    With ``negatives='in-batch'`` (default) the negatives of row :math:`r` are the other rows'
    positive items; with ``negatives='sampled'`` ``num_negatives`` items are drawn per row.

    Args:
        tau: Temperature (default 0.1).
        similarity: ``'cos'`` (default, as in the paper) or ``'ip'``.
        negatives: ``'in-batch'`` or ``'sampled'``.
        num_negatives: Negatives per row when sampled.
        sampler: ``'uniform'`` or ``'popularity'`` when sampled.
        include_positive: Keep the positive in the denominator (default ``True``).
        mask_collisions: With in-batch negatives, ignore other rows' items that are in fact
            training positives of the row's user (default ``True``).
        logq_correction: Subtract the log sampling probability of sampled negatives.
    """

    paper = (
        "Wu et al., On the Effectiveness of Sampled Softmax Loss for Item Recommendation, TOIS 2024"
    )

    def __init__(
        self,
        tau: float = 0.1,
        similarity: str = "cos",
        negatives: str = "in-batch",
        num_negatives: int = 256,
        sampler: str = "uniform",
        include_positive: bool = True,
        mask_collisions: bool = True,
        logq_correction: bool = False,
    ) -> None:
        super().__init__()
        if tau <= 0:
            raise ConfigError(f"tau must be > 0, got {tau}")
        if negatives not in ("in-batch", "sampled"):
            raise ConfigError(f"negatives must be 'in-batch' or 'sampled', got {negatives!r}")
        if similarity not in ("ip", "cos"):
            raise ConfigError(f"similarity must be 'ip' or 'cos', got {similarity!r}")
        if sampler not in ("uniform", "popularity"):
            raise ConfigError(f"sampler must be 'uniform' or 'popularity', got {sampler!r}")
        self.tau = float(tau)
        self.similarity = similarity
        self.negatives = negatives
        self.num_negatives = int(num_negatives) if negatives == "sampled" else 0
        self.sampler = sampler
        self.include_positive = include_positive
        self.mask_collisions = mask_collisions
        self.logq_correction = logq_correction

    def _tau(self, batch: LossBatch, tau: float | Tensor | None) -> float | Tensor:
        if tau is not None:
            return tau
        return batch.user_tau if batch.user_tau is not None else self.tau

    def per_row(self, batch: LossBatch, tau: float | Tensor | None = None) -> Tensor:
        """Loss of each row ``[B]`` at temperature ``tau`` (default: the batch's per-user
        temperature if any, else ``self.tau``)."""
        t = self._tau(batch, tau)
        u = normalize_if(batch.user_emb, self.similarity)
        p = normalize_if(batch.pos_emb, self.similarity)
        if self.negatives == "in-batch":
            # Row r's candidates are all positives of the batch; the diagonal is its own
            # positive, so one [B, B] matrix holds numerator and denominator (no concat).
            scale = 1.0 / t.unsqueeze(-1) if isinstance(t, Tensor) else 1.0 / t
            logits = (u * scale) @ p.t()
            pos = logits.diagonal()
            mask = None
            if self.mask_collisions and batch.in_batch_collision is not None:
                mask = batch.in_batch_collision
            if not self.include_positive:
                eye = torch.eye(logits.size(0), dtype=torch.bool, device=logits.device)
                mask = eye if mask is None else mask | eye
            if mask is not None:
                logits = logits.masked_fill(mask, float("-inf"))
            return torch.logsumexp(logits, dim=-1) - pos
        if batch.neg_emb is None:
            raise ConfigError("ssm with negatives='sampled' needs neg_emb in the batch")
        n = normalize_if(batch.neg_emb, self.similarity)
        pos_s = (u * p).sum(-1)
        neg_s = torch.einsum("bd,bmd->bm", u, n)
        log_q = batch.neg_log_prob if self.logq_correction else None
        return sampled_softmax_loss(
            pos_s, neg_s, t, self.include_positive, None, log_q, reduction="none"
        )

    def forward(self, batch: LossBatch) -> Tensor:
        return self.per_row(batch).mean()

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, similarity={self.similarity!r}, negatives={self.negatives!r}"
            f", num_negatives={self.num_negatives}"
        )
