r"""Vectorised neighbor sampling on CSR arrays.

Every function works on whole frontiers at once (no Python loop over nodes) and on any
device; randomness comes only from the ``generator`` argument, so seeded runs repeat.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sample_neighbors", "sample_offsets"]


def sample_offsets(deg: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    r"""``k`` distinct offsets in ``[0, deg_n)`` for each row ``n``, uniformly over all
    ``k``-subsets, by Floyd's algorithm run in lock-step over the rows.

    For :math:`j = d-k, \dots, d-1` draw :math:`t \sim U\{0, \dots, j\}` and add :math:`t`
    to the sample unless it is already there, in which case add :math:`j`. Every
    :math:`k`-subset of :math:`\{0, \dots, d-1\}` comes out with probability
    :math:`1/\binom{d}{k}`. The loop runs over the ``k`` draws, not over rows; the
    membership test costs :math:`O(k)` per row and draw.

    Args:
        deg: ``[N]`` row lengths, each at least ``k``.
        k: Number of offsets per row.
        generator: Random number generator (on ``deg``'s device).

    Returns:
        ``[N, k]`` offsets (unordered within a row).
    """
    n = deg.numel()
    out = torch.empty(n, k, dtype=torch.long, device=deg.device)
    if n == 0 or k == 0:
        return out
    u = torch.rand(n, k, device=deg.device, generator=generator, dtype=torch.float64)
    for step in range(k):
        j = deg - k + step  # [N], the current upper end (inclusive)
        t = (u[:, step] * (j + 1).to(torch.float64)).long().clamp_(max=j)
        if step:
            seen = (out[:, :step] == t.unsqueeze(1)).any(1)
            t = torch.where(seen, j, t)
        out[:, step] = t
    return out


def sample_neighbors(
    rowptr: Tensor,
    nodes: Tensor,
    fanout: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Positions in a CSR ``col`` array of up to ``fanout`` neighbors of each node, drawn
    uniformly without replacement (all of them when ``fanout < 0`` or the degree is
    smaller).

    Args:
        rowptr: ``[num_rows + 1]`` CSR row pointer.
        nodes: ``[N]`` rows to sample from.
        fanout: Neighbors per node; ``-1`` for all.
        generator: Random number generator.

    Returns:
        ``(row, pos)``: for every sampled entry, its position in ``nodes`` and its position
        in the CSR arrays (index ``col`` / edge ids with it).
    """
    start = rowptr.index_select(0, nodes)
    deg = rowptr.index_select(0, nodes + 1) - start
    take = deg if fanout < 0 else deg.clamp(max=fanout)
    total = int(take.sum())
    row = torch.repeat_interleave(
        torch.arange(nodes.numel(), device=nodes.device), take, output_size=total
    )
    offs = torch.arange(total, device=nodes.device) - torch.repeat_interleave(
        torch.cumsum(take, 0) - take, take, output_size=total
    )
    if fanout >= 0:
        # Rows with more than ``fanout`` neighbors get ``fanout`` distinct offsets drawn;
        # the others keep all of theirs. One host sync (the size of ``nonzero``) besides
        # ``total``: no boolean-mask indexing, and the draws are those of sampling the big
        # rows' degrees in node order, as before (seeded runs repeat bit for bit).
        big = deg > fanout
        big_rows = big.nonzero().view(-1)
        if big_rows.numel():
            picked = sample_offsets(deg.index_select(0, big_rows), fanout, generator)
            slot = torch.cumsum(big, 0) - 1  # row -> index among the sampled rows
            # gathered for every entry (offs < fanout always; rows before the first big row
            # have slot -1, clamped), kept only for the big rows
            cand = picked[slot.index_select(0, row).clamp(min=0), offs]
            offs = torch.where(big.index_select(0, row), cand, offs)
    return row, start.index_select(0, row) + offs
