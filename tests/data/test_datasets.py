import logging
from dataclasses import replace

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


def test_load_verifies_the_published_sizes(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1\n1 1 2\n")
    (tmp_path / "test.txt").write_text("0 2\n")
    sizes = r"\(6022, 3043, 796244, 99455\), found \(2, 3, 4, 1\)"
    with pytest.raises(DataFormatError, match=rf"ml-1m in {tmp_path}: expected .* = {sizes}"):
        datasets.load("ml-1m", root=tmp_path)
    data = datasets.load("ml-1m", root=tmp_path, verify=False)
    assert train_edges(data).size(1) == 4


def test_load_verifies_a_shipped_validation_split(tmp_path, monkeypatch):
    (tmp_path / "train.txt").write_text("0 0\n0 1\n1 1\n")
    (tmp_path / "valid.txt").write_text("1 0\n")
    (tmp_path / "test.txt").write_text("0 2\n1 2\n")
    info = datasets.DatasetInfo(
        "citeulike", "edgelist", ("train.txt", "valid.txt", "test.txt"), 2, 3, 3, 2, 1
    )
    monkeypatch.setitem(datasets.DATASETS, "citeulike", info)
    assert held_out_edges(datasets.load("citeulike", root=tmp_path), "val").size(1) == 1
    monkeypatch.setitem(datasets.DATASETS, "citeulike", replace(info, num_val=2))
    match = r"expected \(users, items, train, test, val\) = \(2, 3, 3, 2, 2\), found .*1\)"
    with pytest.raises(DataFormatError, match=match):
        datasets.load("citeulike", root=tmp_path)


def test_wrong_root_is_reported(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        datasets.load("gowalla", root=tmp_path)


def test_load_prints_nothing_and_its_docstring_shows_how_to_get_the_summary(
    tmp_path, capsys, caplog
):
    # the docstring showed the summary line as if load printed it; load only logs it
    from pyg_cf.data import summarize

    (tmp_path / "train.txt").write_text("0 0 1\n1 1 2\n")
    (tmp_path / "test.txt").write_text("0 2\n")
    with caplog.at_level(logging.DEBUG, logger="pyg_cf"):
        data = datasets.load("ml-1m", root=tmp_path, verify=False)
    line = summarize(data)
    assert capsys.readouterr() == ("", "")
    (record,) = [r for r in caplog.records if r.getMessage() == line]
    assert record.levelno == logging.DEBUG  # the CLI prints it: not logged twice at INFO
    assert ">>> print(summarize(data))" in datasets.load.__doc__
