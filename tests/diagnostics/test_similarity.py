import numpy as np
import pytest
import torch

from pyg_cf.diagnostics import pair_cosine, similarity_histograms
from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.nn import GraphCF


def test_pair_cosine_hand_checked():
    u = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    i = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]])
    pairs = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 2]])
    got = pair_cosine(u, i, pairs, chunk=3)
    assert got.tolist() == pytest.approx([1.0, 0.0, 2**-0.5, -1.0])


def test_positive_pairs_aligned(tiny_data):
    # Everything on one axis: items 0-3 (all trained on) point like the users, item 4 (never
    # trained on) the other way, so every pair has cosine exactly 1 or -1.
    u = torch.tensor([[1.0, 0.0]] * 4)
    i = torch.tensor([[1.0, 0.0]] * 4 + [[-1.0, 0.0]])  # item 4 has no training pair
    view = similarity_histograms((u, i), tiny_data, bins=4, num_random=1000)
    assert view.positive.numel() == 8
    assert torch.allclose(view.positive, torch.ones(8))
    t = view.table
    width = t["bin_hi"] - t["bin_lo"]
    assert float((t["positive"] * width).sum()) == pytest.approx(1.0)
    assert float((t["random"] * width).sum()) == pytest.approx(1.0)
    assert t["positive"].iloc[-1] == pytest.approx(2.0)  # all mass in the last bin of width 0.5
    # random pairs hit item 4 (cosine -1) about 1/5 of the time
    assert float((view.random < 0).float().mean()) == pytest.approx(0.2, abs=0.05)
    s = view.summary()
    assert s["positive_mean"] == pytest.approx(1.0) and s["positive_std"] == 0.0


def test_subsampling_and_splits(tiny_data):
    model = GraphCF.from_data(tiny_data, "lightgcn", embedding_dim=4)
    view = similarity_histograms(model, tiny_data, num_pairs=5, seed=1)
    assert view.positive.numel() == 5 and view.random.numel() == 5
    assert similarity_histograms(model, tiny_data, split="test").positive.numel() == 4
    assert np.isfinite(view.table[["positive", "random"]].to_numpy()).all()
    with pytest.raises(ConfigError, match="split"):
        similarity_histograms(model, tiny_data, split="all")
    with pytest.raises(ConfigError, match="bins"):
        similarity_histograms(model, tiny_data, bins=0)
    # -5 used to keep all but 5 pairs silently; 0 blamed num_random
    for bad in (-5, 0, 2.5):
        with pytest.raises(ConfigError, match="num_pairs must be an integer >= 1"):
            similarity_histograms(model, tiny_data, num_pairs=bad)


def test_bad_num_random_is_a_config_error(tiny_data):
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    for bad in (2.5, True, 0, -3):
        with pytest.raises(ConfigError, match="num_random must be an integer >= 1 or None"):
            similarity_histograms((u, i), tiny_data, num_random=bad)
    assert similarity_histograms((u, i), tiny_data, num_random=3).random.numel() == 3


def test_val_split_reads_the_validation_pairs(tiny_data):
    # val pairs (0, 2) and (2, 3); the test split has 4 other pairs
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    i = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 1.0]])
    view = similarity_histograms((u, i), tiny_data, split="val")
    assert view.positive.tolist() == pytest.approx([0.0, 1.0])
    assert view.random.numel() == 2
    test = similarity_histograms((u, i), tiny_data, split="test")
    assert test.positive.numel() == 4


def test_nan_cosines_are_refused_not_left_out_of_the_histograms(tiny_data):
    # the densities still integrated to 1 without the NaN pairs while summary() gave NaN
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    u[0] = float("nan")  # user 0 has two training pairs
    with pytest.raises(PygCFError, match="NaN for 2 of 8 positive pairs"):
        similarity_histograms((u, i), tiny_data)
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    i[4] = float("inf")  # item 4 has no training pair: only random pairs meet it
    with pytest.raises(PygCFError, match=r"NaN for \d+ of 200 random pairs"):
        similarity_histograms((u, i), tiny_data, num_random=200)


def test_numpy_integer_counts_are_accepted_and_bins_must_be_integers(tiny_data):
    u, i = torch.randn(4, 2), torch.randn(5, 2)
    view = similarity_histograms(
        (u, i), tiny_data, num_pairs=np.int64(5), num_random=np.int32(7), bins=np.int64(4)
    )
    assert view.positive.numel() == 5 and view.random.numel() == 7 and len(view.table) == 4
    for bad in (10.5, 4.0, True, "4", None):
        with pytest.raises(ConfigError, match=r"bins must be an integer >= 1, got"):
            similarity_histograms((u, i), tiny_data, bins=bad)
