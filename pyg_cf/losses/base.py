"""What every loss receives, and the base class of loss modules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyg_cf.errors import ConfigError

if TYPE_CHECKING:
    from pyg_cf.data.pairs import UserItemIndex

__all__ = [
    "CFLoss",
    "LossBatch",
    "SampledScoreLoss",
    "check_number",
    "forward_is_row_mean",
    "masked_logsumexp",
    "negative_scores",
    "pair_negatives",
    "reduce_loss",
    "row_logsumexp",
    "similarity",
]

_SIMILARITIES = ("ip", "cos")
_SAMPLERS = ("uniform", "popularity")


def check_similarity(kind: str, name: str = "similarity") -> str:
    """``kind`` if it is ``'ip'`` or ``'cos'``, else a :class:`ConfigError` naming ``name``."""
    if kind not in _SIMILARITIES:
        raise ConfigError(f"{name} must be 'ip' or 'cos', got {kind!r}")
    return kind


def check_number(value: float, name: str, low: float | None = None, strict: bool = True) -> float:
    """``float(value)`` if it is a finite number above ``low`` (``> low`` when ``strict``,
    ``>= low`` otherwise; any finite number when ``low`` is ``None``), else a
    :class:`ConfigError` naming ``name`` and the value."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if low is None:
        ok, bound = math.isfinite(x), ""
    else:
        ok = math.isfinite(x) and (x > low if strict else x >= low)
        bound = f" {'>' if strict else '>='} {low:g} and"
    if not ok:
        raise ConfigError(f"{name} must be{bound} a finite number, got {value!r}")
    return x


def pair_negatives(pos_score: Tensor, neg_score: Tensor) -> Tensor:
    """``neg_score`` as ``[B, M]`` negatives of the ``[B]`` rows of ``pos_score``.

    A negative of the same shape as ``pos_score`` is one negative per row and becomes
    ``[B, 1]``. Otherwise ``neg_score`` must have one axis more than ``pos_score``, with the
    leading ones equal to those of ``pos_score`` or ``1`` (``[1, M]``: one set of negatives
    shared by every row). Anything else — a ``[B]`` negative against a ``[B, 1]`` positive,
    which would broadcast to ``[B, B]``, or a ``[B]`` negative against a ``[B']`` one — is a
    :class:`ConfigError` naming both shapes, instead of silently mixing rows.
    """
    if neg_score.shape == pos_score.shape:
        return neg_score.unsqueeze(-1)
    lead = neg_score.shape[:-1]
    if neg_score.dim() != pos_score.dim() + 1 or any(
        n not in (p, 1) for n, p in zip(lead, pos_score.shape)
    ):
        raise ConfigError(
            f"neg_score of shape {tuple(neg_score.shape)} does not fit pos_score of shape "
            f"{tuple(pos_score.shape)}: pass [B] positives with [B, M] (or [1, M] shared) "
            "negatives, or [B] negatives (one per row)"
        )
    return neg_score


def similarity(a: Tensor, b: Tensor, kind: str = "ip") -> Tensor:
    """Row-wise similarity of broadcastable ``[..., d]`` tensors: inner product or cosine."""
    if kind == "ip":
        return (a * b).sum(-1)
    if kind == "cos":
        return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)
    raise ConfigError(f"similarity must be 'ip' or 'cos', got {kind!r}")


def is_shared(neg_emb: Tensor) -> bool:
    """Whether negatives ``[1, M, d]`` are one set shared by every row of the batch."""
    return neg_emb.dim() == 3 and neg_emb.size(0) == 1


