import gc
import weakref

import pytest
import torch
from torch_geometric import EdgeIndex

from pyg_cf.nn.spmm import spmm_edge_index

EI = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 0, 1]])  # sources -> targets, sorted by source


def _dense(w):
    a = torch.zeros(2, 3)
    a[EI[1], EI[0]] = w
    return a


@pytest.mark.parametrize("order", ["row", "col"])
def test_matches_the_dense_product_and_its_gradient(order):
    ei = EI if order == "row" else EI[:, torch.argsort(EI[1], stable=True)]
    w = torch.rand(ei.size(1))
    x = torch.randn(3, 4, requires_grad=True)
    out = spmm_edge_index(EdgeIndex(ei, sparse_size=(3, 2), sort_order=order), w, x)
    a = torch.zeros(2, 3)
    a[ei[1], ei[0]] = w
    torch.testing.assert_close(out, a @ x)
    (g,) = torch.autograd.grad(out.pow(2).sum(), x)
    torch.testing.assert_close(g, a.t() @ (2 * a @ x))


def test_a_dropped_subgraph_is_freed_without_the_cyclic_collector():
    # the matrices cached on the index used to point back at it (a reference cycle), so
    # each neighbor-sampled subgraph lived until the cyclic garbage collector ran
    enabled = gc.isenabled()
    gc.disable()
    try:
        ei = EdgeIndex(EI, sparse_size=(3, 2), sort_order="row")
        x = torch.randn(3, 4, requires_grad=True)
        out = spmm_edge_index(ei, torch.rand(5), x)
        ref = weakref.ref(ei)
        del ei
        out.sum().backward()  # the autograd graph kept the index for the transpose
        assert x.grad is not None and ref() is not None
        del out
        assert ref() is None
    finally:
        if enabled:
            gc.enable()


def test_row_pointer_of_a_sorted_index_with_empty_rows():
    from pyg_cf.nn.spmm import _ptr

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.int64, torch.int32):
        for size, n in ((1, 0), (7, 0), (7, 30), (50, 20)):
            rows = torch.randint(size, (n,), generator=g).sort().values.to(dtype)
            want = torch.zeros(size + 1, dtype=torch.long)
            want[1:] = torch.bincount(rows.long(), minlength=size).cumsum(0)
            assert torch.equal(_ptr(rows, size), want)


def test_a_used_edge_index_still_deep_copies_and_an_edit_rebuilds():
    """The matrices were an attribute of the index (copy.deepcopy then failed on the CSR
    tensors) keyed on the weights only (an in-place edit of the index was not seen)."""
    import copy

    ei = EdgeIndex(torch.tensor([[0, 1, 2, 2], [0, 1, 0, 1]]), sparse_size=(3, 2))
    ei, _ = ei.sort_by("col")
    w = torch.ones(4)
    x = torch.randn(3, 2)
    before = spmm_edge_index(ei, w, x)
    copy.deepcopy(ei)  # raised NotImplementedError
    ei.as_subclass(torch.Tensor)[0].copy_(torch.tensor([1, 2, 0, 1]))  # same object
    after = spmm_edge_index(ei, w, x)
    dense = torch.zeros(2, 3)
    dense[ei.as_subclass(torch.Tensor)[1], ei.as_subclass(torch.Tensor)[0]] = 1.0
    assert torch.allclose(after, dense @ x) and not torch.allclose(before, after)


def _adjacency(n_rows: int = 7, n_cols: int = 5, dtype: torch.dtype = torch.float64):
    from pyg_cf.nn.spmm import CachedAdjacency

    g = torch.Generator().manual_seed(3)
    dense = torch.rand(n_rows, n_cols, generator=g, dtype=dtype)
    dense[dense < 0.5] = 0
    dense[4] = 0  # an empty row
    row, col = dense.nonzero().t()
    return CachedAdjacency(row, col, dense[row, col], n_rows, n_cols), dense


@pytest.mark.parametrize("share", [1.0, 0.0])  # sliced; the whole product gathered
@pytest.mark.parametrize("rows", [[3, 0, 3, 6, 4], [4], [], list(range(7))])
def test_spmm_rows_is_the_selected_rows_of_the_product(rows, share, monkeypatch):
    import pyg_cf.nn.spmm as spmm

    calls: list[int] = []
    whole = spmm.spmm_cached
    monkeypatch.setattr(spmm, "spmm_cached", lambda *a: calls.append(1) or whole(*a))
    monkeypatch.setattr(spmm, "ROWS_MAX_SHARE", share)
    spmm_rows = spmm.spmm_rows
    adj, dense = _adjacency()
    idx = torch.tensor(rows, dtype=torch.long)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    out = spmm_rows(adj, idx, x)
    # rows holding no non-zero (row 4, or none) are sliced whatever the share
    assert calls == ([] if share == 1.0 or rows in ([4], []) else [1])
    torch.testing.assert_close(out, (dense @ x)[idx])
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, g)
    (want,) = torch.autograd.grad((dense @ x)[idx], x, g)
    torch.testing.assert_close(gx, want)
    if idx.numel():
        assert torch.autograd.gradcheck(lambda t: spmm_rows(adj, idx, t), (x,))


