r"""A seeded power-law user–item graph generator.

Users draw their number of interactions from a discrete Pareto law and pick items with
probability proportional to Pareto-distributed item weights (a bipartite Chung–Lu model on
the item side):

.. math::
    |\mathcal{P}_u| = \min\bigl(\lfloor m\, X_u \rfloor, d_{\max}\bigr),\quad
    X_u \sim \mathrm{Pareto}(\alpha_u, 1),
    \qquad
    \Pr[\text{item } i] = \frac{w_i}{\sum_j w_j},\quad w_i \sim \mathrm{Pareto}(\alpha_i, 1),

so that :math:`\Pr[|\mathcal{P}_u| \ge k] = (m/k)^{\alpha_u}` for integers
:math:`m \le k \le d_{\max}` and item degrees have a Pareto tail of shape :math:`\alpha_i`.
Seen from the other end of an edge, user degrees are size-biased: their shape is
:math:`\alpha_u - 1` (what the propagation theory of :mod:`pyg_cf.diagnostics.theory`
averages over for an item).

Everything is vectorised over edges (``int64`` tensors, item draws in chunks, in-place
sorts), so graphs of tens of millions of edges take seconds and a few bytes per edge.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_cf.data.graph import build_graph
from pyg_cf.data.interactions import IdMap
from pyg_cf.errors import ConfigError

__all__ = ["pareto_degrees", "pareto_sample", "power_law_bipartite"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 22


def pareto_sample(
    n: int, alpha: float, x_min: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    r"""``n`` draws of :math:`X \sim \mathrm{Pareto}(\alpha, x_{\min})`,
    :math:`\Pr[X \ge x] = (x_{\min}/x)^{\alpha}`, as ``float64`` (inverse CDF).

    Args:
        n: Number of draws.
        alpha: Shape :math:`\alpha > 0`.
        x_min: Scale :math:`x_{\min} > 0`.
        generator: Random generator.
    """
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0, got {alpha}")
    if not x_min > 0:
        raise ConfigError(f"x_min must be > 0, got {x_min}")
    u = torch.rand(n, dtype=torch.float64, generator=generator)
    return x_min * (1.0 - u).pow(-1.0 / alpha)  # 1 - u lies in (0, 1]


def pareto_degrees(
    num_nodes: int,
    alpha: float,
    min_degree: int = 1,
    max_degree: int | None = None,
    total: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Integer degrees with a Pareto law.

    Without ``total``: :math:`d = \min(\lfloor m X \rfloor, d_{\max})` with
    :math:`X \sim \mathrm{Pareto}(\alpha, 1)`. With ``total``: the same draws :math:`X` are
    scaled, :math:`d = \mathrm{clip}(\lfloor s X \rfloor, m, d_{\max})` with :math:`s` found
    by bisection, and the remaining units go to the largest fractional parts, so that the
    degrees sum to exactly ``total``.

    Args:
        num_nodes: Number of nodes.
        alpha: Pareto shape.
        min_degree: Smallest degree :math:`m \ge 1`.
        max_degree: Largest degree :math:`d_{\max}` (``None``: no cap).
        total: Required sum of the degrees, or ``None``.
        generator: Random generator.

    Returns:
        ``[num_nodes]`` ``int64`` degrees.
    """
    if num_nodes <= 0:
        raise ConfigError(f"num_nodes must be positive, got {num_nodes}")
    if min_degree < 1:
        raise ConfigError(f"min_degree must be >= 1, got {min_degree}")
    cap = float(max_degree) if max_degree is not None else float("inf")
    if cap < min_degree:
        raise ConfigError(f"max_degree={max_degree} is smaller than min_degree={min_degree}")
    x = pareto_sample(num_nodes, alpha, 1.0, generator)
    if total is None:
        return (min_degree * x).floor().clamp(max=cap).long()
    if not num_nodes * min_degree <= total <= num_nodes * cap:
        raise ConfigError(
            f"total={total} edges cannot be spread over {num_nodes} nodes with degrees in "
            f"[{min_degree}, {max_degree}]"
        )

    def degs(s: float) -> Tensor:
        return (s * x).floor().clamp(min=min_degree, max=cap)

    lo, hi = 0.0, float(total) / float(x.min())
    for _ in range(64):  # f(s) = sum(degs(s)) is non-decreasing; keep f(lo) <= total
        mid = 0.5 * (lo + hi)
        if float(degs(mid).sum()) <= total:
            lo = mid
        else:
            hi = mid
    deg = degs(lo)
    deficit = int(total - float(deg.sum()))
    if deficit > 0:
        frac = torch.where(deg < cap, lo * x - (lo * x).floor(), -1.0)
        deg[frac.topk(deficit).indices] += 1
    return deg.long()


