import pytest

from pyg_cf import datasets
from pyg_cf.data import held_out_edges, train_edges
from pyg_cf.errors import ConfigError, DataFormatError
from tests.conftest import data_dir


@pytest.mark.skipif(data_dir("gowalla") is None, reason="Gowalla files not present")
def test_gowalla_published_sizes():
    data = datasets.load("gowalla")
    assert data["user"].num_nodes == 29_858 and data["item"].num_nodes == 40_981
    assert train_edges(data).size(1) == 810_128
    assert held_out_edges(data, "test").size(1) == 217_242


@pytest.mark.skipif(data_dir("ml-1m") is None, reason="ML-1M files not present")
def test_ml1m_with_carved_validation():
    data = datasets.load("ml-1m", val_ratio=0.1, seed=0)
    n_val = held_out_edges(data, "val").size(1)
    assert train_edges(data).size(1) + n_val == 796_244
    assert 0.09 < n_val / 796_244 < 0.11


@pytest.mark.skipif(data_dir("citeulike") is None, reason="CiteULike files not present")
def test_citeulike_edge_lists(caplog):
    data = datasets.load("citeulike")
    assert held_out_edges(data, "val").size(1) == 18_727
    data = datasets.load("citeulike", val_ratio=0.1)  # its own split, with a warning
    assert held_out_edges(data, "val").size(1) == 18_727
    assert "ships its own validation split (valid.txt); val_ratio=0.1 is not used" in caplog.text


@pytest.mark.parametrize("val_ratio", [-0.1, 1.0, "0.1", True, float("nan")])
def test_a_bad_val_ratio_is_named_before_reading(tmp_path, val_ratio):
    from pyg_cf.data import from_edge_list_files, from_lightgcn_files

    match = rf"val_ratio must be a number in \[0, 1\) \(0: no carve\), got {val_ratio!r}"
    with pytest.raises(ConfigError, match=match):  # tmp_path holds no files: checked first
        from_lightgcn_files(tmp_path, val_ratio=val_ratio)
    with pytest.raises(ConfigError, match=match):
        from_edge_list_files(tmp_path / "train.txt", tmp_path / "test.txt", val_ratio=val_ratio)


def test_unknown_dataset_lists_names():
    with pytest.raises(ConfigError, match="gowalla"):
        datasets.load("netflix")


def test_wrong_root_is_reported(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        datasets.load("gowalla", root=tmp_path)
