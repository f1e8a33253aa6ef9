"""The file loaders: arguments that must reach the readers, and LightGCN's dense ids."""

import logging
import re

import numpy as np
import pandas as pd
import pytest

from pyg_cf.data import (
    from_dataframe,
    from_edge_list_files,
    from_lightgcn_files,
    held_out_edges,
    train_edges,
)
from pyg_cf.errors import ConfigError, DataFormatError


def pairs(ei):
    return sorted(map(tuple, ei.t().tolist()))


def test_edge_list_files_read_with_the_given_sep_and_header(tmp_path):
    tr = tmp_path / "train.csv"
    tr.write_text("user,item\n0,0\n0,1\n1,1\n")
    va = tmp_path / "val.csv"
    va.write_text("user,item\n1,0\n")
    te = tmp_path / "test.csv"
    te.write_text("user,item\n0,2\n")
    data = from_edge_list_files(tr, te, va, sep=",", header=True)
    assert pairs(train_edges(data)) == [(0, 0), (0, 1), (1, 1)]
    assert pairs(held_out_edges(data, "val")) == [(1, 0)]
    assert pairs(held_out_edges(data, "test")) == [(0, 2)]
    with pytest.raises(DataFormatError, match=r"train\.csv, line 1: .*looks like a header"):
        from_edge_list_files(tr, te, sep=",")


def test_lightgcn_test_file_may_list_users_without_test_items(tmp_path):
    # the LightGCN releases list every user in test.txt, some with no test item
    (tmp_path / "train.txt").write_text("0 0 1\n1 1 2\n2 0\n")
    (tmp_path / "test.txt").write_text("0 2\n1\n2 1\n")
    data = from_lightgcn_files(tmp_path)
    assert pairs(held_out_edges(data, "test")) == [(0, 2), (2, 1)]
    assert data["user"].num_nodes == 3
    (tmp_path / "train.txt").write_text("0 0 1\n1\n2 0\n")  # but every user trains
    with pytest.raises(DataFormatError, match=r"train\.txt, line 2: user 1 has no items"):
        from_lightgcn_files(tmp_path)


def test_lightgcn_train_lines_without_items_are_skipped_only_when_asked(tmp_path, caplog):
    # the error says "pass allow_empty=True", which from_lightgcn_files used to refuse
    # (TypeError): it read the test file with allow_empty=True and gave no way to opt in
    (tmp_path / "train.txt").write_text("0 0 1\n1 1\n2 0 2\n3\n")
    (tmp_path / "test.txt").write_text("0 2\n1 0\n")
    hint = r"train\.txt, line 4: user 3 has no items \(pass allow_empty=True to skip"
    with pytest.raises(DataFormatError, match=hint):
        from_lightgcn_files(tmp_path)  # the default stays strict
    with caplog.at_level(logging.INFO, logger="pyg_cf"):
        data = from_lightgcn_files(tmp_path, allow_empty=True)
    assert pairs(train_edges(data)) == [(0, 0), (0, 1), (1, 1), (2, 0), (2, 2)]
    assert pairs(held_out_edges(data, "test")) == [(0, 2), (1, 0)]
    assert data["user"].num_nodes == 3  # user 3 occurs nowhere else
    # skipped, but never silently
    assert "train.txt: skipped 1 line(s) holding a user but no items (first: line 4)" in (
        caplog.text
    )


