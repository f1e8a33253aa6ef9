"""Getting final user and item embeddings out of a model, whatever its kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pyg_cf.errors import ConfigError

__all__ = ["EmbeddingSource", "final_embeddings", "propagation_info"]

EmbeddingSource = nn.Module | Sequence[Tensor]
"""A model (with ``embeddings()`` or a ``forward()`` returning ``(user_emb, item_emb)``)
or a pair ``(user_emb, item_emb)``."""


@torch.no_grad()
def final_embeddings(source: EmbeddingSource) -> tuple[Tensor, Tensor]:
    """Final ``(user_emb, item_emb)`` of ``source``, detached.

    Args:
        source: A :class:`~pyg_cf.nn.GraphCF` (its :meth:`embeddings`), any module whose
            ``forward()`` with no arguments returns ``(user_emb, item_emb)`` over its
            attached graph, or the pair of tensors itself.
    """
    if isinstance(source, nn.Module):
        was_training = source.training
        source.eval()
        try:
            fn = getattr(source, "embeddings", None)
            # a method, not a submodule that happens to be called `embeddings`
            out: Any = fn() if callable(fn) and not isinstance(fn, nn.Module) else source()
        finally:
            source.train(was_training)
    else:
        out = source
    if (
        not isinstance(out, (tuple, list))
        or len(out) != 2
        or not all(isinstance(t, Tensor) and t.dim() == 2 for t in out)
    ):
        raise ConfigError(
            "expected a model returning (user_emb, item_emb) or a pair of [N, d] tensors, "
            f"got {type(source).__name__}"
        )
    return out[0].detach(), out[1].detach()


def propagation_info(source: EmbeddingSource) -> dict[str, Any]:
    """``alpha0``, ``alpha1`` and which sides a :class:`~pyg_cf.nn.GraphCF` propagates
    (``{'propagated': {'user': bool, 'item': bool}}``); empty for other sources."""
    if not isinstance(source, nn.Module) or not hasattr(source, "alpha0"):
        return {}
    alpha0: Any = source.alpha0
    alpha1: Any = getattr(source, "alpha1", 0.0)
    return {
        "alpha0": float(alpha0),
        "alpha1": float(alpha1),
        "propagated": {
            "user": bool(getattr(source, "propagate_users", True)),
            "item": bool(getattr(source, "propagate_items", True)),
        },
    }
