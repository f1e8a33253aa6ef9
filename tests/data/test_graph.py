import logging

import numpy as np
import pandas as pd
import pytest

from pyg_cf.data.graph import build_graph
from pyg_cf.data.interactions import IdMap
from pyg_cf.errors import DataFormatError


def _frames(val_items, test_items):
    idm = IdMap(users=np.array([10, 11]), items=np.arange(6))
    tr = pd.DataFrame({"user": [0, 0, 1], "item": [0, 1, 0]})
    va = pd.DataFrame({"user": [0] * len(val_items), "item": val_items})
    te = pd.DataFrame({"user": [0] * len(test_items), "item": test_items})
    return tr, idm, va, te


def test_disjoint_splits_are_kept_as_given():
    data = build_graph(*_frames([2], [3, 4]))
    et = data["user", "rates", "item"]
    assert et.edge_index.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert et.val_edge_index.tolist() == [[0], [2]]
    assert et.test_edge_index.tolist() == [[0, 0], [3, 4]]


def test_a_held_out_pair_that_is_also_a_training_pair_is_refused():
    with pytest.raises(DataFormatError, match=r"1 test pair\(s\) also appear in training.*item 1"):
        build_graph(*_frames([2], [1, 3]))


def test_a_test_pair_that_is_also_a_validation_pair_is_refused():
    """Validation pairs are masked at test time: such a test pair could never be found, and
    the splits the package promises are disjoint."""
    msg = r"2 test pair\(s\) also appear in validation \(first: user 0, item 2\)"
    with pytest.raises(DataFormatError, match=msg):
        build_graph(*_frames([2, 3], [2, 3, 4]))


@pytest.mark.parametrize("split", ["train", "val", "test"])
@pytest.mark.parametrize("dtype", [np.float64, object])
def test_id_columns_that_are_not_integers_are_refused(split, dtype):
    # float ids were truncated by to_numpy(np.int64): 0.9 became user 0, 1.99 item 1
    tr, idm, va, te = _frames([2], [3])
    frames = {"train": tr, "val": va, "test": te}
    frames[split] = frames[split].astype({"user": dtype})
    with pytest.raises(DataFormatError, match=f"{split}: column 'user' holds .* ids, but"):
        build_graph(frames["train"], idm, frames["val"], frames["test"])
    floats = pd.DataFrame({"user": [0.9, 1.7], "item": [0.2, 1.99]})
    with pytest.raises(DataFormatError, match="train: column 'user' holds float64 ids"):
        build_graph(floats, IdMap(np.arange(2), np.arange(3)))


def test_repeated_held_out_pairs_are_kept_once_and_logged(caplog):
    # a repeated validation or test pair was kept twice; as drop_duplicates does for the
    # loaders, the repeats are dropped with a warning
    with caplog.at_level(logging.WARNING, logger="pyg_cf.data.graph"):
        data = build_graph(*_frames([2, 2], [4, 3, 4, 4]))
    et = data["user", "rates", "item"]
    assert et.val_edge_index.tolist() == [[0], [2]]
    assert et.test_edge_index.tolist() == [[0, 0], [3, 4]]
    assert "val: dropped 1 duplicate interaction(s) of 2" in caplog.text
    assert "test: dropped 2 duplicate interaction(s) of 4" in caplog.text
    tr, idm, va, te = _frames([2], [3])
    with pytest.raises(DataFormatError, match=r"training set has 1 duplicate pair"):
        build_graph(pd.concat([tr, tr.iloc[:1]]), idm, va, te)  # training repeats: refused
