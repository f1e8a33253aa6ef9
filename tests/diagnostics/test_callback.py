import logging

import pandas as pd
import pytest
import torch

from pyg_cf.data.synthetic import power_law_bipartite
from pyg_cf.diagnostics import DiagnosticsCallback, LongTailRecall, long_tail_recall
from pyg_cf.errors import ConfigError
from pyg_cf.losses import get_loss
from pyg_cf.losses.temperature import AdapTau
from pyg_cf.nn import GraphCF
from pyg_cf.train import Callback, TrainConfig, Trainer, load_checkpoint
from pyg_cf.train.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def data():
    return power_law_bipartite(200, 150, min_user_degree=3, val_ratio=0.1, test_ratio=0.2)


def _trainer(data, callbacks, loss=None):
    model = GraphCF.from_data(data, "svdpp-item", embedding_dim=8)
    cfg = TrainConfig(epochs=3, batch_size=256, eval_every=0, progress=False, lr=1e-2)
    return Trainer(model, data, loss or get_loss("ssm"), cfg, callbacks=callbacks)


def test_records_every_n_epochs(data):
    cb = DiagnosticsCallback(every=2, keep_frames=True, long_tail=True, k=10, groups=4)
    tr = _trainer(data, [cb])
    hist = tr.fit()
    assert list(cb.frames) == [2]
    assert list(cb.long_tail) == [2] and isinstance(cb.long_tail[2], LongTailRecall)
    h = cb.history()
    assert h["epoch"].tolist() == [2, 2] and h["node_type"].tolist() == ["user", "item"]
    row = hist[hist["epoch"] == 2].iloc[0]
    assert row["item_norm_slope"] == pytest.approx(h["slope"].iloc[1])
    assert "item_norm_mean" not in hist[hist["epoch"] == 1].dropna(axis=1).columns
    assert "tau_degree_spearman" not in hist.columns  # fixed temperature: nothing to show


def test_norms_change_during_training(data):
    cb = DiagnosticsCallback(every=1, node_types=("item",))
    _trainer(data, [cb]).fit()
    means = cb.history()["norm_mean"].tolist()
    assert len(means) == 3 and len(set(means)) == 3


def test_temperature_column_with_adaptive_loss(data):
    cb = DiagnosticsCallback(every=1)
    loss = get_loss("ssm", include_positive=False)
    hist = _trainer(data, [AdapTau(), cb], loss).fit()
    assert "tau_degree_spearman" in hist.columns


def test_bad_every():
    with pytest.raises(ConfigError, match="every"):
        DiagnosticsCallback(every=0)


def test_a_node_type_of_one_degree_records_nan_instead_of_stopping_training(caplog):
    import math

    import numpy as np
    import pandas as pd

    from pyg_cf.data import from_splits

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 3)  # every user has degree 3: no user slope to fit
    picks = [rng.choice(30, 4, replace=False) for _ in range(40)]  # 3 to train, 1 to test
    items = np.concatenate([p[:3] for p in picks])
    test = pd.DataFrame({"user": np.arange(40), "item": [p[3] for p in picks]})
    data = from_splits(pd.DataFrame({"user": users, "item": items}), test=test)
    cb = DiagnosticsCallback(every=1)
    with caplog.at_level(logging.WARNING, logger="pyg_cf"):
        hist = _trainer(data, [cb]).fit()
    assert len(hist) == 3
    h = cb.history()
    assert h.loc[h["node_type"] == "user", "slope"].map(math.isnan).all()
    assert h.loc[h["node_type"] == "item", "slope"].map(math.isfinite).all()
    assert caplog.text.count("no user norm slope") == 1


class _Probe(Callback):
    """Runs after the diagnostics callback and computes the long-tail Recall on
    ``splits`` with the same weights."""

    def __init__(self, k, groups, splits=("val", "test")):
        self.k, self.groups, self.splits, self.seen = k, groups, splits, {}

    def on_epoch_end(self, trainer, epoch, row):
        self.seen[epoch] = {
            s: long_tail_recall(trainer.model, trainer.data, self.k, self.groups, s).recall
            for s in self.splits
        }


@pytest.mark.parametrize("split", ["val", "test"])
def test_long_tail_on_the_requested_split(data, split):
    # computing on 'test' whatever the split would leak the test set into validation runs
    cb, probe = DiagnosticsCallback(long_tail=True, k=10, groups=4, split=split), _Probe(10, 4)
    _trainer(data, [cb, probe]).fit()
    assert list(cb.long_tail) == [1, 2, 3]
    for epoch, res in cb.long_tail.items():
        want = probe.seen[epoch]
        assert want["val"] != want["test"]
        assert res.recall == want[split]


def test_no_validation_split_falls_back_to_test_with_one_warning(caplog):
    data = power_law_bipartite(200, 150, min_user_degree=3, val_ratio=0.0, test_ratio=0.2)
    cb, probe = DiagnosticsCallback(long_tail=True, k=10, groups=4), _Probe(10, 4, ("test",))
    with caplog.at_level(logging.WARNING, logger="pyg_cf"):
        _trainer(data, [cb, probe]).fit()
    assert list(cb.long_tail) == [1, 2, 3]
    assert all(r.recall == probe.seen[e]["test"] for e, r in cb.long_tail.items())
    assert caplog.text.count("no validation split") == 1


class _NanTau(Callback):
    """A schedule whose per-user temperatures are all NaN (no temperature view)."""

    def __init__(self, num_users):
        self.user_tau = torch.full((num_users,), float("nan"))


