"""One test per bad input of issue 6: wrong input fails loudly, with a message naming the
file and line (data files) or the argument (API), never deep inside torch.

``BAD_INPUTS`` lists the inputs that must raise; the other tests cover inputs that are
accepted and reported (duplicates, cold-start pairs) and training that turns non-finite.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from pyg_cf import datasets
from pyg_cf.data import (
    encode_ids,
    from_edge_list_files,
    from_lightgcn_files,
    from_splits,
    held_out_edges,
    read_adjacency_list,
    read_edge_list,
    train_edges,
)
from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError, DataFormatError, PygCFError
from pyg_cf.losses import get_loss, list_losses
from pyg_cf.metrics import evaluate
from pyg_cf.nn import BipartiteNormConv, GraphCF
from pyg_cf.train import Callback, NonFiniteLossError, TrainConfig, Trainer, load_checkpoint
from pyg_cf.train.checkpoint import read_checkpoint


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(text)
    return p


def tiny() -> object:
    train = pd.DataFrame({"user": [0, 0, 1, 1, 2, 3], "item": [0, 1, 1, 2, 0, 3]})
    test = pd.DataFrame({"user": [0, 1, 2, 3], "item": [2, 0, 1, 1]})
    return from_splits(train, test=test, keep_dense=True)


@dataclass
class Bad:
    """A bad input: ``run(tmp_path)`` must raise ``error`` with a message matching
    ``match``."""

    name: str
    run: Callable[[Path], object]
    error: type[BaseException]
    match: str


def _cold_edge_lists(tmp: Path) -> object:
    tr = write(tmp, "train.txt", "0 0\n0 1\n1 1\n")
    te = write(tmp, "test.txt", "0 1\n\n1 0\n5 0\n")  # user 5 never trains (line 4)
    return from_edge_list_files(tr, te, cold_start="error")


def _cold_adjacency(tmp: Path) -> object:
    write(tmp, "train.txt", "0 0 1\n1 1\n")
    write(tmp, "test.txt", "0 2\n1 0\n")  # item 2 never trains (line 1)
    return from_lightgcn_files(tmp, cold_start="error")


def _huge_user_id(tmp: Path) -> object:
    # kept dense, user 2^63 - 1 used to give "0 users" (a MemoryError for 4e12)
    write(tmp, "train.txt", "0 1 2\n9223372036854775807 1\n")
    write(tmp, "test.txt", "0 1\n")
    return from_lightgcn_files(tmp)


def _huge_test_item_id(tmp: Path) -> object:
    write(tmp, "train.txt", "0 1 2\n1 4\n")
    write(tmp, "test.txt", "0 1\n\n1 4000000000000\n")  # line 3
    return from_lightgcn_files(tmp)


def _devices_conv(tmp: Path) -> object:
    x = torch.randn(3, 2, device="meta")
    return BipartiteNormConv()(x, torch.tensor([[0, 1], [1, 2]]))


def _devices_model(tmp: Path) -> object:
    m = GraphCF.lightgcn(3, 3, 2, num_layers=1)
    return m(edge_index=torch.tensor([[0, 1], [1, 2]], device="meta"))


def _devices_evaluate(tmp: Path) -> object:
    d = tiny()
    return evaluate(torch.randn(4, 2), torch.randn(4, 2, device="meta"), d, "test")


def _other_data_trainer(tmp: Path) -> object:
    return Trainer(GraphCF.mf(3, 3, 2), tiny(), get_loss("bpr"))


def _other_data_evaluate(tmp: Path) -> object:
    m = GraphCF.mf(7, 4, 2)
    return evaluate(*m.embeddings(), tiny(), "test")


def _other_data_graph(tmp: Path) -> object:
    return GraphCF.mf(2, 2, 2).set_graph(train_edges(tiny()))


BAD_INPUTS = [
    # -- data files: the message names the file and the line
    Bad(
        "non-numeric id (adjacency list)",
        lambda t: read_adjacency_list(write(t, "a.txt", "0 1 2\n1 3 x\n")),
        DataFormatError,
        r"a\.txt, line 2: field 'item #2' must be a non-negative integer id, got 'x'",
    ),
    Bad(
        "non-numeric id (edge list)",
        lambda t: read_edge_list(write(t, "e.txt", "0 1\n0 2\nu7 2\n")),
        DataFormatError,
        r"e\.txt, line 3: field 'user' must be a non-negative integer id, got 'u7'",
    ),
    Bad(
        "user without items",
        lambda t: read_adjacency_list(write(t, "a.txt", "0 1 2\n3\n")),
        DataFormatError,
        r"a\.txt, line 2: user 3 has no items",
    ),
    Bad(
        "negative id (adjacency list)",
        lambda t: read_adjacency_list(write(t, "a.txt", "0 1\n1 -4\n")),
        DataFormatError,
        r"a\.txt, line 2: field 'item #1' is a negative id \(-4\)",
    ),
    Bad(
        "negative id (edge list)",
        lambda t: read_edge_list(write(t, "e.txt", "0 1\n-2 1\n")),
        DataFormatError,
        r"e\.txt, line 2: field 'user' is a negative id \(-2\)",
    ),
    Bad(
        "missing file",
        lambda t: read_edge_list(t / "nope.txt"),
        DataFormatError,
        r"nope\.txt: file does not exist",
    ),
    Bad(
        "missing file (loader)",
        lambda t: from_lightgcn_files(t),
        DataFormatError,
        r"train\.txt: file does not exist",
    ),
    Bad(
        "empty file",
        lambda t: read_adjacency_list(write(t, "a.txt", "")),
        DataFormatError,
        r"a\.txt: file is empty",
    ),
    Bad(
        "blank-only file",
        lambda t: read_edge_list(write(t, "e.txt", "\n  \n\n")),
        DataFormatError,
        r"e\.txt: file is empty",
    ),
    Bad(
        "mixed separators (edge list)",
        lambda t: read_edge_list(write(t, "e.tsv", "0\t1\n0,2\n"), sep="\t"),
        DataFormatError,
        r"e\.tsv, line 2: separator '\\t' not found but another separator is present",
    ),
    Bad(
        "mixed separators (adjacency list)",
        lambda t: read_adjacency_list(write(t, "a.txt", "0 1 2\n1,2,3\n")),
        DataFormatError,
        r"a\.txt, line 2: adjacency lists are separated by spaces; found ','",
    ),
    Bad(
        "header line (edge list)",
        lambda t: read_edge_list(write(t, "e.csv", "user,item\n0,1\n"), sep=","),
        DataFormatError,
        r"e\.csv, line 1: the first line \('user', 'item'\) looks like a header.*header=True",
    ),
    Bad(
        "header line (adjacency list)",
        lambda t: read_adjacency_list(write(t, "a.txt", "user items\n0 1\n")),
        DataFormatError,
        r"a\.txt, line 1: the first line .* looks like a header",
    ),
    Bad(
        "test ids not in train, cold_start='error' (edge lists)",
        _cold_edge_lists,
        DataFormatError,
        r"test\.txt, line 4: 1 pair\(s\) have a user or item that never appears in training",
    ),
    Bad(
        "test ids not in train, cold_start='error' (adjacency lists)",
        _cold_adjacency,
        DataFormatError,
        r"test\.txt, line 1: 1 pair\(s\) have a user or item that never appears",
    ),
    Bad(
        "huge id in a LightGCN file (would allocate a dense range of 2^63 ids)",
        _huge_user_id,
        DataFormatError,
        r"train\.txt, line 2: user id 9223372036854775807 is far beyond the 2 distinct user "
        r"ids.*pass keep_dense=False",
    ),
    Bad(
        "huge id in a LightGCN test file",
        _huge_test_item_id,
        DataFormatError,
        r"test\.txt, line 3: item id 4000000000000 is far beyond the 4 distinct item ids",
    ),
    Bad(
        "empty id field (string ids)",
        lambda t: read_edge_list(write(t, "e.csv", "u1,i1\nu2,\n"), sep=",", numeric_ids=False),
        DataFormatError,
        r"e\.csv, line 2: field 'item' is an empty id",
    ),
    Bad(
        "empty id field (integer ids)",
        lambda t: read_edge_list(write(t, "e.csv", "0,1\n,2\n"), sep=","),
        DataFormatError,
        r"e\.csv, line 2: field 'user' is an empty id",
    ),
    Bad(
        "header row wider than the data",
        lambda t: read_edge_list(write(t, "e.txt", "user item rating timestamp\n0 1 1\n")),
        DataFormatError,
        r"e\.txt, line 2: expected 4 fields like line 1, found 3 \(line 1 \('user', 'item', "
        r"'rating', 'timestamp'\) was read as data but looks like a header: pass header=True\)",
    ),
    Bad(
        "NaN rating",
        lambda t: read_edge_list(write(t, "r.txt", "0 1 4.0\n1 1 nan\n")),
        DataFormatError,
        r"r\.txt, line 2: field 'rating' is not finite \(nan\)",
    ),
    Bad(
        "inf rating",
        lambda t: read_edge_list(write(t, "r.txt", "0 1 -inf\n")),
        DataFormatError,
        r"r\.txt, line 1: field 'rating' is not finite \(-inf\)",
    ),
    Bad(
        "non-numeric rating",
        lambda t: read_edge_list(write(t, "r.txt", "0 1 4\n0 2 good\n")),
        DataFormatError,
        r"r\.txt, line 2: field 'rating' must be a number, got 'good'",
    ),
    Bad(
        "rating with a digit group separator",
        lambda t: read_edge_list(write(t, "r.txt", "0 1 4\n0 2 1_0\n")),
        DataFormatError,
        r"r\.txt, line 2: field 'rating' must be a number, got '1_0' \(a plain decimal",
    ),
    Bad(
        "rating in non-ASCII digits",
        lambda t: read_edge_list(write(t, "r.txt", "0 1 \u0663\n")),
        DataFormatError,
        r"r\.txt, line 1: field 'rating' must be a number, got '\u0663'",
    ),
    Bad(
        "fractional timestamp",
        lambda t: read_edge_list(write(t, "s.txt", "0 1 4 100\n0 2 4 1.9\n")),
        DataFormatError,
        r"s\.txt, line 2: field 'timestamp' must be an integer \(int64\), got '1\.9'",
    ),
    Bad(
        "header line (string ids, header=False)",
        lambda t: read_edge_list(write(t, "s.txt", "user item\na b\n"), numeric_ids=False),
        DataFormatError,
        r"s\.txt, line 1: the first line \('user', 'item'\) looks like a header.*header=True",
    ),
    Bad(
        "negative ids beside uint64 ids beyond int64 (encode_ids)",
        lambda t: encode_ids(
            pd.DataFrame({"user": [-1], "item": [0]}),
            pd.DataFrame({"user": pd.array([2**63], dtype="uint64"), "item": [0]}),
        ),
        DataFormatError,
        r"column 'user' mixes negative ids with unsigned ids beyond the int64 range",
    ),
    # -- API misuse: the message names the argument
    Bad(
        "item id out of range in score",
        lambda t: GraphCF.mf(4, 5, 2).score(torch.tensor([0]), torch.tensor([1, 5])),
        PygCFError,
        r"item ids must lie in \[0, 5\); got min 1, max 5",
    ),
    Bad(
        "negative user id in recommend",
        lambda t: GraphCF.mf(4, 5, 2, edge_index=torch.tensor([[0], [0]])).recommend(
            torch.tensor([-1]), k=2
        ),
        PygCFError,
        r"user ids must lie in \[0, 4\)",
    ),
    Bad(
        "empty separator",
        lambda t: read_edge_list(write(t, "e.txt", "0 1\n"), sep=""),
        ConfigError,
        r"sep must be a non-empty string or None \(white space\), got ''",
    ),
    Bad(
        "repeated column name",
        lambda t: read_edge_list(write(t, "e.txt", "0 1 1\n"), columns=("user", "item", "user")),
        ConfigError,
        r"columns must name each field once; repeated: \['user'\]",
    ),
    Bad(
        "sparse ids kept dense (encode_ids)",
        lambda t: encode_ids(
            pd.DataFrame({"user": [0, 4_000_000_000_000], "item": [0, 1]}), keep_dense=True
        ),
        ConfigError,
        r"keep_dense: the largest user id is 4000000000000, but there are only 2 distinct user "
        r"ids .*pass keep_dense=False",
    ),
    Bad(
        "pair ids out of range (UserItemIndex)",
        lambda t: UserItemIndex(torch.tensor([[0], [5]]), 3, 5),
        ConfigError,
        r"edge_index ids out of range for 3 users / 5 items: users in \[0, 0\], items in "
        r"\[5, 5\]",
    ),
    Bad(
        "k out of range in recommend",
        lambda t: GraphCF.mf(4, 5, 2).recommend(torch.tensor([0]), k=6),
        ConfigError,
        r"k must lie in \[1, 5\], got 6",
    ),
    Bad(
        "embedding dim 0",
        lambda t: GraphCF(4, 5, embedding_dim=0),
        ConfigError,
        r"embedding_dim must be a positive integer, got 0",
    ),
    Bad(
        "negative embedding dim",
        lambda t: GraphCF.lightgcn(4, 5, embedding_dim=-8),
        ConfigError,
        r"embedding_dim must be a positive integer, got -8",
    ),
    Bad(
        "alpha out of range (model)",
        lambda t: GraphCF(4, 5, alpha0=3.0),
        ConfigError,
        r"alpha0 must lie in \[-1, 2\].*got 3\.0",
    ),
    Bad(
        "alpha NaN (layer)",
        lambda t: BipartiteNormConv(alpha1=float("nan")),
        ConfigError,
        r"alpha1 must lie in \[-1, 2\]",
    ),
    Bad(
        "alpha not a number (layer)",
        lambda t: BipartiteNormConv(alpha0="half"),
        ConfigError,
        r"alpha0 must be a number in \[-1, 2\], got 'half'",
    ),
    Bad(
        "unknown loss name",
        lambda t: get_loss("softmaxx"),
        ConfigError,
        r"unknown loss 'softmaxx'; registered losses: \[.*'bpr'.*'ssm'.*\]",
    ),
    Bad(
        "unknown dataset name",
        lambda t: datasets.load("netflix"),
        ConfigError,
        r"unknown data set 'netflix'; known: \['citeulike', 'gowalla', 'ml-1m'\]",
    ),
    Bad(
        "tensors on different devices (layer)",
        _devices_conv,
        ConfigError,
        r"x and edge_index are on different devices \(meta and cpu\)",
    ),
    Bad(
        "tensors on different devices (model forward)",
        _devices_model,
        ConfigError,
        r"x and edge_index are on different devices \(cpu and meta\)",
    ),
    Bad(
        "tensors on different devices (evaluate)",
        _devices_evaluate,
        ConfigError,
        r"user and item embeddings are on different devices",
    ),
    Bad(
        "model for other numbers of users/items (trainer)",
        _other_data_trainer,
        ConfigError,
        r"model is built for 3 users / 3 items but the data has 4 / 4",
    ),
    Bad(
        "model for other numbers of users/items (evaluate)",
        _other_data_evaluate,
        ConfigError,
        r"embeddings are for 7 users / 4 items but the data has 4 / 4",
    ),
    Bad(
        "model for other numbers of users/items (graph)",
        _other_data_graph,
        PygCFError,
        r"edge_index has ids outside 2 users / 2 items: was the model built for other data\?",
    ),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
def test_bad_input_is_reported(tmp_path, bad):
    with pytest.raises(bad.error, match=bad.match) as info:
        bad.run(tmp_path)
    assert isinstance(info.value, PygCFError), "every deliberate error is a PygCFError"


def test_every_registered_loss_is_listed():
    with pytest.raises(ConfigError) as info:
        get_loss("nope")
    for name in list_losses():
        assert repr(name) in str(info.value)


# -- inputs that are accepted and reported ---------------------------------------------------
def test_duplicates_are_dropped_and_counted(tmp_path, caplog):
    tr = write(tmp_path, "train.txt", "0 0\n0 1\n0 0\n1 1\n0 0\n")
    te = write(tmp_path, "test.txt", "1 0\n1 0\n")
    with caplog.at_level(logging.INFO, logger="pyg_cf"):
        data = from_edge_list_files(tr, te)
    assert train_edges(data).size(1) == 3 and held_out_edges(data, "test").size(1) == 1
    assert "train: dropped 2 duplicate interaction(s) of 5" in caplog.text
    assert "test: dropped 1 duplicate interaction(s) of 2" in caplog.text


@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_cold_start_ids_are_reported_and_kept_or_dropped(tmp_path, caplog, policy):
    tr = write(tmp_path, "train.txt", "0 0\n0 1\n1 1\n")
    te = write(tmp_path, "test.txt", "0 1\n1 0\n5 0\n1 9\n")  # user 5 and item 9 are cold
    with caplog.at_level(logging.WARNING, logger="pyg_cf"):
        data = from_edge_list_files(tr, te, cold_start=policy)
    test = held_out_edges(data, "test")
    if policy == "keep":
        assert "test: kept 2 cold-start pair(s)" in caplog.text
        assert test.size(1) == 3 and data["user"].num_nodes == 3 and data["item"].num_nodes == 3
    else:
        assert "test: dropped 2 cold-start pair(s)" in caplog.text
        assert test.size(1) == 1 and data["user"].num_nodes == 2


def test_header_line_is_skipped_when_declared(tmp_path):
    df = read_edge_list(write(tmp_path, "e.csv", "user,item\n0,1\n"), sep=",", header=True)
    assert df[["user", "item"]].values.tolist() == [[0, 1]]


# -- training that turns non-finite ----------------------------------------------------------
class Poison(Callback):
    def __init__(self, epoch: int, value: float) -> None:
        self.epoch, self.value = epoch, value

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch == self.epoch:
            with torch.no_grad():
                trainer.model.item_embedding.weight[0].fill_(self.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_with_location_and_keeps_last_good_checkpoint(tmp_path, value):
    g = torch.Generator().manual_seed(0)
    users, items = torch.randint(20, (300,), generator=g), torch.randint(30, (300,), generator=g)
    frame = pd.DataFrame({"user": users.numpy(), "item": items.numpy()})
    from pyg_cf.data import from_dataframe

    data = from_dataframe(frame, seed=0)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=4)
    cfg = TrainConfig(
        epochs=5, batch_size=1024, progress=False, patience=None, checkpoint_dir=str(tmp_path)
    )
    tr = Trainer(model, data, get_loss("bpr"), cfg, [Poison(3, value)])
    with pytest.raises(NonFiniteLossError, match=r"loss is (nan|inf) at epoch 3, batch 0"):
        tr.fit()
    assert len(tr.history) == 2  # no row was recorded for the poisoned epoch
    saved = read_checkpoint(tmp_path / "last.pt")
    assert saved["epoch"] == 2
    assert torch.isfinite(saved["model"]["item_embedding.weight"]).all()
    fresh = Trainer(
        GraphCF.from_data(data, "lightgcn", embedding_dim=4), data, get_loss("bpr"), cfg
    )
    fresh.callbacks = [Poison(-1, value)]
    assert load_checkpoint(fresh, tmp_path / "last.pt") == 2


@pytest.mark.parametrize("policy", ["drop", "error"])
def test_validation_carve_never_changes_the_given_test_split(tmp_path, policy):
    # item 9 has one training interaction; whichever seed carves it into validation, the
    # test pair (0, 9) is judged against the training file as given and stays
    d = tmp_path / "lgn"
    d.mkdir()
    (d / "train.txt").write_text("0 0 1 2 9\n1 0 1 2\n2 1 2 3\n")
    (d / "test.txt").write_text("0 3\n1 9\n")
    carved = 0
    for seed in range(8):
        data = from_lightgcn_files(d, val_ratio=0.5, seed=seed, cold_start=policy)
        item9 = 9  # LightGCN ids are kept as they are
        in_train = bool((train_edges(data)[1] == item9).any())
        carved += not in_train
        test = held_out_edges(data, "test").t().tolist()
        assert sorted(map(tuple, test)) == [(0, 3), (1, 9)]
        edges = tmp_path / f"e{seed}"
        edges.mkdir()
        tr = write(edges, "train.txt", "0 0\n0 1\n0 9\n1 0\n1 1\n")
        te = write(edges, "test.txt", "1 9\n")
        data2 = from_edge_list_files(tr, te, val_ratio=0.5, seed=seed, cold_start=policy)
        assert held_out_edges(data2, "test").size(1) == 1
    assert carved > 0  # some seed did carve item 9's only training pair away


def test_validation_file_and_carve_are_exclusive(tmp_path):
    tr = write(tmp_path, "train.txt", "0 0\n0 1\n1 1\n")
    va = write(tmp_path, "val.txt", "1 0\n")
    with pytest.raises(ConfigError, match="val_path or val_ratio"):
        from_edge_list_files(tr, val_path=va, val_ratio=0.1)
