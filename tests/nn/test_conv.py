import pytest
import torch
from torch_geometric import EdgeIndex

from pyg_cf.errors import ConfigError
from pyg_cf.nn import BipartiteNormConv, bipartite_norm
from pyg_cf.nn.conv import SparseTensor

EI = torch.tensor([[0, 0, 1, 1, 1, 2, 3, 3], [0, 1, 1, 2, 3, 0, 2, 3]])  # users -> items
NU, NI = 5, 6  # user 4 and items 4, 5 have degree 0


def dense_reference(x_src, ei, n_src, n_dst, a0, a1):
    adj = torch.zeros(n_dst, n_src, dtype=torch.float64)
    adj[ei[1], ei[0]] = 1.0
    d_dst, d_src = adj.sum(1), adj.sum(0)
    out = torch.zeros(n_dst, x_src.size(1), dtype=torch.float64)
    for t in range(n_dst):
        for s in range(n_src):
            if adj[t, s]:
                out[t] += x_src[s].double() / (d_dst[t] ** a0 * d_src[s] ** a1)
    return out.float()


@pytest.mark.parametrize(
    "a0,a1", [(0.5, 0.5), (1.0, 0.0), (0.0, 0.0), (0.5, 0.0), (0.0, 1.0), (1.0, 1.0)]
)
@pytest.mark.parametrize("kind", ["edge_index", "cached", "csr", "edge_index_cls", "sparse"])
def test_matches_dense_reference(a0, a1, kind):
    x_u, x_i = torch.randn(NU, 8), torch.randn(NI, 8)
    ref = dense_reference(x_u, EI, NU, NI, a0, a1)
    conv = BipartiteNormConv(a0, a1, cached=(kind == "cached"))
    if kind in ("edge_index", "cached"):
        adj = EI
    elif kind == "edge_index_cls":
        adj = EdgeIndex(EI, sparse_size=(NU, NI))
    elif kind == "csr":
        adj = torch.sparse_coo_tensor(EI.flip(0), torch.ones(EI.size(1)), (NI, NU)).to_sparse_csr()
    else:
        if SparseTensor is None or not hasattr(SparseTensor, "from_edge_index"):
            pytest.skip("torch-sparse not installed")
        try:
            adj = SparseTensor(row=EI[1], col=EI[0], sparse_sizes=(NI, NU))
        except ImportError:
            pytest.skip("torch-sparse not installed")
    out = conv((x_u, x_i), adj)
    assert out.shape == (NI, 8)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.isfinite(out).all()
    assert torch.equal(out[4:], torch.zeros(2, 8))  # degree-0 targets receive nothing