def test_a_failing_temperature_view_does_not_stop_training(data, caplog):
    cb = DiagnosticsCallback(every=1)
    with caplog.at_level(logging.WARNING, logger="pyg_cf"):
        hist = _trainer(data, [_NanTau(data["user"].num_nodes), cb]).fit()
    assert len(hist) == 3 and "tau_degree_spearman" not in hist.columns
    assert len(cb.records) == 6  # the magnitude view is still recorded
    assert caplog.text.count("no temperature view") == 1


def _ckpt_trainer(data, cb, epochs, folder):
    torch.manual_seed(0)
    model = GraphCF.from_data(data, "svdpp-item", embedding_dim=8)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=256,
        eval_every=1,
        progress=False,
        lr=1e-2,
        patience=None,
        checkpoint_dir=str(folder),
    )
    return Trainer(model, data, get_loss("ssm"), cfg, callbacks=[cb])


def _settings(**kw):
    return dict(every=1, keep_frames=True, long_tail=True, k=10, groups=4) | kw


def test_checkpoint_round_trip_keeps_results(data, tmp_path, caplog):
    first = DiagnosticsCallback(**_settings())
    with caplog.at_level(logging.WARNING, logger="pyg_cf"):
        _ckpt_trainer(data, first, 2, tmp_path).fit()
        resumed = DiagnosticsCallback(**_settings())
        tr = _ckpt_trainer(data, resumed, 3, tmp_path)
        assert load_checkpoint(tr, tmp_path / "last.pt") == 2
    assert "cannot be saved" not in caplog.text and "other settings" not in caplog.text
    assert resumed.records == first.records
    assert list(resumed.frames) == [1, 2] and list(resumed.long_tail) == [1, 2]
    for e in (1, 2):
        a, b = first.frames[e], resumed.frames[e]
        pd.testing.assert_frame_equal(b, a, check_exact=False, rtol=1e-6)  # float32 norms
        assert b.attrs == a.attrs
        x, y = first.long_tail[e], resumed.long_tail[e]
        pd.testing.assert_frame_equal(y.table, x.table, check_exact=True)
        assert (y.recall, y.k) == (x.recall, x.k)
        assert torch.equal(y.item_group, x.item_group.cpu())
    tr.fit()
    assert sorted({r["epoch"] for r in resumed.records}) == [1, 2, 3]
    assert list(resumed.frames) == [1, 2, 3] and list(resumed.long_tail) == [1, 2, 3]
    # the checkpoint stores squared norms as float32 and one degree column per node type
    state = read_checkpoint(tmp_path / "last.pt")["callbacks"][0]
    assert state["kind"] == "state_dict"
    frame = state["state"]["frames"][3]
    assert "degree" not in frame or not frame["degree"]
    assert all(t.dtype == torch.float32 for t in frame["sq_norm"].values())


def test_resumed_callback_keeps_its_own_settings(data, tmp_path, caplog):
    _ckpt_trainer(data, DiagnosticsCallback(every=1), 2, tmp_path).fit()
    resumed = DiagnosticsCallback(**_settings(every=2, k=5))
    tr = _ckpt_trainer(data, resumed, 4, tmp_path)
    with caplog.at_level(logging.WARNING, logger="pyg_cf"):
        load_checkpoint(tr, tmp_path / "last.pt")
    assert "other settings" in caplog.text and "'every': (1, 2)" in caplog.text
    assert resumed.every == 2 and resumed.k == 5
    assert resumed.do_long_tail and resumed.keep_frames
    assert resumed.groups == 4 and resumed.node_types == ("user", "item")
    assert [r["epoch"] for r in resumed.records] == [1, 1, 2, 2]
    tr.fit()
    assert list(resumed.long_tail) == [4] and resumed.long_tail[4].k == 5
    assert list(resumed.frames) == [4]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"k": 0}, "k must be a positive integer, got 0"),
        ({"k": 2.5}, "k must be a positive integer, got 2.5"),
        ({"k": True}, "k must be a positive integer, got True"),
        ({"groups": 0}, "groups must be a positive integer, got 0"),
        ({"groups": 2.0}, "groups must be a positive integer, got 2.0"),
        ({"split": "tset"}, "split must be 'val' or 'test', got 'tset'"),
        ({"node_types": "item"}, r"node_types must be a non-empty sequence .* got 'item'"),
        ({"node_types": ()}, "node_types must be a non-empty subset"),
        ({"node_types": ("movie",)}, "node_types must be a non-empty subset"),
    ],
)
def test_bad_settings_fail_when_the_callback_is_built(kw, match):
    # they used to fail inside on_epoch_end, after `every` epochs of training
    with pytest.raises(ConfigError, match=match):
        DiagnosticsCallback(every=2, long_tail=True, **kw)


def test_numpy_integer_settings_are_accepted():
    import numpy as np

    cb = DiagnosticsCallback(k=np.int64(5), groups=np.int64(3), node_types=["item"])
    assert (cb.k, cb.groups, cb.node_types) == (5, 3, ("item",))
    assert type(cb.k) is int and type(cb.groups) is int


class _CountBatches(Callback):
    def __init__(self):
        self.batches = 0

    def on_batch_end(self, trainer, batch, loss):
        self.batches += 1


def test_a_cutoff_beyond_the_items_fails_before_the_first_epoch_trains(data):
    num_items = data["item"].num_nodes
    counter = _CountBatches()
    cb = DiagnosticsCallback(every=2, long_tail=True, k=num_items + 1)
    tr = _trainer(data, [cb, counter])
    with pytest.raises(ConfigError, match=rf"at most the number of items \({num_items}\)"):
        tr.fit()
    assert tr.epoch == 1 and counter.batches == 0 and not cb.records
    # without the long-tail Recall k is not used: no error
    assert len(_trainer(data, [DiagnosticsCallback(every=2, k=num_items + 1)]).fit()) == 3
