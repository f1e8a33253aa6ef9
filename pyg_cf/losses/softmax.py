"""Softmax-family losses: full softmax, sampled softmax and bilateral softmax (BSL).

Every logit goes through ``torch.logsumexp``: the reference implementations compute
``exp`` and divide, which overflows with inner-product scores.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import (
    CFLoss,
    LossBatch,
    check_number,
    check_similarity,
    masked_logsumexp,
    negative_scores,
    normalize_if,
    reduce_loss,
    row_logsumexp,
)
from pyg_cf.losses.registry import register_loss

__all__ = [
    "BSLLoss",
    "SampledSoftmaxLoss",
    "SoftmaxLoss",
    "bsl_loss",
    "sampled_softmax_loss",
    "softmax_loss",
]

Temperature = float | Tensor


def _col(t: Temperature) -> Temperature:
    """A ``[B]`` temperature as ``[B, 1]`` (to divide ``[B, M]`` logits); floats unchanged."""
    return t.unsqueeze(-1) if isinstance(t, Tensor) and t.dim() == 1 else t


def sampled_softmax_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    tau: Temperature = 1.0,
    include_positive: bool = True,
    neg_mask: Tensor | None = None,
    log_q: Tensor | None = None,
    reduction: str = "mean",
    tau_neg: Temperature | None = None,
) -> Tensor:
    r"""Sampled softmax (Wu et al., TOIS 2024, eq. 3), computed with log-sum-exp.

    .. math::
        \mathcal{L} = -\frac{s_{ui}}{\tau} +
        \log\Big(e^{s_{ui}/\tau} + \sum_{j \in N_u} e^{s_{uj}/\tau' - \log Q_j}\Big)

    with :math:`\tau' = \tau` unless ``tau_neg`` is given (Adap-τ divides the negatives by
    a per-user temperature).

    Args:
        pos_score: ``[B]`` positive scores :math:`s_{ui}`.
        neg_score: ``[B, M]`` negative scores :math:`s_{uj}`.
        tau: Temperature of the positive, a float or a ``[B]`` tensor (per row).
        include_positive: Keep :math:`e^{s_{ui}/\tau}` in the denominator.
        neg_mask: ``[B, M]`` boolean, ``True`` for negatives to ignore (false negatives).
            Rows left without any term contribute ``0``.
        log_q: ``[B, M]`` log sampling probabilities for logQ correction, or ``None``.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        tau_neg: Temperature of the negatives (float or ``[B]``); default ``tau``.

    Returns:
        The reduced loss (``[B]`` for ``reduction='none'``).
    """
    tau_n = tau if tau_neg is None else tau_neg
    pos = pos_score / tau
    neg = neg_score / _col(tau_n)
    if log_q is not None:
        neg = neg - log_q
    if include_positive:
        logits = torch.cat([pos.unsqueeze(-1), neg], dim=-1)
        if neg_mask is not None:
            keep_pos = torch.zeros_like(neg_mask[..., :1])
            neg_mask = torch.cat([keep_pos, neg_mask], dim=-1)
    else:
        logits = neg
    lse, valid = masked_logsumexp(logits, neg_mask)
    loss = torch.where(valid, lse - pos, torch.zeros_like(lse))
    return reduce_loss(loss, reduction)


def softmax_loss(
    pos_score: Tensor,
    all_score: Tensor,
    tau: Temperature = 1.0,
    mask: Tensor | None = None,
    reduction: str = "mean",
    tau_neg: Temperature | None = None,
    pos_items: Tensor | None = None,
) -> Tensor:
    r"""Full softmax over the catalogue, computed with log-sum-exp.

    .. math::
        \mathcal{L} = -\frac{s_{ui}}{\tau} + \log\sum_{j \in \mathcal{I}} e^{s_{uj}/\tau}

    Args:
        pos_score: ``[B]`` positive scores.
        all_score: ``[B, I]`` scores of every item (the positive included).
        tau: Temperature of the positive, float or ``[B]``.
        mask: ``[B, I]`` boolean, ``True`` for items left out of the sum (e.g. the user's
            other training positives). Never mask a row's own positive (the loss would be
            unbounded below): with ``pos_items`` it is left in whatever ``mask`` says.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        tau_neg: Temperature of the other items inside the sum (float or ``[B]``; Adap-τ's
            per-user one); default ``tau``. The positive's own term keeps ``tau``.
        pos_items: ``[B]`` column of each row's positive in ``all_score``; needed with
            ``tau_neg``, and kept out of ``mask`` when given.
    """
    pos = pos_score / tau
    logits = all_score / _col(tau if tau_neg is None else tau_neg)
    if tau_neg is not None:
        if pos_items is None:
            raise ConfigError(
                "softmax_loss with tau_neg needs pos_items (each row's positive column, "
                "whose logit keeps tau)"
            )
        # the positive keeps tau in the denominator too: a positive at tau_neg > tau made
        # the loss unbounded below
        rows = torch.arange(logits.size(0), device=logits.device)
        logits = logits.index_put((rows, pos_items.to(logits.device)), pos.to(logits.dtype))
    if mask is not None and pos_items is not None:  # the row's own positive stays in
        mask = torch.broadcast_to(mask, logits.shape)
        rows = torch.arange(mask.size(0), device=mask.device)
        keep = torch.zeros((), dtype=torch.bool, device=mask.device)
        mask = mask.index_put((rows, pos_items.to(mask.device)), keep)
    lse, _ = masked_logsumexp(logits, mask)
    return reduce_loss(lse - pos, reduction)


def bsl_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    tau1: Temperature = 0.1,
    tau2: float = 1.0,
    pos_mask: Tensor | None = None,
    neg_mask: Tensor | None = None,
    include_positive: bool = False,
    reduction: str = "mean",
    tau_neg: Temperature | None = None,
) -> Tensor:
    r"""Bilateral softmax loss (Wu et al., BSL, ICDE 2024), with log-sum-exp.

    ``reweight`` form (``pos_score`` of shape ``[B]``):

    .. math::
        \mathcal{L} = -\frac{s_{ui}}{\tau_1} +
        \tau_2 \log\sum_{j \in N_u} e^{s_{uj}/\tau_1}

    ``multi`` form (``pos_score`` of shape ``[B, P]`` with ``pos_mask``): the positive term
    is the log-mean-exp over the user's positives :math:`P_u` in the batch,

    .. math::
        \mathcal{L} = -\log\frac{1}{|P_u|}\sum_{i' \in P_u} e^{s_{ui'}/\tau_1} +
        \tau_2 \log\sum_{j \in N_u} e^{s_{uj}/\tau_1}.

    :math:`\tau_2 = 1` gives the sampled softmax without the positive in the denominator.

    Args:
        pos_score: ``[B]`` positive scores, or ``[B, P]`` candidate positives.
        neg_score: ``[B, M]`` negative scores.
        tau1: Temperature (float or ``[B]``) of the positive term.
        tau2: Weight of the negative log-sum-exp (a number near 1).
        pos_mask: ``[B, P]`` boolean, ``True`` for entries of ``pos_score`` that are not
            positives of the row (``multi`` form). Each row must keep one entry.
        neg_mask: ``[B, M]`` boolean, ``True`` for negatives to ignore.
        include_positive: Add the (first) positive to the negative sum.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.
        tau_neg: Temperature of the negatives; default ``tau1``.
    """
    tau_n = tau1 if tau_neg is None else tau_neg
    if pos_score.dim() == 1:
        own = pos_score
        pos_term = pos_score / tau1
    else:
        own = pos_score[:, 0]
        logits = pos_score / _col(tau1)
        lse, _ = masked_logsumexp(logits, pos_mask)
        count = (
            (~pos_mask).sum(-1).clamp(min=1)
            if pos_mask is not None
            else torch.full_like(lse, pos_score.size(-1))
        )
        pos_term = lse - count.to(lse.dtype).log()
    neg = neg_score / _col(tau_n)
    if include_positive:
        # the own positive keeps the positive's temperature (Adap-τ scope='negatives')
        neg = torch.cat([(own / tau1).unsqueeze(-1), neg], dim=-1)
        if neg_mask is not None:
            neg_mask = torch.cat([torch.zeros_like(neg_mask[..., :1]), neg_mask], dim=-1)
    lse, valid = masked_logsumexp(neg, neg_mask)
    loss = torch.where(valid, tau2 * lse - pos_term, torch.zeros_like(lse))
    return reduce_loss(loss, reduction)


def _scores(
    batch: LossBatch, similarity: str, negatives: str, mask_collisions: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(pos [B], neg [B, M], neg_mask [B, M] | None, pair [B, B] | None)``.

    In-batch: ``neg`` is the ``[B, B]`` score matrix of every user against every positive
    of the batch, with the diagonal (the row's own positive) and, optionally, collisions
    masked; ``pair`` is that same matrix (used by BSL's ``multi`` form).
    """
    u = normalize_if(batch.user_emb, similarity)
    p = normalize_if(batch.pos_emb, similarity)
    if negatives == "in-batch":
        pair = u @ p.t()
        pos = pair.diagonal()
        mask = torch.eye(pair.size(0), dtype=torch.bool, device=pair.device)
        if mask_collisions and batch.in_batch_collision is not None:
            mask = mask | batch.in_batch_collision
        return pos, pair, mask, pair
    if batch.neg_emb is None:
        raise ConfigError("sampled negatives are missing from the batch (neg_emb is None)")
    pos = (u * p).sum(-1)
    neg = negative_scores(batch.user_emb, batch.neg_emb, similarity, batch.neg_unit)
    return pos, neg, None, None


