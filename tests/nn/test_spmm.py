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
