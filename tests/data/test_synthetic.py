import numpy as np
import pytest
import torch

from pyg_cf.data import REV_EDGE, USER_ITEM, data_fingerprint, degrees, held_out_edges
from pyg_cf.data.synthetic import pareto_degrees, pareto_sample, power_law_bipartite
from pyg_cf.diagnostics.theory import neighbor_degrees, pareto_shape_mle
from pyg_cf.errors import ConfigError


def test_pareto_sample_law():
    gen = torch.Generator().manual_seed(0)
    x = pareto_sample(200_000, 2.0, 3.0, gen)
    assert x.dtype == torch.float64 and float(x.min()) >= 3.0
    # P[X >= 6] = (3/6)^2 = 0.25
    assert float((x >= 6.0).double().mean()) == pytest.approx(0.25, abs=0.005)
    with pytest.raises(ConfigError, match="alpha"):
        pareto_sample(3, 0.0)
    with pytest.raises(ConfigError, match="x_min"):
        pareto_sample(3, 1.0, -1.0)


def test_pareto_degrees_law_and_cap():
    gen = torch.Generator().manual_seed(1)
    d = pareto_degrees(100_000, 1.5, min_degree=4, max_degree=50, generator=gen)
    assert d.dtype == torch.long and int(d.min()) == 4 and int(d.max()) == 50
    # P[d >= k] = (4/k)^1.5 for integers 4 <= k <= 50
    for k in (8, 20):
        assert float((d >= k).double().mean()) == pytest.approx((4 / k) ** 1.5, abs=0.006)


def test_pareto_degrees_exact_total():
    gen = torch.Generator().manual_seed(2)
    d = pareto_degrees(1000, 1.2, min_degree=2, max_degree=300, total=12_345, generator=gen)
    assert int(d.sum()) == 12_345
    assert int(d.min()) >= 2 and int(d.max()) <= 300
    with pytest.raises(ConfigError, match="cannot be spread"):
        pareto_degrees(10, 1.2, min_degree=2, total=5)
    with pytest.raises(ConfigError, match="max_degree"):
        pareto_degrees(10, 1.2, min_degree=5, max_degree=2)


def test_power_law_bipartite_layout_and_determinism():
    data = power_law_bipartite(300, 200, min_user_degree=2, val_ratio=0.1, test_ratio=0.2)
    ei = data[USER_ITEM].edge_index
    assert ei.dtype == torch.int64 and ei.size(0) == 2
    assert data["user"].num_nodes == 300 and data["item"].num_nodes == 200
    assert torch.equal(data[REV_EDGE].edge_index, ei.flip(0))
    key = ei[0] * 200 + ei[1]
    assert bool((key[1:] > key[:-1]).all())  # sorted, no duplicate pair
    val, test = held_out_edges(data, "val"), held_out_edges(data, "test")
    total = ei.size(1) + val.size(1) + test.size(1)
    assert val.size(1) / total == pytest.approx(0.1, abs=0.03)
    assert test.size(1) / total == pytest.approx(0.2, abs=0.03)
    keys = [e[0] * 200 + e[1] for e in (ei, val, test)]
    assert torch.cat(keys).unique().numel() == total  # the three parts are disjoint
    again = power_law_bipartite(300, 200, min_user_degree=2, val_ratio=0.1, test_ratio=0.2)
    other = power_law_bipartite(300, 200, min_user_degree=2, val_ratio=0.1, test_ratio=0.2, seed=1)
    assert data_fingerprint(data) == data_fingerprint(again)
    assert data_fingerprint(data) != data_fingerprint(other)


def test_power_law_degrees():
    data = power_law_bipartite(
        20_000, 5_000, user_alpha=2.0, item_alpha=1.3, min_user_degree=5, seed=3
    )
    du, di = degrees(data)
    assert int(du.min()) >= 5
    # users: discrete Pareto(2.0) from 5 -> the discrete MLE recovers the shape
    assert pareto_shape_mle(du, 5, discrete=True) == pytest.approx(2.0, rel=0.03)
    # seen from an item's edges, user degrees are size-biased: shape 2.0 - 1
    assert pareto_shape_mle(neighbor_degrees(data), 5, discrete=True) == pytest.approx(1.0, rel=0.1)
    # items: degree proportional to a Pareto(1.3) weight in the tail
    x_min = float(np.quantile(di.numpy(), 0.5))
    assert pareto_shape_mle(di, x_min, discrete=True) == pytest.approx(1.3, rel=0.15)


def test_power_law_num_edges_exact():
    data = power_law_bipartite(2_000, 3_000, num_edges=40_000, item_alpha=2.0, seed=4)
    assert data[USER_ITEM].edge_index.size(1) == 40_000


def test_power_law_bipartite_bad_arguments():
    with pytest.raises(ConfigError, match="num_users"):
        power_law_bipartite(0, 10)
    with pytest.raises(ConfigError, match="test_ratio"):
        power_law_bipartite(10, 10, val_ratio=0.5, test_ratio=0.5)
    with pytest.raises(ConfigError, match="exceeds num_items"):
        power_law_bipartite(10, 10, max_user_degree=11)
    with pytest.raises(ConfigError, match="min_user_degree"):
        power_law_bipartite(10, 10, min_user_degree=8, max_user_degree=5)