def _take(t: Temperature, index: Tensor) -> Temperature:
    return t[index] if isinstance(t, Tensor) else t


def _distinct_rows(users: Tensor, emb: Tensor, tau: Temperature) -> tuple[Tensor, Tensor] | None:
    """``(first, inverse)`` when ``users`` repeat and rows of one user agree in ``emb`` and
    ``tau``: ``first[k]`` is a row of the ``k``-th distinct user, ``inverse[r]`` the distinct
    user of row ``r``. ``None`` when every user is distinct (nothing to share) or rows of
    one user differ (e.g. per-row dropout), so the caller scores every row."""
    uniq, inverse = torch.unique(users, return_inverse=True)
    if uniq.numel() == users.numel():
        return None
    rows = torch.arange(users.numel(), device=users.device)
    # int64 whatever the dtype of ``users`` (scatter_reduce_ needs one dtype; int32 ids)
    first = torch.full_like(uniq, users.numel(), dtype=torch.long).scatter_reduce_(
        0, inverse, rows, "amin"
    )
    with torch.no_grad():
        if not torch.equal(emb[first][inverse], emb):
            return None
        if isinstance(tau, Tensor) and not torch.equal(tau[first][inverse], tau):
            return None
    return first, inverse


def _check_common(tau: float, negatives: str, allowed: tuple[str, ...]) -> None:
    check_number(tau, "tau", low=0.0)
    if negatives not in allowed:
        raise ConfigError(f"negatives must be one of {allowed}, got {negatives!r}")


