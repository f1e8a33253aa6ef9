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

Only the selected rows of the last hop are read, so with ``slice_last_hop`` (the CPU's
default) it is formed from the rows' slices of the matrices,
:math:`(\mathbf{S}_U\mathbf{A}_{UI})\mathbf{Q}^{(K-1)}`, and the backward's first
products from the slices' transposes, :math:`(\mathbf{S}_U\mathbf{A}_{UI})^{\top}
(w_K\mathbf{g}_U)` (:func:`~pyg_cf.nn.spmm.row_slice`: distinct rows only; a side whose
rows hold more than :data:`~pyg_cf.nn.spmm.ROWS_MAX_SHARE` of the non-zeros keeps the
whole product). On Gowalla a BPR batch's users hold 7–19 % of the edges and its distinct
items ≈ 17 %: a LightGCN + BPR step takes 0.87–0.90× the time at one thread, 0.94–0.95× at two.

Same values and gradients as ``GraphCF.forward()`` followed by ``index_select`` (up to the
order of floating-point additions), without its table-sized elementwise passes:
``benchmarks/bench_train_step.py`` times both. Without ``slice_last_hop`` (a GPU's default):
no host synchronisation, fixed shapes (a CUDA graph can capture it); the slices read their
sizes on the host.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_cf.nn.spmm import Adjacency, RowSlice, _mm, row_slice

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
        a_ui: Adjacency,
        a_iu: Adjacency,
        last_u: RowSlice | None,
        last_i: RowSlice | None,
    ) -> tuple[Tensor, Tensor]:
        ctx.adj = (a_ui, a_iu)
        ctx.last = (last_u, last_i)
        ctx.sizes = (x_u.size(0), x_i.size(0))
        ctx.save_for_backward(users, items, weights)
        w = weights.to(x_u.dtype)
        top = weights.numel() - 1
        out_u = x_u.index_select(0, users) * w[0]
        out_i = x_i.index_select(0, items) * w[0]
        h_u, h_i = x_u, x_i
        for k in range(1, top):
            h_u, h_i = _mm(a_ui.matrix, h_i), _mm(a_iu.matrix, h_u)
            out_u = out_u + h_u.index_select(0, users) * w[k]
            out_i = out_i + h_i.index_select(0, items) * w[k]
        if top >= 1:  # the last hop, at the requested rows only where sliced
            out_u = out_u + _rows_of_product(a_ui, last_u, h_i, users) * w[top]
            out_i = out_i + _rows_of_product(a_iu, last_i, h_u, items) * w[top]
        return out_u, out_i

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, g_u: Tensor, g_i: Tensor
    ) -> tuple[Tensor | None, ...]:
        a_ui, a_iu = ctx.adj
        last_u, last_i = ctx.last
        users, items, weights = ctx.saved_tensors
        w = weights.to(g_u.dtype)
        n_u, n_i = ctx.sizes
        top = weights.numel() - 1
        nones = (None,) * 7
        if top == 0:
            big_u = g_u.new_zeros(n_u, g_u.size(1)).index_add_(0, users, g_u * w[0])
            big_i = g_i.new_zeros(n_i, g_i.size(1)).index_add_(0, items, g_i * w[0])
            return (big_u, big_i, *nones)
        # the first Horner step: the user rows of hop K came from the items of hop K - 1
        # (A_UI^T S_U^T g_U), and the other way round
        big_u = _product_t_of_rows(a_iu, last_i, g_i * w[top], items, n_i)
        big_i = _product_t_of_rows(a_ui, last_u, g_u * w[top], users, n_u)
        big_u.index_add_(0, users, g_u * w[top - 1])
        big_i.index_add_(0, items, g_i * w[top - 1])
        for k in range(top - 2, -1, -1):
            big_u, big_i = _mm(a_iu.matrix_t, big_i), _mm(a_ui.matrix_t, big_u)
            big_u.index_add_(0, users, g_u * w[k])
            big_i.index_add_(0, items, g_i * w[k])
        return (big_u, big_i, *nones)


def _rows_of_product(a: Adjacency, sliced: RowSlice | None, h: Tensor, rows: Tensor) -> Tensor:
    """Rows ``rows`` of ``a.matrix @ h``: from the slice when there is one."""
    if sliced is None:
        return _mm(a.matrix, h).index_select(0, rows)
    return _mm(sliced.matrix, h).index_select(0, sliced.inverse)


def _product_t_of_rows(
    a: Adjacency, sliced: RowSlice | None, g: Tensor, rows: Tensor, n: int
) -> Tensor:
    r""":math:`\mathbf{A}^{\top}\mathbf{S}^{\top}\mathbf{g}` (``S`` the selection ``rows``
    of the ``n`` rows of ``a``): through the slice's transpose when there is one."""
    if sliced is None:
        return _mm(a.matrix_t, g.new_zeros(n, g.size(1)).index_add_(0, rows, g))
    compact = g.new_zeros(sliced.matrix.size(0), g.size(1)).index_add_(0, sliced.inverse, g)
    return _mm(sliced.transpose(), compact)


def layer_sum_rows(
    x_u: Tensor,
    x_i: Tensor,
    users: Tensor,
    items: Tensor,
    weights: Tensor,
    a_ui: Adjacency,
    a_iu: Adjacency,
    slice_last_hop: bool | None = None,
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
        slice_last_hop: Form the last hop and the backward's first products from the
            requested rows' slices of the matrices (:func:`~pyg_cf.nn.spmm.row_slice`;
            each side falls back to the whole product past
            :data:`~pyg_cf.nn.spmm.ROWS_MAX_SHARE`). ``None``: on the CPU only (the slices'
            sizes are read on the host, which a CUDA graph cannot capture).

    Returns:
        ``([B_u, d], [B_i, d])``.
    """
    if x_u.dtype != a_ui.matrix.dtype or x_i.dtype != a_iu.matrix.dtype:
        raise TypeError(
            f"layer_sum_rows: adjacency is {a_ui.matrix.dtype} but features are {x_u.dtype}"
        )
    if slice_last_hop is None:
        slice_last_hop = x_u.device.type == "cpu"
    last_u = last_i = None
    if slice_last_hop and weights.numel() > 1:
        last_u, last_i = row_slice(a_ui, users), row_slice(a_iu, items)
    out: tuple[Tensor, Tensor] = _LayerSumRows.apply(
        x_u, x_i, users, items, weights, a_ui, a_iu, last_u, last_i
    )
    return out
