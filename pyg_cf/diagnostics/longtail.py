r"""Recall@K decomposed over item-popularity groups (the sampled-softmax paper, eq. 22).

Items are sorted by training degree and cut into :math:`G` groups
:math:`\mathcal{I}_1, \dots, \mathcal{I}_G` holding (as nearly as possible) the same total
number of training interactions, :math:`\mathcal{I}_1` the least popular. With
:math:`R_u` the top-:math:`K` list of user :math:`u` (training items, and at test time
validation items, masked as in :mod:`pyg_cf.metrics`) and :math:`T_u` its held-out
positives, over the :math:`|\mathcal{U}|` users with :math:`T_u \ne \emptyset`:

.. math::
    \mathrm{Recall@K} = \frac{1}{|\mathcal{U}|} \sum_{u} \frac{|R_u \cap T_u|}{|T_u|}
    = \sum_{g=1}^{G} \underbrace{\frac{1}{|\mathcal{U}|} \sum_{u}
      \frac{|R_u \cap T_u \cap \mathcal{I}_g|}{|T_u|}}_{\mathrm{Recall}_g},

since the groups partition the items. The ranking is the one of
:func:`pyg_cf.metrics.evaluate` (same scores, masking and top-K routine), so the sum of the
contributions is its Recall@K.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_cf.data.graph import degrees, held_out_edges, train_edges
from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.diagnostics.embeddings import EmbeddingSource, final_embeddings
from pyg_cf.errors import ConfigError
from pyg_cf.metrics.ranking import (
    _chunk_size,
    _GemmScores,
    check_embedding_pair,
    check_finite_rows,
    check_ks,
    mask_seen,
    masked_hits,
    nonfinite_top_rows,
    positive_index,
    score_dtype,
    topk_indices,
)

__all__ = ["LongTailRecall", "item_groups", "long_tail_recall"]


def positive_int(name: str, value: object) -> int:
    """``value`` as an ``int``; a :class:`ConfigError` naming ``name`` unless it is a
    positive integer (NumPy integers included, bools refused)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or int(value) < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_groups(groups: int) -> int:
    """``groups`` as an ``int``; a :class:`ConfigError` unless it is a positive integer."""
    return positive_int("groups", groups)


def _check_degrees(item_degree: Tensor) -> Tensor:
    """``item_degree`` as an ``int64`` CPU tensor; a :class:`ConfigError` unless it is a
    non-empty 1-D tensor of non-negative whole numbers, not all zero."""
    if not isinstance(item_degree, Tensor) or item_degree.dim() != 1 or item_degree.numel() == 0:
        got = tuple(item_degree.shape) if isinstance(item_degree, Tensor) else item_degree
        raise ConfigError(f"item_degree must be a non-empty 1-D tensor, got {got!r}")
    deg = item_degree.detach().cpu()
    if deg.is_complex():
        raise ConfigError(f"item_degree must hold whole numbers, got dtype {deg.dtype}")
    if deg.is_floating_point():
        bad = ~torch.isfinite(deg) | (deg != deg.round())
        if bool(bad.any()):
            first = float(deg[bad][0])
            raise ConfigError(
                "item_degree must hold whole numbers (interaction counts), got "
                f"{int(bad.sum())} non-integer entries, e.g. {first}"
            )
    if bool((deg < 0).any()):
        raise ConfigError("item_degree has negative entries")
    deg = deg.long()
    if not bool(deg.any()):
        raise ConfigError(
            "item_degree is all zero: no training interactions to split into popularity groups"
        )
    return deg


def item_groups(item_degree: Tensor, groups: int = 10) -> Tensor:
    r"""Popularity group (``0`` = least popular) of every item, with equal interaction mass.

    Items are sorted by degree (ties by id) and the boundary :math:`g` (for
    :math:`g = 1, \dots, G-1`) is put after the prefix whose interaction total is closest to
    :math:`g \cdot E / G`, :math:`E` the total degree. An item with more than
    :math:`E/G` interactions can leave a neighbouring group empty.

    Args:
        item_degree: ``[I]`` training degrees: non-negative whole numbers (an integer
            dtype, or floating point without a fractional part), not all zero.
        groups: Number of groups :math:`G`.

    Returns:
        ``[I]`` ``int64`` group ids in ``[0, groups)``, non-decreasing in degree.
    """
    groups = _check_groups(groups)
    deg = _check_degrees(item_degree)
    order = torch.from_numpy(np.lexsort((np.arange(deg.numel()), deg.numpy())))
    cum = torch.cumsum(deg[order], 0).double()  # cum[j]: total of the first j + 1 items
    total = float(cum[-1])
    targets = torch.arange(1, groups, dtype=torch.float64) * total / groups
    # The prefix of n items has total cum[n-1]; the candidates are the two prefixes around
    # each target; keep the closer (the shorter one on a tie).
    n_hi = torch.searchsorted(cum, targets, right=False) + 1  # first prefix reaching target
    prefix = torch.cat([cum.new_zeros(1), cum])
    n_lo = n_hi - 1
    take_lo = (targets - prefix[n_lo]) <= (prefix[n_hi.clamp(max=deg.numel())] - targets)
    cuts = torch.where(take_lo, n_lo, n_hi).clamp(max=deg.numel())
    rank_group = torch.searchsorted(cuts, torch.arange(deg.numel()), right=True)
    group = torch.empty_like(rank_group)
    group[order] = rank_group
    return group.to(item_degree.device)