def _refuse_sampled_only(cls: type[CFLoss], loss: str, **given: Any) -> None:
    """With in-batch negatives, refuse (:class:`ConfigError`) the options of sampled
    negatives that differ from their defaults in ``cls.__init__``: with in-batch negatives
    the trainer draws nothing, so the run would train exactly as without them. ``given``
    maps each such option to its value; ``loss`` is the name the message gives the loss."""
    sampler = given.get("sampler", "uniform")
    if sampler not in ("uniform", "popularity"):
        raise ConfigError(f"sampler must be 'uniform' or 'popularity', got {sampler!r}")
    params = inspect.signature(cls.__init__).parameters
    odd = [f"{k}={v!r}" for k, v in given.items() if v != params[k].default]
    if odd:
        hint = (
            " (in-batch false negatives are masked by mask_collisions)"
            if given.get("reject_positives")
            else ""
        )
        raise ConfigError(
            f"{', '.join(odd)} {'applies' if len(odd) == 1 else 'apply'} to sampled "
            f"negatives; {loss} with in-batch negatives (negatives='in-batch', the default) "
            f"would silently ignore {'it' if len(odd) == 1 else 'them'}: pass "
            f"negatives='sampled', or leave {'it' if len(odd) == 1 else 'them'} out{hint}"
        )


