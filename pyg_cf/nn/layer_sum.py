r"""The layer-weighted sum of ``K`` bipartite hops, formed only at a batch's rows.

With the cached normalized adjacencies :math:`\mathbf{A}_{UI}` (``[U, I]``, items to users)
and :math:`\mathbf{A}_{IU}` (``[I, U]``, users to items), the hops of
:class:`~pyg_cf.nn.GraphCF` with both sides propagated are

.. math::
    \mathbf{P}^{(k+1)} = \mathbf{A}_{UI}\mathbf{Q}^{(k)}, \qquad
    \mathbf{Q}^{(k+1)} = \mathbf{A}_{IU}\mathbf{P}^{(k)},

and the final embeddings :math:`\mathbf{P} = \sum_{k=0}^{K} w_k \mathbf{P}^{(k)}`,
:math:`\mathbf{Q} = \sum_k w_k \mathbf{Q}^{(k)}`. A training step reads only the rows of its
batch, :math:`\mathbf{S}_U\mathbf{P}` and :math:`\mathbf{S}_I\mathbf{Q}` (``S`` a row
selection, rows may repeat). :func:`layer_sum_rows` computes them as one autograd node:

* forward: the ``K`` products per side, and the sum over hops only at the selected rows
  (``B`` rows gathered per hop instead of table-sized multiply-adds);
* backward: the map is linear in :math:`(\mathbf{P}^{(0)}, \mathbf{Q}^{(0)})`, so nothing
  but the row ids is saved, and the gradient follows Horner's rule with the cached
  transposes (:math:`\mathbf{g}` the output gradients):

  .. math::
      \mathbf{G}_U^{(K)} = w_K\mathbf{S}_U^{\top}\mathbf{g}_U, \quad
      \mathbf{G}_U^{(k)} = w_k\mathbf{S}_U^{\top}\mathbf{g}_U
          + \mathbf{A}_{IU}^{\top}\mathbf{G}_I^{(k+1)}, \quad
      \mathbf{G}_I^{(k)} = w_k\mathbf{S}_I^{\top}\mathbf{g}_I
          + \mathbf{A}_{UI}^{\top}\mathbf{G}_U^{(k+1)},

  and :math:`\partial\mathcal{L}/\partial\mathbf{P}^{(0)} = \mathbf{G}_U^{(0)}`: ``K``
  products per side and ``B``-row additions (``index_add``), one zero fill per side.

Same values and gradients as ``GraphCF.forward()`` followed by ``index_select`` (up to the
order of floating-point additions), without its table-sized elementwise passes:
``benchmarks/bench_train_step.py`` times both. No host synchronisation, fixed shapes (a CUDA
graph can capture it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_cf.nn.spmm import CachedAdjacency, _mm

__all__ = ["layer_sum_rows"]


class _LayerSumRows(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_u: Tensor,
        x_i: Tensor,
        users: Tensor,
        items: Tensor,
        weights: Tensor,
        a_ui: CachedAdjacency,
        a_iu: CachedAdjacency,
    ) -> tuple[Tensor, Tensor]:
        ctx.adj = (a_ui, a_iu)
        ctx.sizes = (x_u.size(0), x_i.size(0))
        ctx.save_for_backward(users, items, weights)
        w = weights.to(x_u.dtype)
        out_u = x_u.index_select(0, users) * w[0]
        out_i = x_i.index_select(0, items) * w[0]
        h_u, h_i = x_u, x_i
        for k in range(1, weights.numel()):
            h_u, h_i = _mm(a_ui.matrix, h_i), _mm(a_iu.matrix, h_u)
            out_u = out_u + h_u.index_select(0, users) * w[k]
            out_i = out_i + h_i.index_select(0, items) * w[k]
        return out_u, out_i

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, g_u: Tensor, g_i: Tensor
    ) -> tuple[Tensor, Tensor, None, None, None, None, None]:
        a_ui, a_iu = ctx.adj
        users, items, weights = ctx.saved_tensors
        w = weights.to(g_u.dtype)
        n_u, n_i = ctx.sizes
        top = weights.numel() - 1
        big_u = g_u.new_zeros(n_u, g_u.size(1)).index_add_(0, users, g_u * w[top])
        big_i = g_i.new_zeros(n_i, g_i.size(1)).index_add_(0, items, g_i * w[top])
        for k in range(top - 1, -1, -1):
            # the user rows of hop k+1 came from the items of hop k, and the other way round
            big_u, big_i = _mm(a_iu.matrix_t, big_i), _mm(a_ui.matrix_t, big_u)
            big_u.index_add_(0, users, g_u * w[k])
            big_i.index_add_(0, items, g_i * w[k])
        return big_u, big_i, None, None, None, None, None


def layer_sum_rows(
    x_u: Tensor,
    x_i: Tensor,
    users: Tensor,
    items: Tensor,
    weights: Tensor,
    a_ui: CachedAdjacency,
    a_iu: CachedAdjacency,
) -> tuple[Tensor, Tensor]:
    r"""Rows ``users`` of :math:`\sum_k w_k\mathbf{P}^{(k)}` and rows ``items`` of
    :math:`\sum_k w_k\mathbf{Q}^{(k)}` (module docstring), differentiable in ``x_u`` and
    ``x_i`` (once).

    Args:
        x_u: Layer-0 user embeddings ``[U, d]``.
        x_i: Layer-0 item embeddings ``[I, d]``.
        users: ``[B_u]`` user rows to return (int64; repeats allowed; not range-checked).
        items: ``[B_i]`` item rows to return.
        weights: ``[K + 1]`` layer weights :math:`w_k` (``K = len(weights) - 1`` hops).
        a_ui: The ``[U, I]`` normalized adjacency (items to users) with its transpose.
        a_iu: The ``[I, U]`` normalized adjacency (users to items) with its transpose.

    Returns:
        ``([B_u, d], [B_i, d])``.
    """
    if x_u.dtype != a_ui.matrix.dtype or x_i.dtype != a_iu.matrix.dtype:
        raise TypeError(
            f"layer_sum_rows: adjacency is {a_ui.matrix.dtype} but features are {x_u.dtype}"
        )
    out: tuple[Tensor, Tensor] = _LayerSumRows.apply(x_u, x_i, users, items, weights, a_ui, a_iu)
    return out