def test_lightgcn_ids_are_kept_dense_up_to_a_limit(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2\n5 1\n")
    (tmp_path / "test.txt").write_text("0 4\n")
    data = from_lightgcn_files(tmp_path)  # users 1-4 and items 0, 3 have no interaction
    assert (data["user"].num_nodes, data["item"].num_nodes) == (6, 5)
    (tmp_path / "train.txt").write_text("0 1 2\n4000000000000 1\n")  # 29 TiB of ids
    with pytest.raises(DataFormatError, match=r"train\.txt, line 2: user id 4000000000000 is far"):
        from_lightgcn_files(tmp_path)
    data = from_lightgcn_files(tmp_path, keep_dense=False)  # mapped to 0..n-1 instead
    assert (data["user"].num_nodes, data["item"].num_nodes) == (2, 3)
    assert pairs(train_edges(data)) == [(0, 0), (0, 1), (1, 0)]


@pytest.mark.parametrize("seed", range(6))
def test_validation_carve_runs_on_distinct_pairs(tmp_path, seed):
    # a repeated training pair carved into validation used to be dropped again as "also a
    # training pair", leaving 1 validation pair of 4 distinct at val_ratio=0.5
    tr = tmp_path / "train.txt"
    tr.write_text("0 1\n0 1\n0 2\n0 3\n0 4\n")
    data = from_edge_list_files(tr, val_ratio=0.5, seed=seed)
    train, val = pairs(train_edges(data)), pairs(held_out_edges(data, "val"))
    assert (len(train), len(val)) == (2, 2)
    assert sorted(train + val) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    (tmp_path / "lg").mkdir()
    (tmp_path / "lg" / "train.txt").write_text("0 1 1 2 3 4\n")
    (tmp_path / "lg" / "test.txt").write_text("0 5\n")
    data = from_lightgcn_files(tmp_path / "lg", val_ratio=0.5, seed=seed)
    assert (train_edges(data).size(1), held_out_edges(data, "val").size(1)) == (2, 2)


def raw_pairs(data, ei):
    users, items = data["user"].raw_id, data["item"].raw_id
    return sorted((str(users[u]), str(items[i])) for u, i in ei.t().tolist())


@pytest.mark.parametrize("cold_start", ["drop", "keep", "error"])
def test_validation_carve_never_changes_the_given_test_split(tmp_path, cold_start):
    # (0, 3) is in both files, and item 3 only in user 0's training list: carved into
    # validation it was dropped there as cold (cold_start='drop') and then survived in
    # test, which was only checked against the carved training part
    (tmp_path / "lg").mkdir()
    (tmp_path / "lg" / "train.txt").write_text("0 0 1 2 3\n1 0 1 2\n")
    (tmp_path / "lg" / "test.txt").write_text("0 3\n1 1\n1 3\n")
    (tmp_path / "train.txt").write_text("0 0\n0 1\n0 2\n0 3\n1 0\n1 1\n1 2\n")
    (tmp_path / "test.txt").write_text("0 3\n1 1\n1 3\n")

    def lightgcn(val_ratio, seed):
        return from_lightgcn_files(
            tmp_path / "lg", val_ratio=val_ratio, seed=seed, cold_start=cold_start
        )

    def edge_lists(val_ratio, seed):
        return from_edge_list_files(
            tmp_path / "train.txt",
            tmp_path / "test.txt",
            val_ratio=val_ratio,
            seed=seed,
            cold_start=cold_start,
        )

    for load in (lightgcn, edge_lists):
        base = raw_pairs(load(0.0, 0), held_out_edges(load(0.0, 0), "test"))
        assert base == [("1", "3")]
        for val_ratio in (0.25, 0.5):
            for seed in range(8):
                data = load(val_ratio, seed)
                assert raw_pairs(data, held_out_edges(data, "test")) == base, (val_ratio, seed)


# -- bad input named: the checks that had no test -------------------------------------------
def test_frames_and_files_that_cannot_be_read_are_named(tmp_path):
    import pandas as pd

    from pyg_cf.data import from_dataframe, from_splits
    from pyg_cf.data.io import read_adjacency_list, read_edge_list
    from pyg_cf.errors import ConfigError

    df = pd.DataFrame({"u": [0, 0, 1, 1, 2], "i": [0, 1, 1, 2, 0], "rating": [5, 1, 4, 2, 3]})
    with pytest.raises(ConfigError, match="user_col and item_col are the same column 'u'"):
        from_dataframe(df, user_col="u", item_col="u")
    with pytest.raises(ConfigError, match="min_rating needs a 'rating' column"):
        from_dataframe(df.drop(columns="rating"), user_col="u", item_col="i", min_rating=3)
    with pytest.raises(ConfigError, match="no interactions left after filtering"):
        from_dataframe(df, user_col="u", item_col="i", min_rating=6)
    with pytest.raises(ConfigError, match="cold_start must be 'keep', 'drop' or 'error'"):
        frame = df.rename(columns={"u": "user", "i": "item"})
        from_splits(frame, test=frame, cold_start="skip")
    with pytest.raises(DataFormatError, match="expected a file but found a directory"):
        read_edge_list(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("3\n4\n")  # users without items, skipped when allowed
    with pytest.raises(DataFormatError, match="file holds no interactions") as err:
        read_adjacency_list(empty, allow_empty=True)
    assert "empty.txt" in str(err.value)
    edges = tmp_path / "edges.txt"
    edges.write_text("0 1\n")
    with pytest.raises(DataFormatError, match="columns must start with 'user', 'item'"):
        read_edge_list(edges, columns=("item", "user"))


# -- review of pyg_cf/data: fixes -----------------------------------------------------------
def _lightgcn_at_the_dense_limit(tmp_path, largest):
    # items 1..10 occur only in test.txt: 12 distinct items in the two files, so the
    # dense-id limit is 2 * 12 + 1,000,000 = 1,000,024 ids (the largest id 1,000,023)
    (tmp_path / "train.txt").write_text(f"0 0 {largest}\n1 0\n")
    (tmp_path / "test.txt").write_text("0 " + " ".join(map(str, range(1, 11))) + "\n")


@pytest.mark.parametrize("cold_start,val_ratio", [("keep", 0.0), ("drop", 0.0), ("drop", 0.5)])
def test_lightgcn_dense_id_limit_is_checked_on_the_files_whatever_cold_start(
    tmp_path, cold_start, val_ratio
):
    # encode_ids checked the limit again after the cold test pairs were dropped: with
    # 'drop' only 2 distinct items were left and the same files failed, naming no file
    _lightgcn_at_the_dense_limit(tmp_path, 1_000_023)
    data = from_lightgcn_files(tmp_path, cold_start=cold_start, val_ratio=val_ratio, seed=1)
    assert data["user"].num_nodes == 2
    if val_ratio == 0:  # (a carve may move item 1,000,023 into validation, and drop it)
        assert data["item"].num_nodes == 1_000_024
    assert held_out_edges(data, "test").size(1) == (10 if cold_start == "keep" else 0)
    _lightgcn_at_the_dense_limit(tmp_path, 1_000_024)  # one past the limit: the file is named
    for policy in ("keep", "drop"):
        with pytest.raises(DataFormatError, match=r"train\.txt, line 1: item id 1000024 is far"):
            from_lightgcn_files(tmp_path, cold_start=policy)


def test_edge_list_files_need_a_train_path(tmp_path):
    with pytest.raises(ConfigError, match="train_path is required"):
        from_edge_list_files(None)  # was a bare AssertionError


def test_edge_list_files_read_every_row_as_a_positive(tmp_path):
    tr = tmp_path / "train.txt"
    tr.write_text("0 0 5\n0 1 0\n1 1 -1\n")  # as documented: ratings are read, then dropped
    assert pairs(train_edges(from_edge_list_files(tr))) == [(0, 0), (0, 1), (1, 1)]


@pytest.mark.parametrize("bad", ["4", True, float("nan"), float("inf"), [4]])
def test_from_dataframe_min_rating_must_be_a_finite_number(bad):
    df = pd.DataFrame({"user": [0, 0, 1, 1], "item": [0, 1, 0, 1], "rating": [5, 1, 4, 2]})
    with pytest.raises(
        ConfigError, match=re.escape(f"min_rating must be a finite number or None, got {bad!r}")
    ):
        from_dataframe(df, ratios=(1, 0), min_rating=bad)
    for ok in (4, 4.0, np.float64(4), np.int64(4)):
        data = from_dataframe(df, ratios=(1, 0), min_rating=ok)
        assert pairs(train_edges(data)) == [(0, 0), (1, 0)]


@pytest.mark.parametrize("col", ["uid", "iid"])
def test_from_dataframe_names_the_callers_column_for_a_missing_id(col):
    df = pd.DataFrame({"uid": [1, 2], "iid": [2, 3]})
    df[col] = df[col].astype(object)
    df.loc[1, col] = None
    # the message named the internal column ('user' / 'item') the frame was renamed to
    with pytest.raises(DataFormatError, match=f"dataframe: column '{col}' has a missing value"):
        from_dataframe(df, user_col="uid", item_col="iid")