@register_loss("ssm")
class SampledSoftmaxLoss(CFLoss):
    r"""Sampled softmax loss (Wu et al., "On the Effectiveness of Sampled Softmax Loss for
    Item Recommendation", TOIS 2024, eq. 3).

    .. math::
        \mathcal{L} = -\frac{s_{ui}}{\tau} +
        \log\Big(e^{s_{ui}/\tau} + \sum_{j \in N_u} e^{s_{uj}/\tau}\Big)

    With ``negatives='in-batch'`` (default) the negatives of row :math:`r` are the other rows'
    positive items; with ``negatives='sampled'`` ``num_negatives`` items are drawn per row,
    uniformly or :math:`\propto` popularity:math:`^\beta`. With all items as negatives and
    ``include_positive=False`` it is :class:`SoftmaxLoss`.

    Args:
        tau: Temperature (default 0.1; published: Gowalla 0.12, Yelp2018 0.14,
            Amazon-Book 0.10).
        similarity: ``'cos'`` (default, as in the paper) or ``'ip'``.
        negatives: ``'in-batch'`` (default) or ``'sampled'``. ``num_negatives``,
            ``sampler``, ``pop_beta``, ``reject_positives``, ``shared_negatives`` and
            ``logq_correction`` apply to sampled negatives only: set away from their
            defaults with in-batch negatives, they raise a :class:`ConfigError` (they
            would otherwise be silently ignored).
        num_negatives: Negatives per row. Sampled negatives only.
        sampler: ``'uniform'`` or ``'popularity'``. Sampled negatives only.
        include_positive: Keep the positive in the denominator (default ``True``, the
            official in-batch code; the Adap-τ and BSL codes exclude it).
        mask_collisions: With in-batch negatives, ignore other rows' items that are in fact
            training positives of the row's user (default ``True``).
        logq_correction: Subtract the log sampling probability :math:`\log Q_j` of one
            draw from each sampled negative's logit (the correction of Yi et al., RecSys
            2019, in the form of :func:`sampled_softmax_loss`). The importance-sampling
            estimate of the full softmax's denominator would subtract
            :math:`\log(M Q_j)`; the two differ by a constant, so only in how much the
            positive weighs against the negatives when ``include_positive`` keeps it.
            Sampled negatives only (a :class:`ConfigError` with in-batch ones).
        pop_beta: Popularity exponent :math:`\beta` of the ``'popularity'`` sampler.
            Sampled negatives only.
        reject_positives: Re-draw sampled negatives that are positives of the user.
            Sampled negatives only (in-batch ones have ``mask_collisions``).
        shared_negatives: ``True`` (one set of negatives for the batch), an integer ``G``
            (``G`` sets, each shared by a block of rows) or ``False`` (per row; default);
            see :class:`~pyg_cf.losses.base.CFLoss`. Sampled negatives only.
    """

    paper = (
        "Wu et al., On the Effectiveness of Sampled Softmax Loss for Item Recommendation, TOIS 2024"
    )
    row_mean = True

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
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
    ) -> None:
        super().__init__()
        _check_common(tau, negatives, ("in-batch", "sampled"))
        self.similarity = check_similarity(similarity)
        if negatives == "sampled":
            self._set_sampling(num_negatives, sampler, pop_beta, reject_positives, shared_negatives)
        else:
            if logq_correction:  # the batch records no draw probability for other rows' items
                raise ConfigError(
                    "logq_correction applies to sampled negatives (negatives='sampled', whose "
                    "draw probabilities the sampler records); with in-batch negatives it "
                    "would silently do nothing"
                )
            _refuse_sampled_only(
                SampledSoftmaxLoss,
                "ssm",
                num_negatives=num_negatives,
                sampler=sampler,
                pop_beta=pop_beta,
                reject_positives=reject_positives,
                shared_negatives=shared_negatives,
            )
            self.negatives, self.num_negatives, self.sampler = "in-batch", 0, sampler
        self.tau = float(tau)
        self.include_positive = include_positive
        self.mask_collisions = mask_collisions
        self.logq_correction = logq_correction

    def per_row(self, batch: LossBatch, tau: Temperature | None = None) -> Tensor:
        """Loss of each row ``[B]`` at temperature ``tau`` (default: the per-user
        temperature of the batch or of ``user_tau_table`` if any, else ``self.tau``)."""
        tau_p, tau_n = self.temperatures(batch, tau)
        pos, neg, mask, _ = _scores(batch, self.similarity, self.negatives, self.mask_collisions)
        log_q = None
        if self.logq_correction and self.negatives == "sampled":
            log_q = self._log_q(batch, neg)
        rows = sampled_softmax_loss(
            pos, neg, tau_p, self.include_positive, mask, log_q, "none", tau_neg=tau_n
        )
        if self.record_unit_loss and tau is None:
            with torch.no_grad():
                unit = sampled_softmax_loss(
                    pos, neg, 1.0, self.include_positive, mask, log_q, "none"
                )
            self._record_unit(batch, unit)
        return rows

    def _log_q(self, batch: LossBatch, neg: Tensor) -> Tensor:
        """``batch.neg_log_prob`` for the logQ correction of the ``[B, M]`` scores ``neg``;
        a :class:`ConfigError` where it is missing (the correction would silently do
        nothing) or does not have their shape."""
        log_q = batch.neg_log_prob
        if log_q is None:
            raise ConfigError(
                "logq_correction=True needs the negatives' draw log-probabilities, but "
                "batch.neg_log_prob is None (the training would run uncorrected)"
            )
        if log_q.shape != neg.shape:
            raise ConfigError(
                f"batch.neg_log_prob has shape {tuple(log_q.shape)}, but the negatives' scores "
                f"have shape {tuple(neg.shape)} (logq_correction needs one log-probability "
                "per negative)"
            )
        return log_q

    def forward(self, batch: LossBatch) -> Tensor:
        return self.per_row(batch).mean()

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, similarity={self.similarity!r}, negatives={self.negatives!r}"
            f", num_negatives={self.num_negatives}" + self._sampling_repr()
        )


