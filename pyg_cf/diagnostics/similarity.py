r"""Cosine similarity of positive pairs against random pairs.

For the final embeddings :math:`\mathbf{p}_u, \mathbf{q}_i`, the cosine
:math:`\cos(\mathbf{p}_u, \mathbf{q}_i)` of observed (positive) pairs is compared with that
of uniformly random user–item pairs: a model that separates the two distributions ranks by
direction; overlapping distributions leave ranking to the magnitudes.
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

from pyg_cf.data.graph import held_out_edges, train_edges
from pyg_cf.diagnostics.embeddings import EmbeddingSource, final_embeddings
from pyg_cf.errors import ConfigError, PygCFError

__all__ = ["SimilarityView", "pair_cosine", "similarity_histograms"]


def pair_cosine(user_emb: Tensor, item_emb: Tensor, pairs: Tensor, chunk: int = 1 << 20) -> Tensor:
    """Cosine similarity of each ``(user, item)`` column of ``pairs`` (``[2, P]``), in
    chunks of ``chunk`` pairs."""
    out = torch.empty(pairs.size(1), dtype=user_emb.dtype, device=user_emb.device)
    for s in range(0, pairs.size(1), chunk):
        p = pairs[:, s : s + chunk].to(user_emb.device)
        out[s : s + chunk] = F.cosine_similarity(user_emb[p[0]], item_emb[p[1]], dim=-1)
    return out


def _positive_int(name: str, value: object, or_none: bool = False) -> int:
    """``value`` as an ``int``; a :class:`ConfigError` naming ``name`` unless it is an
    integer ``>= 1`` (NumPy integers included, bools refused)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        also = " or None" if or_none else ""
        raise ConfigError(f"{name} must be an integer >= 1{also}, got {value!r}")
    return int(value)


def _check_finite_cosines(cos: Tensor, what: str) -> None:
    """Raise if any cosine of ``what`` pairs is NaN (a NaN or infinite embedding): dropped
    from the histograms, it would leave densities that silently ignore those pairs."""
    n = int(cos.isnan().sum())
    if n:
        raise PygCFError(
            f"cosine similarities are NaN for {n} of {cos.numel()} {what} pairs (diverged or "
            "corrupted embeddings?): the histograms would silently leave them out"
        )


@dataclass
class SimilarityView:
    """Positive-pair and random-pair cosine similarities.

    Attributes:
        positive: ``[P]`` cosines of the (sub-sampled) positive pairs.
        random: ``[R]`` cosines of uniformly random pairs.
        table: Histogram over ``bins`` equal bins of ``[-1, 1]``: ``bin_lo``, ``bin_hi``,
            ``positive`` and ``random`` (densities: each integrates to 1).
    """

    positive: Tensor
    random: Tensor
    table: pd.DataFrame

    def summary(self) -> dict[str, float]:
        """Means and standard deviations of both samples."""
        return {
            "positive_mean": float(self.positive.mean()),
            "positive_std": float(self.positive.std()) if self.positive.numel() > 1 else 0.0,
            "random_mean": float(self.random.mean()),
            "random_std": float(self.random.std()) if self.random.numel() > 1 else 0.0,
        }


@torch.no_grad()
def similarity_histograms(
    model_or_embeddings: EmbeddingSource,
    data: HeteroData,
    split: str = "train",
    num_pairs: int | None = 100_000,
    num_random: int | None = None,
    bins: int = 50,
    seed: int = 0,
) -> SimilarityView:
    r"""Histograms of :math:`\cos(\mathbf{p}_u, \mathbf{q}_i)` for positive and random pairs.

    Args:
        model_or_embeddings: A :class:`~pyg_cf.nn.GraphCF`, a module returning
            ``(user_emb, item_emb)``, or that pair.
        data: The pyg-cf data object.
        split: Where positives come from: ``'train'``, ``'val'`` or ``'test'``.
        num_pairs: At most this many positive pairs (sampled without replacement;
            ``None``: all).
        num_random: Number of random pairs, uniform over users and items (``None``: as many
            as positive pairs).
        bins: Number of histogram bins over ``[-1, 1]``.
        seed: Seed of the sub-sampling.

    Raises:
        PygCFError: if a cosine is NaN (NaN or infinite embeddings), as
            :func:`pyg_cf.metrics.evaluate` refuses NaN scores.
    """
    bins = _positive_int("bins", bins)
    u, i = final_embeddings(model_or_embeddings)
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    if u.size(0) != nu or i.size(0) != ni:
        raise ConfigError(
            f"embeddings are for {u.size(0)} users / {i.size(0)} items but the data has {nu} / {ni}"
        )
    if split == "train":
        pos = train_edges(data)
    elif split in ("val", "test"):
        pos = held_out_edges(data, split)
    else:
        raise ConfigError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if pos.numel() == 0:
        raise ConfigError(f"data has no {split} pairs")
    if num_pairs is not None:
        num_pairs = _positive_int("num_pairs", num_pairs, or_none=True)
    if num_random is not None:
        num_random = _positive_int("num_random", num_random, or_none=True)
    gen = torch.Generator().manual_seed(seed)
    if num_pairs is not None and pos.size(1) > num_pairs:
        pos = pos[:, torch.randperm(pos.size(1), generator=gen)[:num_pairs]]
    n_rand = pos.size(1) if num_random is None else num_random
    rand = torch.stack(
        [
            torch.randint(nu, (n_rand,), generator=gen),
            torch.randint(ni, (n_rand,), generator=gen),
        ]
    )
    cos_pos = pair_cosine(u, i, pos).float().cpu()
    cos_rand = pair_cosine(u, i, rand).float().cpu()
    _check_finite_cosines(cos_pos, "positive")
    _check_finite_cosines(cos_rand, "random")
    edges = np.linspace(-1.0, 1.0, bins + 1)
    hp, _ = np.histogram(cos_pos.clamp(-1, 1).numpy(), edges, density=True)
    hr, _ = np.histogram(cos_rand.clamp(-1, 1).numpy(), edges, density=True)
    table = pd.DataFrame({"bin_lo": edges[:-1], "bin_hi": edges[1:], "positive": hp, "random": hr})
    return SimilarityView(cos_pos, cos_rand, table)