def negative_sets(batch_size: int, sets: int) -> tuple[int, int]:
    r"""``(G, S)``: the layout of ``batch_size`` rows sharing ``sets`` sets of negatives.

    Rows are split into contiguous blocks of :math:`S = \lceil B / \min(\text{sets}, B)
    \rceil` rows, block :math:`g` (rows :math:`gS \ldots (g+1)S - 1`) sharing set :math:`g`;
    :math:`G = \lceil B / S \rceil \le` ``sets`` blocks are needed. The layout is a fixed
    point (``negative_sets(B, G) == (G, S)``), so a ``[G, M, d]`` tensor of sets identifies
    it. ``sets = 1`` is one set for the batch, ``sets >= B`` one per row.
    """
    if batch_size < 1 or sets < 1:
        raise ConfigError(
            f"need a positive batch size and number of sets, got {batch_size}, {sets}"
        )
    rows = -(-batch_size // min(sets, batch_size))
    return -(-batch_size // rows), rows


def spread_sets(sets: Tensor, rows: int, batch_size: int) -> Tensor:
    """``[B, M]`` per-row view of ``sets`` ``[G, M]`` whose set ``g`` belongs to rows
    ``gS … (g+1)S - 1`` (``S = rows``, :func:`negative_sets`): a stride-0 expanded view for
    one set, a copy otherwise."""
    if sets.size(0) == 1:
        return sets.expand(batch_size, sets.size(1))
    return sets.repeat_interleave(rows, dim=0)[:batch_size]


def negative_scores(
    user_emb: Tensor, neg_emb: Tensor, kind: str = "ip", unit: bool = False
) -> Tensor:
    r"""Scores ``[B, M]`` of each row's user ``[B, d]`` against its negatives ``[B, M, d]``.

    A batched matrix product (the product itself makes no ``[B, M, d]`` temporary; cosine
    normalisation of per-row negatives does, unless ``unit``); when the negatives are one set
    ``[1, M, d]`` shared by all rows (:func:`is_shared`), a single
    ``[B, d] x [d, M]`` product; ``[G, M, d]`` with ``1 < G < B`` are ``G`` sets, each shared
    by a block of rows (:func:`negative_sets`), scored with ``G`` products. ``unit=True``
    says the negatives already have unit norm (``LossBatch.neg_unit``), so cosine scores
    skip normalising the ``[B, M, d]`` tensor.
    """
    u = normalize_if(user_emb, kind)
    n = neg_emb if unit else normalize_if(neg_emb, kind)
    if is_shared(n):
        return u @ n[0].T
    b, g = u.size(0), n.size(0)
    if g != b:  # G sets, each shared by a block of S rows: G products [S, d] x [d, M]
        sets, rows = negative_sets(b, g)
        if sets != g:
            raise ConfigError(
                f"{g} sets of negatives do not tile a batch of {b} rows "
                f"(blocks of {rows} rows need {sets} sets; see negative_sets)"
            )
        blocks = F.pad(u, (0, 0, 0, g * rows - b)).view(g, rows, -1)
        return torch.bmm(blocks, n.transpose(1, 2)).flatten(0, 1)[:b]
    return torch.bmm(n, u.unsqueeze(-1)).squeeze(-1)


def normalize_if(x: Tensor, kind: str) -> Tensor:
    """``x`` L2-normalized along the last axis when ``kind == 'cos'``, else ``x``."""
    if kind == "cos":
        return F.normalize(x, dim=-1)
    if kind != "ip":
        raise ConfigError(f"similarity must be 'ip' or 'cos', got {kind!r}")
    return x


def reduce_loss(loss: Tensor, reduction: str = "mean") -> Tensor:
    """Apply ``reduction`` (``'mean'``, ``'sum'`` or ``'none'``) to per-row losses."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ConfigError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def masked_logsumexp(x: Tensor, mask: Tensor | None, dim: int = -1) -> tuple[Tensor, Tensor]:
    r"""Log-sum-exp of ``x`` along ``dim`` ignoring entries where ``mask`` is ``True``.

    Rows whose entries are all masked get the value ``0`` and ``False`` in the returned
    ``valid`` tensor, with finite (zero) gradients, so that callers can drop them without
    producing ``NaN`` gradients (``torch.logsumexp`` of an all ``-inf`` row back-propagates
    ``NaN``).

    Returns:
        ``(lse, valid)``, both with ``dim`` reduced.
    """
    if mask is None:
        lse = torch.logsumexp(x, dim=dim)
        if x.size(dim) == 0:  # no term at all: the row contributes 0, as a masked-out one
            return torch.zeros_like(lse), torch.zeros_like(lse, dtype=torch.bool)
        return lse, torch.ones_like(lse, dtype=torch.bool)
    valid = ~mask.all(dim=dim)
    x = x.masked_fill(mask, float("-inf"))
    x = x.masked_fill(~valid.unsqueeze(dim), 0.0)
    lse = torch.logsumexp(x, dim=dim)
    return torch.where(valid, lse, torch.zeros_like(lse)), valid


_ONCE = (
    "row_logsumexp (the log-sum-exp of the full softmax) is differentiable once only: its "
    "backward ran with create_graph=True, and the gradient would silently lack this term's "
    "second derivative; use torch.logsumexp where second derivatives are needed"
)


class _RowLogSumExp(torch.autograd.Function):
    """Row log-sum-exp of a ``[B, N]`` tensor whose backward is one product.

    ``torch.logsumexp`` keeps its input and recomputes ``exp(x - lse)`` in backward: on the
    full-catalogue ``[B, I]`` logits of a softmax loss that is several ``[B, I]``
    temporaries per step, and on CPU each fresh one of that size costs page faults. Here the
    row softmax is formed once in forward (one ``[B, N]`` buffer, then in place) and
    backward is one product with it.

    That backward is not differentiable itself (it keeps the softmax, not ``x``), so a
    backward with ``create_graph=True`` (double backward, Hessian-vector products, gradient
    penalties) raises a ``RuntimeError`` instead of returning a gradient whose graph
    silently lacks this term (as it did when summed with other losses, whose gradients do
    have a graph). ``torch.autograd.function.once_differentiable`` would not do: it marks
    the gradient only where the incoming one requires a gradient, which that of a loss's
    mean does not, and a mark off the path to ``x`` is skipped by
    ``torch.autograd.grad(..., inputs=x)``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        m = x.amax(dim=1, keepdim=True)
        p = (x - m).exp_()
        # float16 rows of more than 65504 near-equal logits would sum to inf: accumulate
        # in float32 (no [B, N] copy), return in the input's dtype
        acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        s = p.sum(dim=1, keepdim=True, dtype=acc)
        p.div_(s)
        ctx.save_for_backward(p)
        return (m + s.log()).squeeze(1).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        if torch.is_grad_enabled():  # grad mode is on in a backward only with create_graph
            raise RuntimeError(_ONCE)
        (p,) = ctx.saved_tensors
        return p * grad.unsqueeze(1)


def row_logsumexp(x: Tensor) -> Tensor:
    r"""``torch.logsumexp(x, dim=1)`` of a ``[B, N]`` tensor whose rows each have a finite
    entry, with fewer ``[B, N]`` temporaries (one saved softmax, one gradient): for large
    ``N`` such as full-catalogue logits. Half-precision rows are summed in float32 (where
    ``torch.logsumexp`` overflows to ``inf`` once :math:`\sum_j e^{x_j - \max x} > 65504`).

    Differentiable once: where ``x`` requires a gradient, a backward with
    ``create_graph=True`` raises a ``RuntimeError`` (see :class:`_RowLogSumExp`); use
    ``torch.logsumexp`` for second derivatives."""
    if not x.requires_grad and x.dtype not in (torch.float16, torch.bfloat16):
        return torch.logsumexp(x, dim=1)
    out: Tensor = _RowLogSumExp.apply(x)
    return out


@dataclass
class LossBatch:
    """One training batch as a loss sees it.

    Attributes:
        users: ``[B]`` global user ids of the positive pairs.
        pos_items: ``[B]`` global item ids of the positive pairs.
        user_emb: ``[B, d]`` final user embeddings.
        pos_emb: ``[B, d]`` final embeddings of the positive items.
        neg_items: ``[B, M]`` sampled negative ids (``None`` unless the loss samples).
        neg_emb: ``[B, M, d]`` their final embeddings, ``[1, M, d]`` when one set of
            negatives is shared by every row (``shared_negatives=True``), or ``[G, M, d]``
            for ``G`` sets shared by blocks of rows (``shared_negatives=G``,
            :func:`negative_sets`).
        neg_unit: ``neg_emb`` rows are already L2-normalised (the trainer normalises the
            item table before gathering per-row negatives for cosine losses: ``[I, d]``
            work instead of ``[B, M, d]``); cosine scores then use them as they are.
        neg_log_prob: ``[B, M]`` log-probability with which each negative was drawn
            (for logQ correction), when known.
        all_item_emb: ``[I, d]`` every item's final embedding (full-softmax losses only).
        in_batch_collision: ``[B, B]`` boolean, ``True`` at ``(r, c)`` when
            ``pos_items[c]`` is a training positive of ``users[r]`` and ``c != r``
            (in-batch losses may mask these false negatives).
        user_tau: ``[B]`` per-row temperature from an adaptive schedule, or ``None``
            (takes precedence over the loss's ``user_tau_table``).
        positives: The training pairs, for losses that mask a user's other positives
            (``SoftmaxLoss(mask_positives=True)``), or ``None``.
    """

    users: Tensor
    pos_items: Tensor
    user_emb: Tensor
    pos_emb: Tensor
    neg_items: Tensor | None = None
    neg_emb: Tensor | None = None
    neg_unit: bool = False
    neg_log_prob: Tensor | None = None
    all_item_emb: Tensor | None = None
    in_batch_collision: Tensor | None = None
    user_tau: Tensor | None = None
    positives: UserItemIndex | None = None


def forward_is_row_mean(loss: nn.Module) -> bool:
    """Whether ``loss``'s :meth:`~CFLoss.forward` is the mean of its ``per_row`` terms:
    ``row_mean = True`` declared by the same class that defines the ``forward`` in use (a
    subclass that overrides ``forward`` without declaring it again is not trusted)."""
    for cls in type(loss).__mro__:
        if "forward" in vars(cls):
            return bool(vars(cls).get("row_mean", False))
    return False


class CFLoss(nn.Module):
    """Base class of registered losses.

    Subclasses set what the trainer must provide:

    * ``negatives``: ``'in-batch'`` (other rows' positives), ``'sampled'`` (``num_negatives``
      per row from ``sampler``), ``'all'`` (full catalogue) or ``'none'``;
    * ``num_negatives``: ``M`` for sampled negatives;
    * ``sampler``: ``'uniform'`` or ``'popularity'`` (with exponent ``pop_beta``);
    * ``reject_positives``: re-draw sampled negatives that are training positives of the
      row's user;
    * ``shared_negatives``: ``True`` for one set of sampled negatives for the whole batch
      (``neg_emb`` is then ``[1, M, d]``, scored with one matrix product by
      :func:`negative_scores`), an integer ``G`` for ``G`` sets each shared by a block of
      rows (``[G, M, d]``, :func:`negative_sets`), ``False`` for negatives per row. One
      shared set turns the scores into one ``[B, d] x [d, M]`` matrix product instead of a
      ``[B, M, d]`` gather, but cannot reject each row's positives; ``G`` sets cost nearly
      as little while each item's gradient comes from ``G`` times fewer rows, which learns
      markedly faster per epoch with Adam (``examples/RESULTS.md``);

    and implement :meth:`forward` on a :class:`LossBatch`, returning a scalar. Losses with a
    temperature expose ``tau`` so that temperature schedules
    (:mod:`pyg_cf.losses.temperature`) can set it; they also honour a per-user temperature,
    given either per batch (``batch.user_tau``) or as a ``[num_users]`` table
    ``user_tau_table`` indexed with ``batch.users``. ``user_tau_scope`` says whether the
    per-user temperature divides the negatives only (``'negatives'``, the positive keeps
    ``tau``) or every logit (``'both'``).

    ``row_mean = True`` declares that :meth:`forward` is ``per_row(batch).mean()``, so that
    any subset of the rows' terms, each computed on the whole batch, can stand for the
    loss of those rows: :class:`~pyg_cf.train.distributed.DistributedTrainer` then gives
    each rank's rows of an in-batch loss every positive of the global batch as negatives
    (exactly the single-process loss). It counts only where declared by the class that
    defines the :meth:`forward` in use (:func:`forward_is_row_mean`): a subclass that
    overrides :meth:`forward` must declare it again.
    """

    negatives: str = "sampled"
    num_negatives: int = 1
    sampler: str = "uniform"
    pop_beta: float = 1.0
    reject_positives: bool = False
    shared_negatives: bool | int = False
    paper: str = ""
    user_tau_table: Tensor | None = None
    user_tau_scope: str = "both"
    record_unit_loss: bool = False
    row_mean: bool = False
    last_unit_loss: Tensor | None = None

    def forward(self, batch: LossBatch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def per_row(self, batch: LossBatch) -> Tensor:
        """Per-row loss ``[B]`` (used by adaptive temperatures)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-row form")

    def unit_temperature_loss(self, batch: LossBatch) -> Tensor:
        r"""Detached per-row loss ``[B]`` at temperature 1 (the per-user difficulty
        :math:`\mathcal{L}(u)` of Adap-τ).

        Softmax-family losses record it during :meth:`forward` when ``record_unit_loss`` is
        set (``last_unit_loss``), which this returns when it matches ``batch``; otherwise
        it is recomputed with ``per_row(batch, tau=1.0)``.
        """
        last = self.last_unit_loss
        if last is not None and getattr(self, "_unit_users", None) is batch.users:
            return last
        with torch.no_grad():
            return self.per_row(batch, tau=1.0).detach()  # type: ignore[call-arg]

    def _record_unit(self, batch: LossBatch, value: Tensor) -> None:
        """Keep ``value`` (detached) as the unit-temperature loss of ``batch``."""
        self.last_unit_loss = value.detach()
        self._unit_users = batch.users

    def _set_sampling(
        self,
        num_negatives: int,
        sampler: str = "uniform",
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
    ) -> None:
        """Validate and store the settings of sampled negatives."""
        if int(num_negatives) < 1:
            raise ConfigError(f"num_negatives must be >= 1, got {num_negatives}")
        if sampler not in _SAMPLERS:
            raise ConfigError(f"sampler must be 'uniform' or 'popularity', got {sampler!r}")
        self.negatives = "sampled"
        self.num_negatives = int(num_negatives)
        self.sampler = sampler
        self.pop_beta = float(pop_beta)
        self.reject_positives = bool(reject_positives)
        if not isinstance(shared_negatives, (bool, int)) or shared_negatives < 0:
            raise ConfigError(
                "shared_negatives must be True/False or a number of sets >= 1, got "
                f"{shared_negatives!r}"
            )
        self.shared_negatives = shared_negatives
        if self.shared_negatives and self.reject_positives:
            raise ConfigError(
                f"shared_negatives={shared_negatives!r} gives several rows the same negatives, "
                "so positives cannot be rejected per row: set reject_positives=False"
            )

    def _sampling_repr(self) -> str:
        """``extra_repr``'s tail: the sampled-negative settings that differ from their
        defaults (``''`` for in-batch or full-catalogue negatives)."""
        if self.negatives != "sampled" or not hasattr(self, "sampler"):
            return ""
        parts = []
        if self.sampler != "uniform":
            parts.append(f"sampler={self.sampler!r}, pop_beta={self.pop_beta:g}")
        if self.reject_positives:
            parts.append("reject_positives=True")
        if self.shared_negatives:  # False or 0: per-row negatives
            parts.append(f"shared_negatives={self.shared_negatives!r}")
        return "".join(", " + p for p in parts)

    def temperatures(
        self, batch: LossBatch, tau: float | Tensor | None = None
    ) -> tuple[float | Tensor, float | Tensor]:
        """``(tau_pos, tau_neg)``: the temperatures of the positive and negative logits,
        each a float or a ``[B]`` tensor.

        ``tau`` overrides everything (both sides). Otherwise the per-row temperature is
        ``batch.user_tau`` or ``user_tau_table[batch.users]``; without one, ``self.tau``.
        """
        if tau is not None:
            return tau, tau
        base: float = float(getattr(self, "tau", 1.0))
        row = batch.user_tau
        if row is None and self.user_tau_table is not None:
            row = self.user_tau_table[batch.users]
        if row is None:
            return base, base
        if self.user_tau_scope == "negatives":
            return base, row
        return row, row


class SampledScoreLoss(CFLoss):
    """Base of losses on ``[B]`` positive and ``[B, M]`` sampled-negative scores; subclasses
    implement :meth:`per_row` using :meth:`_pos_neg`."""

    negatives = "sampled"

    def __init__(
        self,
        num_negatives: int,
        similarity: str,
        sampler: str,
        pop_beta: float,
        reject_positives: bool,
        shared_negatives: bool | int = False,
    ) -> None:
        super().__init__()
        self.similarity = check_similarity(similarity)
        self._set_sampling(num_negatives, sampler, pop_beta, reject_positives, shared_negatives)

    def _pos_neg(self, batch: LossBatch) -> tuple[Tensor, Tensor]:
        if batch.neg_emb is None:
            raise ConfigError(
                f"{type(self).__name__} needs sampled negatives (batch.neg_emb is None)"
            )
        pos = similarity(batch.user_emb, batch.pos_emb, self.similarity)
        neg = negative_scores(batch.user_emb, batch.neg_emb, self.similarity, batch.neg_unit)
        return pos, neg

    def forward(self, batch: LossBatch) -> Tensor:
        return self.per_row(batch).mean()