@register_loss("softmax")
class SoftmaxLoss(CFLoss):
    r"""Full softmax over the whole catalogue (the "SM" of the sampled-softmax paper,
    Wu et al., TOIS 2024, eq. 2).

    .. math::
        \mathcal{L} = -\frac{s_{ui}}{\tau} + \log\sum_{j \in \mathcal{I}} e^{s_{uj}/\tau}

    The trainer provides ``batch.all_item_emb`` (``negatives = 'all'``). With
    ``mask_positives=True`` the user's *other* training positives are left out of the sum;
    the training pairs come from ``positives`` (a
    :class:`~pyg_cf.data.pairs.UserItemIndex`) or else ``batch.positives``.

    The sum depends only on the user (with ``mask_positives``: on the user and the row's own
    positive), so the ``[B, I]`` logits are formed once per *distinct* user of the batch and
    shared by that user's rows — the same value, and the same gradients for the embedding
    tables, as one row per interaction (within ``batch.user_emb`` the log-sum-exp's
    gradient lands on each user's first row, so per-row gradients of that tensor differ
    while their per-user sums agree).
    Batches grouped by user (``InteractionLoader(sampling='user_blocks')``) make that the
    cheap case: on Gowalla a batch of 2048 interactions holds ≈ 73 users instead of ≈ 1,885.

    The log-sum-exp over the catalogue is differentiable once
    (:func:`~pyg_cf.losses.base.row_logsumexp`): a backward with ``create_graph=True``
    (second derivatives) raises a ``RuntimeError``.

    Args:
        tau: Temperature (default 0.1).
        similarity: ``'cos'`` (default) or ``'ip'``.
        mask_positives: Leave the user's other training positives out of the sum.
        positives: Training pairs used by ``mask_positives``.
    """

    negatives = "all"
    num_negatives = 0
    paper = (
        "Wu et al., On the Effectiveness of Sampled Softmax Loss for Item Recommendation, "
        "TOIS 2024 (full softmax, eq. 2)"
    )

    def __init__(
        self,
        tau: float = 0.1,
        similarity: str = "cos",
        mask_positives: bool = False,
        positives: UserItemIndex | None = None,
    ) -> None:
        super().__init__()
        _check_common(tau, "all", ("all",))
        self.tau = float(tau)
        self.similarity = check_similarity(similarity)
        self.mask_positives = mask_positives
        self.positives = positives

    def _positives_mask(
        self, batch: LossBatch, users: Tensor, num_items: int, device: torch.device
    ) -> Tensor:
        """``[len(users), I]`` boolean: ``True`` at each user's training positives."""
        index = self.positives if self.positives is not None else batch.positives
        if index is None:
            raise ConfigError(
                "softmax with mask_positives=True needs the training pairs: pass "
                "positives=UserItemIndex(...) or set batch.positives"
            )
        if index.keys.device != device:
            index = index.to(device)
            if self.positives is not None:
                self.positives = index  # moved once, not copied at every step
        row, item = index.gather(users)
        mask = torch.zeros(users.numel(), num_items, dtype=torch.bool, device=device)
        mask[row, item] = True
        return mask

    def per_row(self, batch: LossBatch, tau: Temperature | None = None) -> Tensor:
        """Loss of each row ``[B]`` (temperature as in :meth:`CFLoss.temperatures`)."""
        if batch.all_item_emb is None:
            raise ConfigError("softmax needs batch.all_item_emb (the loss's negatives='all')")
        tau_p, tau_n = self.temperatures(batch, tau)
        u = normalize_if(batch.user_emb, self.similarity)
        items = normalize_if(batch.all_item_emb, self.similarity)
        num_items = items.size(0)
        # The [B, I] logits are the cost: the temperature scales the [B, d] user side before
        # the product, and the positive's score is its own [B] dot product, so no [B, I]
        # division or gather (and no [B, I] gradient of either) is ever formed.
        pos = (u * items[batch.pos_items]).sum(-1)
        # A row's log-sum-exp depends only on its user's (scaled) embedding, and with
        # mask_positives on its user's positives plus its own one: one [U, I] logit row per
        # distinct user, shared by that user's rows (same value and gradients as one per
        # row; see the loader's sampling='user_blocks'). With the mask, the user's row
        # leaves out all its positives and each row adds its own back (log-add-exp).
        # With a per-user temperature on the negatives only (Adap-τ's scope='negatives'),
        # the row's own positive keeps tau_p in the denominator too, as in the sampled
        # softmax: it is masked out of the [., I] logits and added back at tau_p.
        split = tau_p is not tau_n
        share = _distinct_rows(batch.users, u, tau_n)
        mask = None
        if share is not None and self.mask_positives:
            mask = self._positives_mask(batch, batch.users[share[0]], num_items, u.device)
            # exact only if each row's positive is among its user's masked positives and
            # no user has every item as a positive
            if not bool(mask[share[1], batch.pos_items].all() & (~mask).any(1).all()):
                share = mask = None
        if share is not None and mask is None and split:
            share = None  # a shared row cannot hold each row's own positive at tau_p
        rows = torch.arange(u.size(0), device=u.device)
        if share is None:
            scale = tau_n
            logits = (u / _col(scale)) @ items.t()
            if self.mask_positives:
                mask = self._positives_mask(batch, batch.users, num_items, u.device)
                # the row's own positive stays in: no row is empty, even for a user whose
                # every item is a positive (with split, its logit is rewritten at tau_p)
                mask[rows, batch.pos_items] = False
        else:
            scale = _take(tau_n, share[0])
            logits = (u[share[0]] / _col(scale)) @ items.t()
        own_masked = share is not None and mask is not None

        def per_row_lse(lse: Tensor, own: Tensor) -> Tensor:
            """Row log-sum-exps from the logit rows' ones (``own``: each row's positive
            logit, added back where the logit rows mask it)."""
            if share is not None:
                lse = lse[share[1]]
            return torch.logaddexp(lse, own) if own_masked else lse

        if self.record_unit_loss and tau is None:
            with torch.no_grad():
                # in float32: a half-precision log-sum-exp overflows to inf over a large
                # catalogue of near-equal logits (which would make every Adap-τ τ_u NaN)
                unit = logits * _col(scale)
                if unit.dtype in (torch.float16, torch.bfloat16):
                    unit = unit.float()
                lse_1, _ = masked_logsumexp(unit, mask)
                pos_1 = pos.to(unit.dtype)
                self._record_unit(batch, per_row_lse(lse_1, pos_1) - pos_1)
        if mask is not None:
            logits = logits.masked_fill_(mask, float("-inf"))
        if split and share is None:  # the row's own positive at tau_p, in place
            logits[rows, batch.pos_items] = (pos / tau_p).to(logits.dtype)
        return per_row_lse(row_logsumexp(logits), pos / tau_p) - pos / tau_p

    def forward(self, batch: LossBatch) -> Tensor:
        return self.per_row(batch).mean()

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, similarity={self.similarity!r}, mask_positives={self.mask_positives}"
        )