@dataclass
class LongTailRecall:
    r"""Per-group Recall@K contributions.

    Attributes:
        table: One row per group ``group`` (1 = least popular): ``num_items``,
            ``item_share`` (fraction of all items), ``interactions`` (training degree
            total), ``interaction_share``, ``degree_min``, ``degree_max`` and ``recall``
            (:math:`\mathrm{Recall}_g`, the group's contribution).
        recall: :math:`\mathrm{Recall@K} = \sum_g \mathrm{Recall}_g`.
        k: The cut-off.
        item_group: ``[I]`` group id (0-based) of every item.
    """

    table: pd.DataFrame
    recall: float
    k: int
    item_group: Tensor


@torch.no_grad()
def long_tail_recall(
    model_or_embeddings: EmbeddingSource,
    data: HeteroData,
    k: int = 20,
    groups: int = 10,
    split: str = "test",
    similarity: str = "ip",
    mask_val_at_test: bool = True,
    memory_budget_mb: float | None = None,
) -> LongTailRecall:
    r"""Decompose Recall@K into item-popularity groups (eq. 22).

    Args:
        model_or_embeddings: A :class:`~pyg_cf.nn.GraphCF`, a module returning
            ``(user_emb, item_emb)``, or that pair.
        data: The pyg-cf data object.
        k: Cut-off :math:`K`.
        groups: Number of groups :math:`G` (:func:`item_groups`), formed on the items'
            degrees in ``data``'s training edges — with a validation carve, those of the
            training split without it (the popularity the model was trained on).
        split: ``'test'`` or ``'val'``.
        similarity: ``'ip'`` or ``'cos'`` at prediction time.
        mask_val_at_test: Mask validation positives when ``split='test'`` (as
            :func:`pyg_cf.metrics.evaluate`).
        memory_budget_mb: Memory for one chunk of scores (``None``: the device's default,
            256 MB on the CPU, 1 GB on a GPU).

    Returns:
        A :class:`LongTailRecall` whose ``table['recall']`` sums to the Recall@K of
        :func:`pyg_cf.metrics.evaluate` on the same embeddings.
    """
    if similarity not in ("ip", "cos"):
        raise ConfigError(f"similarity must be 'ip' or 'cos', got {similarity!r}")
    u_emb, i_emb = final_embeddings(model_or_embeddings)
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    check_embedding_pair(u_emb, i_emb, nu, ni)
    try:
        check_ks((k,), ni, "the number of items")
    except ConfigError:
        raise ConfigError(f"k must be an integer in [1, {ni}], got {k!r}") from None
    k, groups = int(k), _check_groups(groups)
    if similarity == "cos":
        u_emb, i_emb = F.normalize(u_emb, dim=-1), F.normalize(i_emb, dim=-1)
    dev = u_emb.device
    _, item_deg = degrees(data)
    group = item_groups(item_deg, groups).to(dev)
    seen = [train_edges(data)]
    if split == "test" and mask_val_at_test:
        seen.append(held_out_edges(data, "val"))
    positives = held_out_edges(data, split)
    if positives.numel() == 0:
        raise ConfigError(f"data has no {split} positives")
    pos = positive_index(positives, nu, ni, "long_tail_recall", dev)
    masks = [UserItemIndex.cached_on(s, dev, nu, ni) for s in seen if s.numel()]
    users_all = torch.nonzero(pos.counts > 0).view(-1)
    chunk = _chunk_size(memory_budget_mb, ni, dev)
    scorer = _GemmScores(u_emb, i_emb, chunk)
    contrib = torch.zeros(groups, dtype=torch.float64, device=dev)
    bad_rows = torch.zeros(2, dtype=torch.long, device=dev)  # read once, after the loop
    for start in range(0, users_all.numel(), chunk):
        users = users_all[start : start + chunk]
        scores = score_dtype(scorer(users))
        for m in masks:
            mask_seen(scores, users, m)
        top = topk_indices(scores, k)
        bad_rows += nonfinite_top_rows(scores, top)
        hits = masked_hits(pos, masks, users, top, ni)
        weight = hits.double() / pos.counts[users].double().unsqueeze(1)  # 1/|T_u| per hit
        contrib.index_add_(0, group[top.clamp(max=ni - 1)].view(-1), weight.view(-1))
    check_finite_rows(bad_rows, users_all.numel())
    contrib /= max(users_all.numel(), 1)
    group_cpu = group.cpu()
    deg = item_deg.cpu()
    counts = torch.bincount(group_cpu, minlength=groups)
    inter = torch.bincount(group_cpu, weights=deg.double(), minlength=groups)
    big = torch.iinfo(torch.long).max
    dmin = torch.full((groups,), big).scatter_reduce(0, group_cpu, deg, "amin")
    dmax = torch.zeros(groups, dtype=torch.long).scatter_reduce(0, group_cpu, deg, "amax")
    empty = counts == 0
    table = pd.DataFrame(
        {
            "group": np.arange(1, groups + 1),
            "num_items": counts.numpy(),
            "item_share": (counts.double() / ni).numpy(),
            "interactions": inter.long().numpy(),
            "interaction_share": (inter / max(float(inter.sum()), 1.0)).numpy(),
            "degree_min": dmin.masked_fill(empty, 0).numpy(),
            "degree_max": dmax.numpy(),
            "recall": contrib.cpu().numpy(),
        }
    )
    return LongTailRecall(table, float(contrib.sum()), k, group)
