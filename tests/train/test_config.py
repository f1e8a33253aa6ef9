import logging

import pytest

from pyg_cf.errors import ConfigError
from pyg_cf.train import TrainConfig


def test_a_monitor_cutoff_must_be_ascii_digits():
    """'ndcg@²' passed str.isdigit() and failed in int() with a bare ValueError."""
    with pytest.raises(ConfigError, match="monitor must look like 'ndcg@20', got 'ndcg@²'"):
        TrainConfig(monitor="ndcg@\u00b2")
    with pytest.raises(ConfigError, match="monitor must look like"):
        TrainConfig(monitor="ndcg@\u0662")  # an Arabic-Indic two


def test_min_epochs_past_epochs_is_refused_when_early_stopping_is_on():
    """Early stopping could never act: the setting was silently ignored."""
    with pytest.raises(ConfigError, match=r"min_epochs \(500\) is more than epochs \(10\)"):
        TrainConfig(min_epochs=500, epochs=10)
    # without early stopping min_epochs decides nothing (a refit keeps its run's settings)
    assert TrainConfig(min_epochs=500, epochs=10, patience=None).min_epochs == 500
    assert TrainConfig(min_epochs=10, epochs=10).min_epochs == 10


@pytest.mark.parametrize("extra", [None, [("a", 1)], "notes"])
def test_extra_must_be_a_dict(extra):
    with pytest.raises(ConfigError, match="extra must be a dict"):
        TrainConfig(extra=extra)


def test_patience_without_scheduled_evaluations_warns(monkeypatch, caplog):
    """With eval_every=0 only the last epoch is evaluated: patience can never act. A warning
    (not an error: patience is on by default, and eval_every=0 with it asks for one final
    evaluation in examples and scripts)."""
    import pyg_cf.train.config as config_mod

    monkeypatch.setattr(config_mod, "_WARNED_NO_PATIENCE", set(), raising=False)
    with caplog.at_level(logging.WARNING, logger="pyg_cf"):
        TrainConfig(eval_every=0, patience=None)
        assert "has no effect" not in caplog.text
        TrainConfig(eval_every=0, patience=3)
        TrainConfig(eval_every=0, patience=3)
    assert caplog.text.count("eval_every=0 evaluates only the last epoch: patience=3") == 1