@register_loss("bsl")
class BSLLoss(CFLoss):
    r"""Bilateral softmax loss (Wu et al., "BSL: Understanding and Improving Softmax Loss for
    Recommendation", ICDE 2024).

    ``form='reweight'``:

    .. math::
        \mathcal{L} = -\frac{s_{ui}}{\tau_1} + \tau_2 \log\sum_{j \in N_u} e^{s_{uj}/\tau_1}

    ``form='multi'``: the positive term becomes the log-mean-exp over the same user's
    positives inside the batch,
    :math:`-\log \frac{1}{|P_u|}\sum_{i' \in P_u} e^{s_{ui'}/\tau_1}`.
    With :math:`\tau_2 = 1` (and ``'reweight'``) it is :class:`SampledSoftmaxLoss` with
    ``include_positive=False``. ``tau`` is :math:`\tau_1` (what temperature schedules set).

    Published settings: MF Gowalla ``multi``, :math:`\tau_1 = 0.08`, :math:`\tau_2 = 1.22`,
    800 uniform negatives; LightGCN Gowalla ``reweight``, :math:`\tau_1 = 0.12`,
    :math:`\tau_2 = 0.84`, in-batch.

    Args:
        tau1: Temperature :math:`\tau_1` (default 0.1); ``tau`` is accepted as an alias.
        tau2: Weight :math:`\tau_2` of the negative term (default 1.0).
        form: ``'reweight'`` (default) or ``'multi'``.
        similarity: ``'cos'`` (default) or ``'ip'``.
        negatives: ``'in-batch'`` (default) or ``'sampled'``. ``num_negatives``,
            ``sampler``, ``pop_beta``, ``reject_positives`` and ``shared_negatives`` apply
            to sampled negatives only: set away from their defaults with in-batch
            negatives, they raise a :class:`ConfigError` (they would otherwise be
            silently ignored).
        num_negatives: Negatives per row. Sampled negatives only.
        sampler: ``'uniform'`` or ``'popularity'``. Sampled negatives only.
        include_positive: Add the positive to the negative sum (default ``False``).
        mask_collisions: Mask in-batch false negatives (default ``True``).
        pop_beta: Popularity exponent of the ``'popularity'`` sampler. Sampled negatives
            only.
        reject_positives: Re-draw sampled negatives that are positives of the user.
            Sampled negatives only (in-batch ones have ``mask_collisions``).
        shared_negatives: ``True`` (one set of negatives for the batch), an integer ``G``
            (``G`` sets, each shared by a block of rows) or ``False`` (per row; default);
            see :class:`~pyg_cf.losses.base.CFLoss`. Sampled negatives only.
    """

    paper = "Wu et al., BSL: Understanding and Improving Softmax Loss for Recommendation, ICDE 2024"
    row_mean = True

    def __init__(
        self,
        tau1: float | None = None,
        tau2: float = 1.0,
        form: str = "reweight",
        similarity: str = "cos",
        negatives: str = "in-batch",
        num_negatives: int = 800,
        sampler: str = "uniform",
        include_positive: bool = False,
        mask_collisions: bool = True,
        pop_beta: float = 1.0,
        reject_positives: bool = False,
        shared_negatives: bool | int = False,
        tau: float | None = None,
    ) -> None:
        super().__init__()
        if tau is not None and tau1 is not None and float(tau) != float(tau1):
            raise ConfigError(f"tau is an alias of tau1: got tau={tau} and tau1={tau1}")
        tau1 = float(tau if tau is not None else tau1 if tau1 is not None else 0.1)
        _check_common(tau1, negatives, ("in-batch", "sampled"))
        if form not in ("reweight", "multi"):
            raise ConfigError(f"form must be 'reweight' or 'multi', got {form!r}")
        check_number(tau2, "tau2", low=0.0)
        self.similarity = check_similarity(similarity)
        if negatives == "sampled":
            self._set_sampling(num_negatives, sampler, pop_beta, reject_positives, shared_negatives)
        else:
            _refuse_sampled_only(
                BSLLoss,
                "bsl",
                num_negatives=num_negatives,
                sampler=sampler,
                pop_beta=pop_beta,
                reject_positives=reject_positives,
                shared_negatives=shared_negatives,
            )
            self.negatives, self.num_negatives = "in-batch", 0
        self.tau = tau1
        self.tau2 = float(tau2)
        self.form = form
        self.include_positive = include_positive
        self.mask_collisions = mask_collisions

    @property
    def tau1(self) -> float:
        """:math:`\\tau_1` (the same as ``tau``)."""
        return self.tau

    def per_row(self, batch: LossBatch, tau: Temperature | None = None) -> Tensor:
        """Loss of each row ``[B]`` (temperature as in :meth:`CFLoss.temperatures`)."""
        tau_p, tau_n = self.temperatures(batch, tau)
        pos, neg, mask, pair = _scores(batch, self.similarity, self.negatives, self.mask_collisions)
        pos_in: Tensor = pos
        pos_mask = None
        if self.form == "multi":
            if pair is None:
                u = normalize_if(batch.user_emb, self.similarity)
                pair = u @ normalize_if(batch.pos_emb, self.similarity).t()
            # Column 0 is the row's own positive; then every batch positive, masked unless
            # it belongs to the same user (the row's own column is masked to avoid a double).
            same = batch.users.view(-1, 1) == batch.users.view(1, -1)
            same.fill_diagonal_(False)
            pos_in = torch.cat([pos.unsqueeze(1), pair], dim=1)
            pos_mask = torch.cat([torch.zeros_like(same[:, :1]), ~same], dim=1)
        rows = bsl_loss(
            pos_in, neg, tau_p, self.tau2, pos_mask, mask, self.include_positive, "none", tau_n
        )
        if self.record_unit_loss and tau is None:
            with torch.no_grad():
                unit = bsl_loss(
                    pos_in, neg, 1.0, self.tau2, pos_mask, mask, self.include_positive, "none"
                )
            self._record_unit(batch, unit)
        return rows

    def forward(self, batch: LossBatch) -> Tensor:
        return self.per_row(batch).mean()

    def extra_repr(self) -> str:
        return (
            f"tau1={self.tau}, tau2={self.tau2}, form={self.form!r}, "
            f"similarity={self.similarity!r}, negatives={self.negatives!r}, "
            f"num_negatives={self.num_negatives}" + self._sampling_repr()
        )