def _draw_items(cdf: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` item ids drawn from the cumulative weights ``cdf`` (``float64``, last = 1)."""
    out = torch.empty(n, dtype=torch.long)
    num_items = cdf.numel()
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        u = torch.rand(stop - start, dtype=torch.float64, generator=generator)
        torch.searchsorted(cdf, u, right=True, out=out[start:stop])
    return out.clamp_(max=num_items - 1)  # guards u == 1 - eps rounding past the end


def _redraw(
    key: Tensor,
    users: Tensor,
    num_items: int,
    cdf: Tensor,
    rounds: int,
    generator: torch.Generator,
) -> Tensor:
    """New distinct pairs for the dropped duplicate copies of ``users``: each round draws one
    item per missing copy and keeps the draws that are neither in the sorted ``key`` nor
    already accepted nor repeated within the round. Costs O(#missing log E) per round."""
    accepted = key.new_empty(0)
    for _ in range(rounds):
        if users.numel() == 0:
            break
        cand = users * num_items + _draw_items(cdf, users.numel(), generator)
        cand, _ = cand.sort()
        fresh = torch.ones_like(cand, dtype=torch.bool)
        fresh[1:] = cand[1:] != cand[:-1]
        for ref in (key, accepted):
            if ref.numel():
                pos = torch.searchsorted(ref, cand).clamp_(max=ref.numel() - 1)
                fresh &= ref[pos] != cand
        accepted, _ = torch.cat([accepted, cand[fresh]]).sort()
        users = cand[~fresh] // num_items
    return accepted


def power_law_bipartite(
    num_users: int,
    num_items: int,
    user_alpha: float = 2.0,
    item_alpha: float = 1.5,
    min_user_degree: int = 1,
    max_user_degree: int | None = None,
    num_edges: int | None = None,
    val_ratio: float = 0.0,
    test_ratio: float = 0.0,
    seed: int = 0,
    resample_rounds: int = 64,
    name: str = "synthetic-power-law",
) -> HeteroData:
    r"""A random user–item graph with power-law degrees, as a pyg-cf :class:`HeteroData`.

    User degrees come from :func:`pareto_degrees` (shape ``user_alpha``, at least
    ``min_user_degree``); each user's items are drawn with probability proportional to
    Pareto(``item_alpha``) weights. A user drawing the same item twice redraws the copy
    (up to ``resample_rounds`` times, then the copy is dropped), so that users keep their
    drawn degree unless they hold nearly all the popularity mass. Edges are then split at
    random into train / validation / test with the given ratios (training degrees are
    thinned accordingly).

    Args:
        num_users: Number of users.
        num_items: Number of items.
        user_alpha: Pareto shape of user degrees (smaller: heavier tail).
        item_alpha: Pareto shape of item weights (smaller: more concentrated popularity).
        min_user_degree: Smallest drawn user degree :math:`m`.
        max_user_degree: Cap on drawn user degrees (``None``: ``num_items // 2``).
        num_edges: Number of interactions before the split (exact unless duplicates
            survive the redraw rounds; ``None``: as the law gives, about
            ``num_users * m * user_alpha / (user_alpha - 1)`` for ``user_alpha > 1``).
        val_ratio: Fraction of interactions held out for validation.
        test_ratio: Fraction of interactions held out for testing.
        seed: Seed; equal arguments give equal graphs.
        resample_rounds: Rounds of redrawing duplicate (user, item) pairs.
        name: Stored as ``data.name``.

    Returns:
        The data object of :func:`pyg_cf.data.build_graph` (raw ids are the dense ids).
    """
    if num_users <= 0 or num_items <= 0:
        raise ConfigError(
            f"num_users and num_items must be positive, got {num_users} / {num_items}"
        )
    if not (0.0 <= val_ratio and 0.0 <= test_ratio and val_ratio + test_ratio < 1.0):
        raise ConfigError(
            f"val_ratio and test_ratio must be >= 0 with a sum below 1, got "
            f"{val_ratio} / {test_ratio}"
        )
    if resample_rounds < 0:
        raise ConfigError(f"resample_rounds must be >= 0, got {resample_rounds}")
    if max_user_degree is None:
        max_user_degree = max(1, num_items // 2)
    if max_user_degree > num_items:
        raise ConfigError(f"max_user_degree={max_user_degree} exceeds num_items={num_items}")
    if min_user_degree > max_user_degree:
        raise ConfigError(
            f"min_user_degree={min_user_degree} exceeds max_user_degree={max_user_degree}"
        )
    gen = torch.Generator().manual_seed(seed)
    deg = pareto_degrees(
        num_users, user_alpha, min_user_degree, max_user_degree, num_edges, generator=gen
    )
    weights = pareto_sample(num_items, item_alpha, 1.0, gen)
    cdf = torch.cumsum(weights, 0)
    cdf /= cdf[-1].clone()
    del weights

    e = int(deg.sum())
    # key = user * num_items + item: users are already in order, so sorting the keys
    # sorts the edges and brings duplicates together.
    key = torch.repeat_interleave(torch.arange(num_users, dtype=torch.long), deg)
    key.mul_(num_items).add_(_draw_items(cdf, e, gen))
    del deg
    key.numpy().sort()  # in place (shares memory), no index array
    first = torch.ones(e, dtype=torch.bool)
    torch.ne(key[1:], key[:-1], out=first[1:])
    missing = key[~first] // num_items  # one entry per dropped copy: its user
    key = key[first]
    del first
    extra = _redraw(key, missing, num_items, cdf, resample_rounds, gen)
    if extra.numel():
        key = torch.cat([key, extra])
        key.numpy().sort()
    if key.numel() < e:
        log.info(
            "power_law_bipartite: %d of %d drawn pair(s) stayed duplicates after %d "
            "redraw rounds and were dropped",
            e - key.numel(),
            e,
            resample_rounds,
        )

    split = None
    if val_ratio > 0 or test_ratio > 0:
        u = torch.rand(key.numel(), generator=gen)
        split = (u >= val_ratio).to(torch.int8) + (u >= val_ratio + test_ratio).to(torch.int8)
        del u  # split: 0 = val, 1 = test, 2 = train
    parts = {}
    for part, code in (("train", 2), ("val", 0), ("test", 1)):
        k = key if split is None else key[split == code]
        if split is None and part != "train":
            k = key.new_empty(0)
        users = torch.div(k, num_items, rounding_mode="floor")
        parts[part] = _frame(users, k - users * num_items)
    del key, split
    id_map = IdMap(users=np.arange(num_users), items=np.arange(num_items))
    return build_graph(
        parts["train"],
        id_map,
        val=parts["val"] if len(parts["val"]) else None,
        test=parts["test"] if len(parts["test"]) else None,
        name=name,
    )


def _frame(users: Tensor, items: Tensor) -> pd.DataFrame:
    return pd.DataFrame({"user": users.numpy(), "item": items.numpy()}, copy=False)