def test_spmm_rows_in_float32_and_a_dtype_mismatch_is_named():
    from pyg_cf.nn.spmm import spmm_rows

    adj, dense = _adjacency(dtype=torch.float32)
    x = torch.randn(5, 2)
    idx = torch.tensor([1, 6, 1])
    torch.testing.assert_close(spmm_rows(adj, idx, x), (dense @ x)[idx])
    with pytest.raises(TypeError, match=r"float32 but features are torch\.float64"):
        spmm_rows(adj, idx, x.double())


def test_row_slice_counts_each_distinct_row_once():
    """The share compares the distinct rows' non-zeros: a popular row repeated in a batch is
    sliced (and multiplied) once."""
    from pyg_cf.nn.spmm import row_slice

    adj, dense = _adjacency()
    nnz = int((dense != 0).sum())
    row3 = int((dense[3] != 0).sum())
    rows = torch.tensor([3] * 50 + [4])  # 50 copies: far above the share if counted each time
    sliced = row_slice(adj, rows, max_share=row3 / nnz)
    assert sliced is not None
    assert sliced.matrix.shape == (2, 5)  # rows 3 and 4 (empty), ascending
    torch.testing.assert_close(sliced.matrix.to_dense(), dense[[3, 4]])
    assert sliced.inverse.tolist() == [0] * 50 + [1]
    torch.testing.assert_close(sliced.transpose().to_dense(), dense[[3, 4]].t())
    assert row_slice(adj, rows, max_share=(row3 - 1) / nnz) is None


def test_row_slice_transpose_keeps_each_columns_rows_in_order():
    from pyg_cf.nn.spmm import row_slice

    adj, dense = _adjacency()
    sliced = row_slice(adj, torch.tensor([6, 0, 2, 0]), max_share=1.0)
    assert sliced is not None
    t = sliced.transpose()
    torch.testing.assert_close(t.to_dense(), dense[[0, 2, 6]].t())
    crow, col = t.crow_indices(), t.col_indices()
    for j in range(t.size(0)):  # ascending slice rows within each column, as the cached one
        seg = col[crow[j] : crow[j + 1]]
        assert torch.equal(seg, seg.sort().values)


def _edge_index_adjacency():
    """A column-sorted ``EdgeIndex`` (3 sources, 2 targets) with float64 weights, one of
    them 0 (left out of the CPU matrices), and its dense ``[2, 3]`` matrix."""
    ei = EdgeIndex(EI, sparse_size=(3, 2))
    ei, perm = ei.sort_by("col")
    w = torch.tensor([0.5, 0.0, 2.0, 1.5, 0.25], dtype=torch.float64)[perm]
    dense = torch.zeros(2, 3, dtype=torch.float64)
    data = ei.as_subclass(torch.Tensor)
    dense[data[1], data[0]] = w
    return ei, w, dense


@pytest.mark.parametrize("path", ["cached", "rows", "edge_index"])
def test_the_products_are_differentiable_twice(path):
    """Their backward wrote through ``addmm(..., out=...)``, which autograd cannot record:
    ``create_graph=True`` (gradient penalties, Hessian-vector products) raised."""
    from pyg_cf.nn.spmm import spmm_cached, spmm_rows

    if path == "edge_index":
        ei, w, dense = _edge_index_adjacency()
        fn, idx = (lambda t: spmm_edge_index(ei, w, t)), slice(None)
    else:
        adj, dense = _adjacency()
        rows = torch.tensor([3, 0, 3, 6])
        fn = (
            (lambda t: spmm_cached(adj, t))
            if path == "cached"
            else (lambda t: spmm_rows(adj, rows, t, max_share=1.0))
        )
        idx = slice(None) if path == "cached" else rows
    x = torch.randn(dense.size(1), 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(fn, (x,))
    # a gradient penalty: the same values as through the dense product
    (g,) = torch.autograd.grad(fn(x).pow(3).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), x)
    (g_ref,) = torch.autograd.grad((dense @ x)[idx].pow(3).sum(), x, create_graph=True)
    (gg_ref,) = torch.autograd.grad(g_ref.pow(2).sum(), x)
    torch.testing.assert_close(g, g_ref)
    torch.testing.assert_close(gg, gg_ref)


def test_a_first_order_backward_still_takes_the_direct_product(monkeypatch):
    """Without ``create_graph`` the backward is one product, not another autograd node."""
    import pyg_cf.nn.spmm as spmm

    adj, dense = _adjacency()
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    out = spmm.spmm_cached(adj, x)
    applied: list[int] = []
    apply = spmm._SpMM.apply
    monkeypatch.setattr(spmm._SpMM, "apply", lambda *a: applied.append(1) or apply(*a))
    (g,) = torch.autograd.grad(out.sum(), x)
    assert applied == []
    torch.testing.assert_close(g, dense.t() @ torch.ones(7, 2, dtype=torch.float64))
