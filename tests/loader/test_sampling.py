import itertools
import math

import pytest
import torch

from pyg_cf.loader import sample_neighbors, sample_offsets


def test_offsets_are_distinct_and_in_range():
    g = torch.Generator().manual_seed(0)
    deg = torch.tensor([3, 4, 10, 50, 1000])
    out = sample_offsets(deg, 3, g)
    assert out.shape == (5, 3)
    assert (out >= 0).all() and (out < deg.unsqueeze(1)).all()
    assert all(len(set(r)) == 3 for r in out.tolist())
    # k == deg takes every offset
    full = sample_offsets(torch.tensor([4, 4]), 4, g)
    assert all(sorted(r) == [0, 1, 2, 3] for r in full.tolist())


def test_offsets_are_uniform_over_subsets():
    g = torch.Generator().manual_seed(1)
    n, d, k = 30000, 5, 2
    out = sample_offsets(torch.full((n,), d), k, g).sort(1).values
    counts = {c: 0 for c in itertools.combinations(range(d), k)}
    for a, b in out.tolist():
        counts[(a, b)] += 1
    expected = n / math.comb(d, k)
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 30.0  # 9 degrees of freedom: P(chi2 > 30) < 0.001


def test_sample_neighbors_fanouts():
    # rows of degree 0, 2, 5
    rowptr = torch.tensor([0, 0, 2, 7])
    nodes = torch.tensor([0, 1, 2, 2])
    g = torch.Generator().manual_seed(0)
    row, pos = sample_neighbors(rowptr, nodes, -1, g)
    assert row.tolist() == [1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]
    assert pos.tolist() == [0, 1, 2, 3, 4, 5, 6, 2, 3, 4, 5, 6]
    row, pos = sample_neighbors(rowptr, nodes, 3, g)
    assert torch.bincount(row, minlength=4).tolist() == [0, 2, 3, 3]
    for r in (2, 3):
        p = pos[row == r]
        assert p.unique().numel() == 3 and ((p >= 2) & (p < 7)).all()
    row, pos = sample_neighbors(rowptr, nodes, 0, g)
    assert row.numel() == 0 and pos.numel() == 0


def test_sampling_is_seeded():
    rowptr = torch.arange(0, 101, 10)
    nodes = torch.arange(10)
    a = sample_neighbors(rowptr, nodes, 4, torch.Generator().manual_seed(3))
    b = sample_neighbors(rowptr, nodes, 4, torch.Generator().manual_seed(3))
    c = sample_neighbors(rowptr, nodes, 4, torch.Generator().manual_seed(4))
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_sampling_on_cuda():
    rowptr = torch.arange(0, 101, 10, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    row, pos = sample_neighbors(rowptr, torch.arange(10, device="cuda"), 4, g)
    assert pos.device.type == "cuda" and torch.bincount(row).tolist() == [4] * 10
