"""Negative sampling shared by all losses."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import negative_sets, spread_sets

__all__ = ["NegativeSampler"]


class NegativeSampler:
    r"""Draws negative items, uniformly or proportionally to popularity:math:`^\beta`.

    Args:
        num_items: Catalogue size.
        item_degree: ``[I]`` training degrees (needed for ``'popularity'``).
        kind: ``'uniform'`` or ``'popularity'``.
        beta: Popularity exponent :math:`\beta` (``p_j \propto |P_j|^\beta``).
        positives: Training pairs to reject, or ``None`` for no rejection. A sampled
            negative that is a training positive of its row's user is re-drawn, for at
            most ``max_rounds`` rounds. Rejection is best effort: a negative still
            colliding after the last round is *kept*, without a warning or an error
            (under uniform draws, with probability :math:`(|\mathcal{P}_u| / I)^{R+1}`
            for a user with :math:`|\mathcal{P}_u|` of the :math:`I` items and
            :math:`R` = ``max_rounds``), and shared negatives (:meth:`sample` with
            ``shared``) are not rejected at all. :attr:`last_collisions` counts the
            positives left in the last draw.
        max_rounds: Rejection rounds (``>= 0``; 0: none); collisions left after them are
            kept (counted by :attr:`last_collisions`).

    Items are drawn on the device of the rows' ``users`` (as :meth:`sample` returns
    them): the popularity law moves there at the first draw that needs it (:meth:`to`
    moves it ahead), so the generator passed to :meth:`sample` must be on that device, as
    for uniform draws.
    """

    def __init__(
        self,
        num_items: int,
        item_degree: Tensor | None = None,
        kind: str = "uniform",
        beta: float = 1.0,
        positives: UserItemIndex | None = None,
        max_rounds: int = 5,
    ) -> None:
        if kind not in ("uniform", "popularity"):
            raise ConfigError(f"sampler must be 'uniform' or 'popularity', got {kind!r}")
        if int(num_items) < 1:
            raise ConfigError(f"num_items must be >= 1, got {num_items}")
        if int(max_rounds) < 0:
            raise ConfigError(f"max_rounds must be >= 0, got {max_rounds}")
        num_items, max_rounds = int(num_items), int(max_rounds)
        self.num_items, self.kind, self.beta = num_items, kind, beta
        self.positives, self.max_rounds = positives, max_rounds
        self.probs: Tensor | None = None
        self.log_probs: Tensor | None = None
        if kind == "popularity":
            if item_degree is None:
                raise ConfigError("popularity sampling needs item_degree")
            if item_degree.shape != (num_items,):
                # more entries would draw ids past the catalogue, fewer never draw the last
                raise ConfigError(
                    f"item_degree must have shape ({num_items},) (one degree per item), got "
                    f"{tuple(item_degree.shape)}"
                )
            w = item_degree.double().clamp(min=0).pow(beta)
            w = torch.where(item_degree > 0, w, torch.zeros_like(w))
            if not bool(torch.isfinite(w).all()) or not float(w.sum()) > 0:
                raise ConfigError(
                    "popularity sampling needs finite item degrees with at least one item of "
                    f"positive degree (beta={beta})"
                )
            self.probs = (w / w.sum()).float()
            self.log_probs = torch.log(self.probs.clamp_min(1e-30))
        self._last_draw: tuple[Tensor, Tensor] | None = None

    @property
    def last_collisions(self) -> int:
        """Training positives of the row's user among the negatives of the last
        :meth:`sample` call: those left after ``max_rounds`` rejection rounds for per-row
        draws, all of them for a shared draw (which is not rejected); ``0`` before any
        call, or without ``positives``. Counted when read (a host sync then, none per
        step), on the returned ``items`` as they are now."""
        last = getattr(self, "_last_draw", None)
        if last is None or self.positives is None:
            return 0
        dev = self.positives.keys.device  # the sampler may have moved since (:meth:`to`)
        users, items = (t.to(dev) for t in last)
        return int(self.positives.contains(users.unsqueeze(1), items).sum())

    def to(self, device: torch.device | str) -> NegativeSampler:
        if self.probs is not None:
            self.probs = self.probs.to(device)
            self.log_probs = self.log_probs.to(device)  # type: ignore[union-attr]
        if self.positives is not None:
            self.positives = self.positives.to(device)
        return self

    def _draw(
        self, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
    ) -> Tensor:
        if self.probs is None:
            return torch.randint(self.num_items, shape, device=device, generator=generator)
        if self.probs.device != torch.device(device):  # moved once, not copied at every draw
            self.probs = self.probs.to(device)
            self.log_probs = self.log_probs.to(device)  # type: ignore[union-attr]
        n = math.prod(shape)
        return torch.multinomial(self.probs, n, replacement=True, generator=generator).view(shape)

    def sample(
        self,
        users: Tensor,
        num: int,
        generator: torch.Generator | None = None,
        shared: bool | int = False,
    ) -> tuple[Tensor, Tensor]:
        """``(items [B, num], log_prob [B, num])`` of negatives for ``users`` ``[B]``.

        Args:
            users: ``[B]`` user ids of the rows.
            num: Negatives per row (``M``).
            generator: Random generator.
            shared: ``True``: draw one set of ``num`` items and give it to every row (an
                expanded view; the rows share the same negatives, which saves memory). An
                integer ``G``: draw ``G`` sets, each given to a block of rows
                (:func:`~pyg_cf.losses.base.negative_sets`; row ``r`` gets set ``r // S``).
                Rejection of positives is per row and so is skipped for shared negatives,
                silently: they may hold positives of the rows' users (counted by
                :attr:`last_collisions`).

        With ``positives``, per-row negatives are re-drawn while they collide, for at most
        ``max_rounds`` rounds; collisions left after them are returned as they are (see
        the class's ``positives``).
        """
        shape = (users.numel(), num)
        if shared:
            sets, rows = negative_sets(users.numel(), int(shared))
            draw = self._draw((sets, num), users.device, generator)
            items = spread_sets(draw, rows, users.numel())
        else:
            items = self._draw(shape, users.device, generator)
        if self.positives is not None and not shared:
            for _ in range(self.max_rounds):
                bad = self.positives.contains(users.unsqueeze(1), items)
                nbad = int(bad.sum())  # the one host sync per round: the size of the re-draw
                if nbad == 0:
                    break
                # the same writes as ``items[bad] = draw`` (row-major order of the mask),
                # without the hidden nonzero (a second host sync) of boolean-mask indexing
                items.masked_scatter_(bad, self._draw((nbad,), users.device, generator))
        # what last_collisions counts: this draw (also a shared one, not rejected), never
        # an earlier one
        self._last_draw = (users, items) if self.positives is not None else None
        if self.log_probs is None:
            logp = torch.full(shape, -math.log(self.num_items), device=users.device)
        else:
            logp = self.log_probs[items]
        return items, logp
