r"""Temperature schedules of softmax-family losses: fixed, Adap-τ0 and Adap-τ.

Chen et al., "Adap-τ: Adaptively Modulating Embedding Magnitude for Recommendation",
WWW 2023. A schedule is a :class:`~pyg_cf.train.Callback`: at the start of every epoch it
sets the loss's ``tau`` (and, for :class:`AdapTau`, a per-user table
``loss.user_tau_table``) from the current final embeddings.

>>> from pyg_cf.losses import get_loss
>>> from pyg_cf.losses.temperature import AdapTau
>>> loss = get_loss("ssm", negatives="sampled", num_negatives=1024, include_positive=False)
>>> schedule = AdapTau(divisor=0.25, base=0.9)  # Trainer(..., callbacks=[schedule])
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import CFLoss, LossBatch, check_number
from pyg_cf.losses.registry import construct
from pyg_cf.train.trainer import Callback

if TYPE_CHECKING:
    from pyg_cf.train.trainer import Trainer

__all__ = [
    "AdapTau",
    "AdapTau0",
    "FixedTemperature",
    "Tau0Statistics",
    "TemperatureSchedule",
    "adaptive_tau0",
    "get_temperature_schedule",
    "lambertw",
    "lambertw_scipy",
    "per_user_temperature",
]

log = logging.getLogger(__name__)

_INV_E = math.exp(-1.0)


# -- Lambert W -----------------------------------------------------------------------------
def lambertw(x: Tensor, iterations: int = 6) -> Tensor:
    r"""Principal branch :math:`W_0` of the Lambert W function (:math:`W e^W = x`),
    vectorised in torch so that it runs on any device.

    Inputs below :math:`-1/e` are clamped to :math:`-1/e` (where :math:`W = -1`). The
    start is the branch-point series near :math:`-1/e` and Winitzki's approximation
    elsewhere, refined by a fixed number of Halley steps written with :math:`e^{-w}` (no
    overflow for large :math:`x`); the work is done in float64 and cast back.

    Args:
        x: Any tensor.
        iterations: Halley steps (cubic convergence; 6 reach float64 precision).
    """
    z = x.to(torch.float64).clamp(min=-_INV_E)
    p = torch.sqrt((2.0 * (math.e * z + 1.0)).clamp(min=0.0))
    near = -1.0 + p * (1.0 + p * (-1.0 / 3.0 + p * (11.0 / 72.0)))
    l1 = torch.log1p(z.clamp(min=-0.25))
    winitzki = l1 * (1.0 - torch.log1p(l1) / (2.0 + l1))
    w = torch.where(z < -0.25, near, winitzki)
    for _ in range(iterations):
        g = w - z * torch.exp(-w)  # (w e^w - z) e^{-w}
        wp1 = w + 1.0
        safe = wp1 > 1e-12
        wp1s = torch.where(safe, wp1, torch.ones_like(wp1))
        denom = wp1s - (w + 2.0) * g / (2.0 * wp1s)
        ok = safe & (denom != 0)
        step = torch.where(ok, g / torch.where(ok, denom, torch.ones_like(denom)), 0.0)
        w = (w - step).clamp(min=-1.0)
    w = torch.where(z == math.inf, z, w)  # W(+inf) = +inf (the start above is inf / inf)
    return w.to(x.dtype if x.is_floating_point() else torch.get_default_dtype())


def lambertw_scipy(x: Tensor) -> Tensor:
    """:func:`scipy.special.lambertw` (principal branch, real part) on a tensor, with
    the same clamp at :math:`-1/e`; a CPU round trip."""
    from scipy.special import lambertw as _scipy_lambertw

    z = x.detach().to("cpu", torch.float64)
    at_branch = z <= -_INV_E  # -exp(-1) in float64 lies just below -1/e: scipy gives NaN
    w = torch.from_numpy(_scipy_lambertw(z.clamp(min=-_INV_E).numpy(), 0).real.copy())
    w = torch.where(at_branch, -1.0, w)
    return w.to(device=x.device, dtype=x.dtype if x.is_floating_point() else w.dtype)


# -- Adap-τ0 -------------------------------------------------------------------------------
@dataclass
class Tau0Statistics:
    r"""What :func:`adaptive_tau0` measured (all floats, for the training history).

    Attributes:
        tau0: The temperature (after clamping to ``[tau_min, tau_max]``).
        tau0_raw: The temperature before clamping.
        mu_pos: :math:`\mu^+`, mean cosine of the training pairs :math:`D'`.
        mu: :math:`\mu`, mean cosine of all (user in :math:`U'`, item) pairs.
        var_pos: :math:`\sigma^{+2}` (0 unless variances were computed).
        var: :math:`\sigma^2` (0 unless variances were computed).
        num_users: :math:`|U'|`.
        num_pairs: :math:`|D'|`.
        log_ratio: :math:`\log(|U'||I| / (2|D'|))`.
    """

    tau0: float
    tau0_raw: float
    mu_pos: float
    mu: float
    var_pos: float
    var: float
    num_users: int
    num_pairs: int
    log_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def adaptive_tau0(
    user_emb: Tensor,
    item_emb: Tensor,
    edge_index: Tensor,
    quantile: float = 0.2,
    use_variance: bool = False,
    gap: float | None = None,
    tau_min: float = 0.0,
    tau_max: float = math.inf,
) -> Tau0Statistics:
    r"""The global temperature of Adap-τ0 (Chen et al., WWW 2023, eq. 14).

    On L2-normalised embeddings, with :math:`U'` the users whose training degree is above
    the ``quantile`` of the degrees and :math:`D'` their training pairs:

    .. math::
        \mu^+ = \frac{1}{|D'|}\sum_{(u,i) \in D'} \hat u^\top \hat i, \qquad
        \mu = \frac{1}{|U'|}\sum_{u \in U'} \hat u^\top \Big(\frac{1}{|I|}\sum_i \hat i\Big),
        \qquad
        \tau_0 = \frac{\mu^+ - \mu}{\log\frac{|U'|\,|I|}{2|D'|}}

    (:math:`\mu` costs :math:`O(nd)`). With ``use_variance=True`` the score distributions
    are taken as Gaussians with variances :math:`\sigma^{+2}` (over :math:`D'`) and
    :math:`\sigma^2` (over :math:`U' \times I`, in :math:`O(nd^2)`), and :math:`w = 1/\tau_0`
    solves :math:`(\sigma^2 - \sigma^{+2}) w^2 - 2(\mu^+ - \mu) w + 2\log\frac{|U'||I|}{2|D'|}
    = 0`, whose root continuous at :math:`\sigma^2 = \sigma^{+2}` is

    .. math::
        \tau_0 = \frac{(\mu^+ - \mu) + \sqrt{(\mu^+ - \mu)^2 - 2(\sigma^2 - \sigma^{+2})
        \log\frac{|U'||I|}{2|D'|}}}{2\log\frac{|U'||I|}{2|D'|}}

    (a negative discriminant, where no real root exists, is clamped at 0: :math:`\tau_0 =
    (\mu^+ - \mu) / (2\log\frac{|U'||I|}{2|D'|})`, the vertex of the quadratic in
    :math:`\tau`; the authors' code clamps it in :math:`w` instead, which would give
    :math:`w = (\mu^+ - \mu) / (\sigma^2 - \sigma^{+2})`, a case its fixed coefficient
    never reaches); it reduces to eq. 14 when the variances are equal. This quadratic is the
    one the authors' code solves (there with the :math:`w^2` coefficient fixed at
    :math:`10^{-10}`, i.e. eq. 14); its coefficient :math:`\sigma^2 - \sigma^{+2}` comes
    from matching the Gaussian log-moment generating functions of the positive and all-pair
    scores, our reading of eq. 13.

    Args:
        user_emb: ``[num_users, d]`` final user embeddings.
        item_emb: ``[num_items, d]`` final item embeddings.
        edge_index: ``[2, E]`` training pairs (user ids in row 0, item ids in row 1).
        quantile: Users with degree above this quantile form :math:`U'` (default 0.2).
        use_variance: Use the variance form (eq. 13) instead of eq. 14.
        gap: Use this value of :math:`\mu^+ - \mu` instead of measuring it (the warm-up of
            the authors' code assumes 0.7).
        tau_min: Lower clamp of :math:`\tau_0` (under eq. 14 a gap :math:`\le 0`, e.g. at
            random initialisation, gives ``tau_min``; the variance form can stay above it).
        tau_max: Upper clamp of :math:`\tau_0`.
    """
    num_users, num_items = user_emb.size(0), item_emb.size(0)
    users, items = edge_index[0], edge_index[1]
    deg = torch.bincount(users, minlength=num_users).to(torch.float64)
    thresh = torch.quantile(deg, quantile)
    in_u = deg > thresh
    if not bool(in_u.any()):  # every user has the same degree
        in_u = deg > 0
    in_d = in_u[users]
    n_u, n_d = int(in_u.sum()), int(in_d.sum())
    if n_d == 0:
        raise ConfigError("adaptive_tau0: no training pairs (edge_index is empty)")
    log_ratio = math.log(n_u * num_items / (2.0 * n_d))
    u = F.normalize(user_emb.to(torch.float64), dim=-1)
    it = F.normalize(item_emb.to(torch.float64), dim=-1)
    u_sel = u[in_u]
    pos = (u[users[in_d]] * it[items[in_d]]).sum(-1)
    mu_pos = float(pos.mean())
    mu = float((u_sel @ it.mean(0)).mean())
    var_pos = var = 0.0
    g = mu_pos - mu if gap is None else float(gap)
    if use_variance and gap is None:
        var_pos = float(pos.var(unbiased=False))
        second = it.t() @ it / num_items  # E_i[î î^T], [d, d]
        var = float(((u_sel @ second) * u_sel).sum(-1).mean()) - mu * mu
    if log_ratio <= 0:
        log.warning(
            "adaptive_tau0: log(|U'||I|/(2|D'|)) = %.4f <= 0; tau0 set to tau_max", log_ratio
        )
        raw = math.inf
    else:
        a = var - var_pos
        if a == 0.0:
            raw = g / log_ratio
        else:
            disc = max(g * g - 2.0 * a * log_ratio, 0.0)
            raw = (g + math.sqrt(disc)) / (2.0 * log_ratio)
    tau0 = min(max(raw, tau_min), tau_max)
    if tau0 != raw:
        log.info("adaptive_tau0: tau0 %.4g clamped to %.4g (gap mu+ - mu = %.4g)", raw, tau0, g)
    return Tau0Statistics(tau0, raw, mu_pos, mu, var_pos, var, n_u, n_d, log_ratio)


# -- Adap-τ per user -------------------------------------------------------------------------
def per_user_temperature(
    user_loss: Tensor,
    tau0: float,
    base: str | float = "mean",
    divisor: float = 2.0,
    valid: Tensor | None = None,
    max_arg: float = 1000.0,
    method: str = "torch",
) -> Tensor:
    r"""Per-user temperatures of Adap-τ (Chen et al., WWW 2023).

    .. math::
        \tau_u = \tau_0 \exp\Big(W_0\big(\max\big(-\tfrac1e,
        \tfrac{\mathcal{L}(u) - m}{2\beta}\big)\big)\Big)

    where :math:`\mathcal{L}(u)` is the user's mean loss at temperature 1 and :math:`m` the
    mean of :math:`\mathcal{L}` over users (or a quantile). Harder users (larger
    :math:`\mathcal{L}(u)`) get larger :math:`\tau_u`; :math:`\tau_u` is non-decreasing in
    :math:`\mathcal{L}(u)` and at least :math:`\tau_0/e`.

    Args:
        user_loss: ``[num_users]`` :math:`\mathcal{L}(u)`.
        tau0: The global temperature :math:`\tau_0`.
        base: ``'mean'`` or a quantile in ``(0, 1)`` for :math:`m` (authors' Gowalla: 0.9).
        divisor: :math:`2\beta` (default 2, i.e. :math:`\beta = 1`; authors' Gowalla MF run
            used 0.25).
        valid: ``[num_users]`` boolean, users with a measured loss; others get
            :math:`\tau_0`. Default: all.
        max_arg: Upper clamp of the argument of :math:`W` (the authors' table stops at 1000).
        method: ``'torch'`` (:func:`lambertw`) or ``'scipy'`` (:func:`lambertw_scipy`).
    """
    if not divisor > 0:
        raise ConfigError(f"divisor must be > 0, got {divisor}")
    if method not in ("torch", "scipy"):
        raise ConfigError(f"method must be 'torch' or 'scipy', got {method!r}")
    loss = user_loss.to(torch.float64)
    mask = torch.ones_like(loss, dtype=torch.bool) if valid is None else valid
    finite = torch.isfinite(loss)
    if not bool((finite | ~mask).all()):
        # one inf would make m (and so every other user's τ_u) NaN
        bad = int((mask & ~finite).sum())
        log.warning("Adap-τ: %d user loss(es) are not finite; those users keep τ0", bad)
        mask = mask & finite
    if not bool(mask.any()):
        return torch.full_like(loss, tau0).to(user_loss.dtype)
    sel = loss[mask]
    if base == "mean":
        m = sel.mean()
    elif isinstance(base, (int, float)) and 0 < float(base) < 1:
        m = torch.quantile(sel, float(base))
    else:
        raise ConfigError(f"base must be 'mean' or a quantile in (0, 1), got {base!r}")
    arg = ((loss - m) / divisor).clamp(min=-_INV_E, max=max_arg)
    arg = torch.where(mask, arg, torch.zeros_like(arg))
    w = lambertw(arg) if method == "torch" else lambertw_scipy(arg)
    return (tau0 * torch.exp(w)).to(user_loss.dtype)


# -- schedules -----------------------------------------------------------------------------
class TemperatureSchedule(Callback):
    """Base class of temperature schedules: a :class:`~pyg_cf.train.Callback` that sets
    ``trainer.loss.tau`` at the start of each epoch. Subclasses implement
    :meth:`temperature`."""

    def _loss(self, trainer: Trainer) -> CFLoss:
        loss = trainer.loss
        if not isinstance(getattr(loss, "tau", None), float):
            raise ConfigError(
                f"{type(self).__name__} needs a loss with a temperature `tau` "
                f"(ssm, softmax, bsl); {type(loss).__name__} has none"
            )
        return loss

    def temperature(self, trainer: Trainer, epoch: int) -> float:  # pragma: no cover
        raise NotImplementedError

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        loss = self._loss(trainer)
        loss.tau = float(self.temperature(trainer, epoch))  # type: ignore[assignment]


class FixedTemperature(TemperatureSchedule):
    """The trivial schedule: ``tau`` every epoch (``None`` keeps the loss's own) and no
    per-user table.

    Args:
        tau: The temperature.
    """

    def __init__(self, tau: float | None = None) -> None:
        if tau is not None and not tau > 0:
            raise ConfigError(f"tau must be > 0, got {tau}")
        self.tau = tau

    def temperature(self, trainer: Trainer, epoch: int) -> float:
        if self.tau is not None:
            return self.tau
        return float(self._loss(trainer).tau)  # type: ignore[arg-type]

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        super().on_epoch_start(trainer, epoch)
        trainer.loss.user_tau_table = None


class AdapTau0(TemperatureSchedule):
    r"""Adap-τ0: a global temperature recomputed at the start of every epoch from the
    current final embeddings (:func:`adaptive_tau0`, eq. 14 of Chen et al., WWW 2023).

    Adds ``tau0`` (and ``tau0_raw``, ``mu_pos``, ``mu``) to the history row of each epoch;
    :attr:`records` keeps the full :class:`Tau0Statistics` per epoch.

    Args:
        quantile: Degree quantile defining :math:`U'` (default 0.2).
        use_variance: Use the variance form (eq. 13) instead of eq. 14.
        warmup_epochs: Epochs (from the first) during which :math:`\mu^+ - \mu` is assumed
            to be ``warmup_gap`` instead of measured. Off (0) by default; the authors' code
            runs used 100 epochs.
        warmup_gap: The assumed gap during warm-up (0.7 in the authors' code; finite).
        tau_min: Lower clamp of :math:`\tau_0` (default 0.05: at random initialisation the
            measured gap is about 0 and eq. 14 would give :math:`\tau_0 \approx 0`).
        tau_max: Upper clamp of :math:`\tau_0` (default 1).
    """

    def __init__(
        self,
        quantile: float = 0.2,
        use_variance: bool = False,
        warmup_epochs: int = 0,
        warmup_gap: float = 0.7,
        tau_min: float = 0.05,
        tau_max: float = 1.0,
    ) -> None:
        if not 0 <= quantile < 1:
            raise ConfigError(f"quantile must be in [0, 1), got {quantile}")
        if warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if not 0 < tau_min <= tau_max:
            raise ConfigError(f"need 0 < tau_min <= tau_max, got {tau_min}, {tau_max}")
        self.quantile = quantile
        self.use_variance = use_variance
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_gap = check_number(warmup_gap, "warmup_gap")
        self.tau_min, self.tau_max = float(tau_min), float(tau_max)
        self.records: list[dict[str, Any]] = []
        # recomputed at every epoch start, so not part of a checkpoint (private)
        self._last: Tau0Statistics | None = None

    @property
    def last(self) -> Tau0Statistics | None:
        """The statistics of the current epoch (``None`` before the first)."""
        return self._last

    def statistics(self, trainer: Trainer, epoch: int) -> Tau0Statistics:
        """:func:`adaptive_tau0` on the trainer's current final embeddings."""
        with torch.no_grad():
            user_emb, item_emb = trainer.model()
        gap = self.warmup_gap if epoch <= self.warmup_epochs else None
        return adaptive_tau0(
            user_emb.detach(),
            item_emb.detach(),
            trainer.train_ei,
            quantile=self.quantile,
            use_variance=self.use_variance,
            gap=gap,
            tau_min=self.tau_min,
            tau_max=self.tau_max,
        )

    def temperature(self, trainer: Trainer, epoch: int) -> float:
        self._last = last = self.statistics(trainer, epoch)
        self.records.append({"epoch": epoch, **last.as_dict()})
        return last.tau0

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        last = self._last
        if last is not None:
            row["tau0"] = last.tau0
            row["tau0_raw"] = last.tau0_raw
            row["mu_pos"] = last.mu_pos
            row["mu"] = last.mu


class AdapTau(AdapTau0):
    r"""Adap-τ: per-user temperatures around the global :math:`\tau_0` (Chen et al.,
    WWW 2023).

    During each epoch the schedule records every row's detached loss at temperature 1
    (``loss.unit_temperature_loss``); at the start of the next epoch
    :math:`\mathcal{L}(u)` is the mean over the user's rows, and (:func:`per_user_temperature`)

    .. math::
        \tau_u = \tau_0 \exp\Big(W_0\big(\max\big(-\tfrac1e,
        \tfrac{\mathcal{L}(u) - m}{2\beta}\big)\big)\Big).

    The first epoch (no losses yet) uses :math:`\tau_0` for everyone. The table is stored
    on the loss as ``loss.user_tau_table`` (``[num_users]``, indexed with ``batch.users``)
    and on the schedule as :attr:`user_tau`, with :attr:`user_loss` the
    :math:`\mathcal{L}(u)` it came from, for diagnostics (e.g. :math:`\tau_u` against user
    degree).

    ``scope='negatives'`` (default) divides only the negative logits by :math:`\tau_u` and
    keeps :math:`\tau_0` for the positive, as the authors' code does (the published numbers
    come from it); ``scope='both'`` divides every logit of the row by :math:`\tau_u`.
    The authors' loss leaves the positive out of the denominator
    (``include_positive=False`` in :class:`~pyg_cf.losses.SampledSoftmaxLoss`).

    Args:
        base: ``'mean'`` (default) or a quantile of :math:`\mathcal{L}` for :math:`m`
            (authors' Gowalla MF run: 0.9).
        divisor: :math:`2\beta` (default 2, :math:`\beta = 1`; authors' Gowalla MF: 0.25).
        scope: ``'negatives'`` (default) or ``'both'``.
        method: Lambert W by ``'torch'`` (default, any device) or ``'scipy'``.
        **kwargs: Those of :class:`AdapTau0`.
    """

    def __init__(
        self,
        base: str | float = "mean",
        divisor: float = 2.0,
        scope: str = "negatives",
        method: str = "torch",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if scope not in ("negatives", "both"):
            raise ConfigError(f"scope must be 'negatives' or 'both', got {scope!r}")
        if not divisor > 0:
            raise ConfigError(f"divisor must be > 0, got {divisor}")
        if method not in ("torch", "scipy"):
            raise ConfigError(f"method must be 'torch' or 'scipy', got {method!r}")
        if base != "mean" and not (isinstance(base, (int, float)) and 0 < float(base) < 1):
            raise ConfigError(f"base must be 'mean' or a quantile in (0, 1), got {base!r}")
        self.base, self.divisor, self.scope, self.method = base, float(divisor), scope, method
        self.user_tau: Tensor | None = None
        self.user_loss: Tensor | None = None
        self._sum: Tensor | None = None
        self._count: Tensor | None = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        super().on_epoch_start(trainer, epoch)
        loss = trainer.loss
        loss.record_unit_loss = True
        loss.user_tau_scope = self.scope
        tau0 = float(loss.tau)  # type: ignore[arg-type]
        if self._sum is not None and self._count is not None and bool((self._count > 0).any()):
            valid = self._count > 0
            user_loss = self._sum / self._count.clamp(min=1)
            self.user_loss = torch.where(valid, user_loss, torch.nan).float()
            self.user_tau = per_user_temperature(
                user_loss, tau0, self.base, self.divisor, valid, method=self.method
            ).float()
        else:
            self.user_tau = torch.full((trainer.num_users,), tau0, device=trainer.device)
        loss.user_tau_table = self.user_tau
        self._sum = torch.zeros(trainer.num_users, dtype=torch.float64, device=trainer.device)
        self._count = torch.zeros(trainer.num_users, dtype=torch.float64, device=trainer.device)

    def on_batch_end(self, trainer: Trainer, batch: LossBatch, loss: Tensor) -> None:
        if self._sum is None or self._count is None:
            return
        unit = trainer.loss.unit_temperature_loss(batch).detach().to(torch.float64)
        self._sum.index_add_(0, batch.users, unit)
        self._count.index_add_(0, batch.users, torch.ones_like(unit))

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        super().on_epoch_end(trainer, epoch, row)
        if self.user_tau is not None:
            row["tau_user_min"] = float(self.user_tau.min())
            row["tau_user_mean"] = float(self.user_tau.mean())
            row["tau_user_max"] = float(self.user_tau.max())


_SCHEDULES: dict[str, type[TemperatureSchedule]] = {
    "fixed": FixedTemperature,
    "adap-tau0": AdapTau0,
    "adap-tau": AdapTau,
}


def get_temperature_schedule(name: str, **kwargs: Any) -> TemperatureSchedule:
    """The schedule called ``name`` (``'fixed'``, ``'adap-tau0'``, ``'adap-tau'``)."""
    key = name.lower()
    if key not in _SCHEDULES:
        raise ConfigError(f"unknown temperature schedule {name!r}; known: {sorted(_SCHEDULES)}")
    return construct(_SCHEDULES[key], kwargs, f"temperature schedule {name!r}")