def test_gradients_of_cached_path_match_edge_index_path():
    x = torch.randn(NU, 4, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    a = BipartiteNormConv(0.5, 1.0, cached=True)((x, torch.zeros(NI, 4)), EI)
    b = BipartiteNormConv(0.5, 1.0)((x2, torch.zeros(NI, 4)), EI)
    w = torch.randn(NI, 4)
    (a * w).sum().backward()
    (b * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)


def test_homogeneous_graph_equals_bipartite_blocks():
    # users 0..4, items 5..10 in one node set, edges in both directions.
    ei_h = torch.cat([torch.stack([EI[0], EI[1] + NU]), torch.stack([EI[1] + NU, EI[0]])], 1)
    x = torch.randn(NU + NI, 3)
    out = BipartiteNormConv(0.5, 0.5)(x, ei_h)
    ref_items = dense_reference(x[:NU], EI, NU, NI, 0.5, 0.5)
    ref_users = dense_reference(x[NU:], EI.flip(0), NI, NU, 0.5, 0.5)
    assert torch.allclose(out[NU:], ref_items, atol=1e-5)
    assert torch.allclose(out[:NU], ref_users, atol=1e-5)


def test_zero_degree_gives_zero_weight_not_nan():
    w = bipartite_norm(EI, (NU, NI), 0.5, 0.5, deg_src=torch.zeros(NU, dtype=torch.long))
    assert torch.isfinite(w).all() and (w == 0).all()


def test_cache_is_rebuilt_for_another_graph():
    conv = BipartiteNormConv(0.5, 0.5, cached=True)
    x_u, x_i = torch.randn(NU, 2), torch.randn(NI, 2)
    first = conv((x_u, x_i), EI)
    other = EI[:, :3].clone()
    second = conv((x_u, x_i), other)
    assert torch.allclose(second, dense_reference(x_u, other, NU, NI, 0.5, 0.5), atol=1e-6)
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("bad", [float("nan"), 5.0, -3.0])
def test_alpha_out_of_range(bad):
    with pytest.raises(ConfigError, match="alpha0"):
        BipartiteNormConv(alpha0=bad)


def test_bad_edge_index_is_reported():
    conv = BipartiteNormConv()
    with pytest.raises(ValueError, match="outside"):
        conv((torch.randn(2, 3), torch.randn(2, 3)), torch.tensor([[0, 5], [0, 1]]))
    with pytest.raises(ValueError, match="shape"):
        conv((torch.randn(2, 3), torch.randn(2, 3)), torch.tensor([0, 1]))


def test_repr_names_exponents():
    assert repr(BipartiteNormConv(1.0, 0.0)) == "BipartiteNormConv(alpha0=1.0, alpha1=0.0)"


def test_int32_edges_beyond_2_31_cells_keep_their_rows():
    # 60000 x 60000 cells: an int32 sort key row * num_cols + col would overflow
    n = 60_000
    ei = torch.tensor([[1, n - 1], [n - 1, 1]], dtype=torch.int32)
    x = torch.zeros(n, 1)
    x[n - 1], x[1] = 1.0, 2.0
    ref = BipartiteNormConv(0.0, 0.0)(x, ei.long())
    out = BipartiteNormConv(0.0, 0.0, cached=True)(x, ei)
    assert out[n - 1].item() == 2.0 and out[1].item() == 1.0
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cached_path_runs_in_half_precision_on_cpu(dtype):
    x_u = torch.randn(NU, 8)
    ref = dense_reference(x_u, EI, NU, NI, 0.5, 0.5)
    xs = x_u.to(dtype).requires_grad_()
    out = BipartiteNormConv(cached=True)((xs, None), EI, size=(NU, NI))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    out.float().sum().backward()
    assert xs.grad is not None and xs.grad.dtype == dtype


def test_edge_weight_with_unsorted_edge_index_and_float64_weights():
    ei = EI[:, torch.randperm(EI.size(1))]
    w = torch.rand(ei.size(1), dtype=torch.float64)
    x_u, x_i = torch.randn(NU, 4), torch.randn(NI, 4)
    ref = BipartiteNormConv()((x_u, x_i), ei, w.float())
    out = BipartiteNormConv()((x_u, x_i), EdgeIndex(ei, sparse_size=(NU, NI)), w)
    torch.testing.assert_close(out, ref)
    # the output keeps the features' dtype on the edge_index path too
    assert BipartiteNormConv()((x_u, x_i), ei, w).dtype == torch.float32


def test_half_precision_weights_of_degrees_beyond_float16_range():
    n = 70_000  # one item with more interactions than float16 can count
    ei = torch.stack([torch.arange(n), torch.zeros(n, dtype=torch.long)])
    w = bipartite_norm(ei, (n, 1), 0.5, 0.5, dtype=torch.float16)
    assert w.dtype == torch.float16
    torch.testing.assert_close(w.float(), torch.full((n,), n**-0.5))


EI_BY_ITEM = EI[:, torch.argsort(EI[1], stable=True)]


def _sorted_index():
    return EdgeIndex(EI_BY_ITEM, sparse_size=(NU, NI), sort_order="col")


@pytest.mark.parametrize("order", ["row", "col"])
def test_sorted_edge_index_weights_changed_in_place_are_not_read_stale(order):
    # the CSR (and its transpose) built for a weight tensor is cached on the index; an
    # in-place change of the same tensor used to leave the old weights in use
    plain = EI if order == "row" else EI_BY_ITEM
    ei, w = EdgeIndex(plain, sparse_size=(NU, NI), sort_order=order), torch.rand(EI.size(1))
    x_u, x_i = torch.randn(NU, 4, requires_grad=True), torch.randn(NI, 4)
    conv = BipartiteNormConv()
    first = conv((x_u, x_i), ei, w)
    first.sum().backward()
    grad_first, x_u.grad = x_u.grad.clone(), None
    w.mul_(10.0)
    out = conv((x_u, x_i), ei, w)
    out.sum().backward()
    torch.testing.assert_close(out, 10.0 * first)
    torch.testing.assert_close(x_u.grad, 10.0 * grad_first)
    torch.testing.assert_close(out, conv((x_u, x_i), plain, w))


def test_learnable_edge_weights_get_gradients_on_a_sorted_edge_index():
    ei = _sorted_index()
    w = torch.rand(EI.size(1), requires_grad=True)
    w_ref = w.detach().clone().requires_grad_()
    x_u, x_i = torch.randn(NU, 4), torch.randn(NI, 4)
    BipartiteNormConv()((x_u, x_i), ei, w).pow(2).sum().backward()
    BipartiteNormConv()((x_u, x_i), EI_BY_ITEM, w_ref).pow(2).sum().backward()
    assert w.grad is not None
    torch.testing.assert_close(w.grad, w_ref.grad)


def test_targets_without_features_take_their_count_from_the_index_or_size():
    x_u = torch.randn(NU, 4)
    ref = dense_reference(x_u, EI, NU, NI, 0.5, 0.5)
    conv = BipartiteNormConv()
    # NI = 6 targets; the layer used to assume as many targets as sources (5)
    torch.testing.assert_close(conv((x_u, None), EdgeIndex(EI, sparse_size=(NU, NI))), ref)
    torch.testing.assert_close(conv((x_u, None), EI, size=(NU, NI)), ref)
    adj_t = torch.sparse_coo_tensor(EI.flip(0), torch.ones(EI.size(1)), (NI, NU)).to_sparse_csr()
    torch.testing.assert_close(conv((x_u, None), adj_t), ref)
    with pytest.raises(ConfigError, match=r"x = \(x_src, None\) .* pass size="):
        conv((x_u, None), EI)


class _CountBoundReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the whole-tensor ``min`` that the edge-index bound check reads."""

    def __init__(self):
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.min.default:
            self.reads += 1
        return func(*args, **(kwargs or {}))


def test_an_index_is_read_once_and_again_after_an_in_place_change():
    """The K layers of a forward pass share one bound check (each is a device read); an
    in-place change of the index voids it, so a now-invalid index is still refused."""
    from pyg_cf.nn.conv import check_edge_index

    ei = EI.clone()
    with _CountBoundReads() as count:
        for _ in range(3):
            check_edge_index(ei, (NU, NI))
    assert count.reads == 1
    check_edge_index(ei, (NU, NI - 1))  # another size is another check (items < 5: ok)
    with pytest.raises(ConfigError, match="outside"):
        check_edge_index(ei, (NU, 3))  # item 3 is out of a 3-item graph
    ei[1, 0] = NI  # in place: the earlier checks no longer hold
    with pytest.raises(ConfigError, match="outside"):
        check_edge_index(ei, (NU, NI))
    conv = BipartiteNormConv()
    x = torch.randn(NU, 4)
    with pytest.raises(ConfigError, match="outside"):
        conv((x, None), ei, size=(NU, NI))


def test_a_check_record_stays_with_its_tensor():
    """A saved-and-loaded (or copied) index is checked anew: the record is not stored on
    the tensor, so an index changed after its check cannot carry a stale "checked" into a
    checkpoint. Records leave with their tensors."""
    import copy
    import io

    from pyg_cf.nn import conv

    ei = EI.clone()
    conv.check_edge_index(ei, (NU, NI))
    assert conv.is_validated(ei, (NU, NI))
    ei[1, 0] = NI  # invalid now, then saved
    buf = io.BytesIO()
    torch.save({"ei": ei}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["ei"]
    for other in (loaded, copy.deepcopy(ei)):
        assert not conv.is_validated(other, (NU, NI))
        with pytest.raises(ConfigError, match="outside"):
            conv.check_edge_index(other, (NU, NI))
    before = len(conv._VALIDATED)
    tmp = EI.clone()
    conv.check_edge_index(tmp, (NU, NI))
    assert len(conv._VALIDATED) == before + 1
    del tmp
    assert len(conv._VALIDATED) == before


def test_a_cached_layer_checks_a_known_index_against_a_new_size():
    """The cache matched the index object only: the same index under a smaller size was
    multiplied out of bounds (garbage values) instead of refused."""
    ei = torch.tensor([[0, 1, 2, 2], [0, 1, 2, 0]])
    conv = BipartiteNormConv(cached=True)
    conv(torch.randn(3, 2), ei)
    with pytest.raises(ConfigError, match="outside"):
        conv((torch.randn(2, 2), torch.randn(2, 2)), ei)


def test_a_cached_build_checks_ids_even_after_a_write_the_version_misses():
    """A write through .numpy() bypasses the version counter (and so the validation
    record): the cached CSR build, whose matrices skip torch's checks, must still refuse the
    id (it segfaulted)."""
    ei = torch.tensor([[0, 1, 2], [0, 1, 2]])
    x = torch.randn(3, 2)
    BipartiteNormConv(cached=True)(x, ei)
    ei.numpy()[0, 0] = 10**7
    with pytest.raises(ConfigError, match="outside"):
        BipartiteNormConv(cached=True)(x, ei)


def test_an_index_edited_in_place_is_not_served_from_the_cache():
    x = torch.randn(NU, 3, dtype=torch.float64)
    ei = EI.clone()
    conv = BipartiteNormConv(cached=True)
    first = conv((x, None), ei, size=(NU, NI))
    ei[1].copy_(torch.tensor([1, 0, 2, 1, 3, 3, 0, 2]))  # another graph, same object
    second = conv((x, None), ei, size=(NU, NI))
    fresh = BipartiteNormConv()((x, None), ei.clone(), size=(NU, NI))
    assert not torch.allclose(first, second)
    assert torch.allclose(second, fresh)


def _sparse_tensor(row, col, value=None, sparse_sizes=None):
    if SparseTensor is None or not hasattr(SparseTensor, "from_edge_index"):
        pytest.skip("torch-sparse not installed")
    try:
        return SparseTensor(row=row, col=col, value=value, sparse_sizes=sparse_sizes)
    except ImportError:
        pytest.skip("torch-sparse not installed")


def _adj_t(kind, ei, n_dst, n_src, value=None):
    """``ei`` (row 0 sources) as an ``[n_dst, n_src]`` adj_t of ``kind``, entries as
    given (repeats kept)."""
    value = torch.ones(ei.size(1)) if value is None else value
    if kind == "SparseTensor":
        return _sparse_tensor(ei[1], ei[0], value, (n_dst, n_src))
    coo = torch.sparse_coo_tensor(ei.flip(0), value, (n_dst, n_src))
    if kind == "coo":
        return coo
    # CSR / CSC straight from sorted arrays: a conversion would coalesce the repeats
    perm = (
        torch.argsort(ei[1] * n_src + ei[0])
        if kind == "csr"
        else torch.argsort(ei[0] * n_dst + ei[1])
    )
    major = ei[1] if kind == "csr" else ei[0]
    ptr = torch.zeros((n_dst if kind == "csr" else n_src) + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(major, minlength=ptr.numel() - 1), 0)
    minor = (ei[0] if kind == "csr" else ei[1])[perm]
    ctor = torch.sparse_csr_tensor if kind == "csr" else torch.sparse_csc_tensor
    return ctor(ptr, minor, value[perm], (n_dst, n_src))


ADJ_KINDS = ["coo", "csr", "csc", "SparseTensor"]


@pytest.mark.parametrize("kind", ADJ_KINDS)
@pytest.mark.parametrize("cached", [False, True])
def test_adj_t_whose_shape_disagrees_with_the_features_is_refused(kind, cached):
    """A SparseTensor with more rows than x_dst gave an output of its own row count (more
    columns than x_src crashed inside PyG); torch sparse was checked on one path only."""
    conv = BipartiteNormConv(cached=cached)
    x_u, x_i = torch.randn(NU, 2), torch.randn(NI, 2)
    for n_dst, n_src in ((NI + 2, NU), (NI, NU + 1)):
        adj = _adj_t(kind, EI, n_dst, n_src)
        msg = rf"adj_t of shape \({n_dst}, {n_src}\) does not match .* \({NI}, {NU}\)"
        with pytest.raises(ConfigError, match=msg):
            conv((x_u, x_i), adj)
        with pytest.raises(ConfigError, match=msg):
            conv((x_u, x_i), adj, size=(NU, NI))
        with pytest.raises(ConfigError, match=msg):
            conv((x_u, None), adj, size=(NU, NI))
    ref = dense_reference(x_u, EI, NU, NI, 0.5, 0.5)
    torch.testing.assert_close(conv((x_u, x_i), _adj_t(kind, EI, NI, NU)), ref)


@pytest.mark.parametrize("kind", ADJ_KINDS)
@pytest.mark.parametrize("cached", [False, True])
def test_repeated_adj_t_entries_count_as_repeated_edges(kind, cached):
    """torch sparse input was coalesced (a repeated edge merged into one entry, whose
    value was then dropped), so it counted once where every other input type counts it
    twice."""
    ei = torch.cat([EI, EI[:, [0, 3, 3]]], 1)  # (0 -> 0) twice, (1 -> 2) three times
    x_u = torch.randn(NU, 3, dtype=torch.float64)
    ref = BipartiteNormConv()((x_u, None), ei, size=(NU, NI))
    adj = torch.zeros(NI, NU, dtype=torch.float64).index_put_(
        (ei[1], ei[0]), torch.ones(ei.size(1), dtype=torch.float64), accumulate=True
    )
    d_t, d_s = adj.sum(1, keepdim=True), adj.sum(0, keepdim=True)
    dense = torch.where(adj > 0, adj / (d_t.clamp(min=1).sqrt() * d_s.clamp(min=1).sqrt()), 0.0)
    torch.testing.assert_close(ref, dense @ x_u)
    out = BipartiteNormConv(cached=cached)((x_u, None), _adj_t(kind, ei, NI, NU))
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("kind", ADJ_KINDS)
def test_adj_t_values_other_than_one_are_refused_once_per_tensor(kind):
    """The layer computes its weights from the degrees: an adj_t value of 5 gave the same
    output as 1, without a word. The check reads the values once per tensor (and again
    after an in-place change)."""

    class CountValueReads(torch.utils._python_dispatch.TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.reads += func is torch.ops.aten.all.default
            return func(*args, **(kwargs or {}))

    x_u = torch.randn(NU, 2)
    value = torch.ones(EI.size(1))
    value[2] = 5.0
    for cached in (False, True):
        with pytest.raises(ConfigError, match=r"adj_t stores values other than 1 \(e.g. 5.0\)"):
            BipartiteNormConv(cached=cached)((x_u, None), _adj_t(kind, EI, NI, NU, value))
    adj = _adj_t(kind, EI, NI, NU)
    conv = BipartiteNormConv()
    with CountValueReads() as count:
        for _ in range(3):
            conv((x_u, None), adj)
    assert count.reads == 1
    if kind == "SparseTensor":
        values = adj.storage.value()
    else:
        values = adj._values() if kind == "coo" else adj.values()
    values[1] = 2.0  # in place: checked again
    with pytest.raises(ConfigError, match="values other than 1"):
        conv((x_u, None), adj)


def test_a_coalesced_adj_t_with_merged_repeats_is_refused():
    ei = torch.cat([EI, EI[:, :1]], 1)
    coo = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)), (NI, NU))
    x_u = torch.randn(NU, 2)
    ref = BipartiteNormConv()((x_u, None), ei, size=(NU, NI))
    torch.testing.assert_close(BipartiteNormConv()((x_u, None), coo), ref)
    with pytest.raises(ConfigError, match=r"values other than 1 \(e.g. 2.0\).* coalesced"):
        BipartiteNormConv()((x_u, None), coo.coalesce())


def test_an_edge_index_whose_sparse_size_disagrees_with_the_features_is_named():
    conv = BipartiteNormConv()
    ei = EdgeIndex(torch.tensor([[0, 1], [1, 0]]), sparse_size=(5, 2))
    x_src, x_dst = torch.randn(3, 4), torch.randn(2, 4)
    with pytest.raises(ConfigError, match=r"sparse_size \(5, 2\) but the features give \(3, 2\)"):
        conv((x_src, x_dst), ei)
    # an unknown size is no disagreement
    out = conv((x_src, x_dst), EdgeIndex(torch.tensor([[0, 1], [1, 0]])))
    assert out.shape == (2, 4)


@pytest.mark.parametrize("aggr", ["mean", "max", "min", ["add", "mean"]])
def test_an_aggregation_other_than_the_sum_is_refused(aggr):
    # only message passing honoured it: the cached and adj_t products always summed
    with pytest.raises(ConfigError, match="aggr must be 'add'"):
        BipartiteNormConv(aggr=aggr)


def test_the_sum_aggregation_may_be_named_either_way():
    x = torch.randn(NU, 3)
    ref = BipartiteNormConv()((x, None), EI, size=(NU, NI))
    for aggr in ("add", "sum"):
        for cached in (False, True):
            conv = BipartiteNormConv(aggr=aggr, cached=cached)
            assert conv.aggr == "add"
            torch.testing.assert_close(conv((x, None), EI, size=(NU, NI)), ref)


def test_the_reverse_flow_is_refused_with_the_way_round_it():
    # the cached and CSR paths ignored it; the plain path aggregated into row 0 while the
    # normalization still took row 0 as the sources
    with pytest.raises(ConfigError, match=r"flow must be 'source_to_target'.*flip"):
        BipartiteNormConv(flow="target_to_source")
    conv = BipartiteNormConv(flow="source_to_target")
    x = torch.randn(NI, 3)
    ref = dense_reference(x, EI.flip(0), NI, NU, 0.5, 0.5)
    torch.testing.assert_close(conv((x, None), EI.flip(0), size=(NI, NU)), ref)
