import pytest

from pyg_cf.data.synthetic import power_law_bipartite
from pyg_cf.diagnostics import DiagnosticsCallback, LongTailRecall
from pyg_cf.errors import ConfigError
from pyg_cf.losses import get_loss
from pyg_cf.losses.temperature import AdapTau
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer


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
    import logging
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
