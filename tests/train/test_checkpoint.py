import os
import pickle

import pandas as pd
import pytest
import torch

from pyg_cf.data import from_dataframe
from pyg_cf.errors import PygCFError
from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import (
    Callback,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from pyg_cf.train.checkpoint import read_checkpoint


def clustered(n_users=40, n_items=30, n=900, seed=0):
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(n_users, (n,), generator=g)
    half = n_items // 2
    items = torch.randint(half, (n,), generator=g) + (users % 2) * half
    return from_dataframe(pd.DataFrame({"user": users.numpy(), "item": items.numpy()}), seed=0)


class Interrupt(Exception):
    pass


class StopAt(Callback):
    """Simulates a killed process: raises at the start of epoch ``epoch``."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            raise Interrupt

    # a stateless callback: its settings are not part of the run's state
    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def build(data, case, ckpt_dir, extra_callbacks=(), init_seed=0):
    torch.manual_seed(init_seed)
    kind, loss_name, loss_kw, cfg_kw = case
    model = GraphCF.from_data(data, kind, embedding_dim=8)
    cfg = TrainConfig(
        epochs=4,
        batch_size=64,
        lr=0.02,
        l2_reg=1e-4,
        seed=3,
        patience=None,
        progress=False,
        checkpoint_dir=str(ckpt_dir) if ckpt_dir is not None else None,
        **cfg_kw,
    )
    return Trainer(model, data, get_loss(loss_name, **loss_kw), cfg, list(extra_callbacks))


CASES = {
    "lightgcn-ssm-inbatch": ("lightgcn", "ssm", {"tau": 0.2}, {}),
    "mf-bpr-sampled": ("mf", "bpr", {}, {}),
    "lightgcn-ssm-neighbor-sampled": (
        "lightgcn",
        "ssm",
        {"tau": 0.2, "negatives": "sampled", "num_negatives": 4},
        {"mode": "sampled", "num_neighbors": (5, 3, 2)},
    ),
    # user dropout draws from torch's global generator: the checkpoint must restore it
    "lightgcn-bpr-user-dropout": ("lightgcn", "bpr", {}, {"user_dropout": 0.3}),
}


def metrics_only(hist):
    return hist[[c for c in hist.columns if not c.endswith("_s")]]


@pytest.mark.parametrize("name", list(CASES))
def test_resume_is_bit_identical(tmp_path, name):
    data = clustered()
    case = CASES[name]
    seed_everything(0)
    full = build(data, case, None)
    hist_full = full.fit()
    emb_full = full.model.embeddings()

    # the same run killed at the start of epoch 3, after the checkpoint of epoch 2
    seed_everything(0)
    first = build(data, case, tmp_path, extra_callbacks=[StopAt(3)])
    with pytest.raises(Interrupt):
        first.fit()
    ckpt = tmp_path / "last.pt"
    assert ckpt.is_file()
    # disturb every random state the resumed process could inherit
    seed_everything(12345)
    second = build(data, case, tmp_path, extra_callbacks=[StopAt(-1)], init_seed=99)
    assert load_checkpoint(second, ckpt) == 2
    hist_resumed = second.fit()
    emb_resumed = second.model.embeddings()

    assert torch.equal(emb_full[0], emb_resumed[0])
    assert torch.equal(emb_full[1], emb_resumed[1])
    pd.testing.assert_frame_equal(metrics_only(hist_full), metrics_only(hist_resumed))
    assert len(hist_resumed) == 4


def test_resume_with_adaptive_temperature_callback(tmp_path):
    from pyg_cf.losses.temperature import AdapTau

    data = clustered()
    case = CASES["lightgcn-ssm-inbatch"]
    seed_everything(0)
    full = build(data, case, None, extra_callbacks=[StopAt(-1), AdapTau()])
    hist_full = full.fit()
    seed_everything(0)
    first = build(data, case, tmp_path, extra_callbacks=[StopAt(3), AdapTau()])
    with pytest.raises(Interrupt):
        first.fit()
    second = build(data, case, tmp_path, extra_callbacks=[StopAt(-1), AdapTau()], init_seed=5)
    load_checkpoint(second, tmp_path / "last.pt")
    hist_resumed = second.fit()
    assert torch.equal(full.model.embeddings()[0], second.model.embeddings()[0])
    pd.testing.assert_frame_equal(metrics_only(hist_full), metrics_only(hist_resumed))


def test_history_with_an_unstorable_value_still_gives_a_readable_checkpoint(tmp_path, caplog):
    # one unstorable value used to keep the row's other values unconverted: a numpy scalar
    # was written raw and weights_only loading refused the whole checkpoint
    import numpy as np

    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path)
    # numpy.float64 is a Python float subclass: it was stored as it is, unreadable
    tr.history = [{"epoch": 1, "loss": 0.5, "gap": np.float64(0.25)}]
    save_checkpoint(tr, tmp_path / "np.pt")
    assert torch.load(tmp_path / "np.pt", weights_only=True)["history"][0]["gap"] == 0.25
    assert "left out" not in caplog.text
    tr.history = [{"epoch": 1, "loss": 0.5, "gap": np.float64(0.25), "note": object()}]
    save_checkpoint(tr, tmp_path / "odd.pt")
    assert "['note']" in caplog.text and "left out" in caplog.text
    state = torch.load(tmp_path / "odd.pt", weights_only=True)
    assert state["history"] == [{"epoch": 1, "loss": 0.5, "gap": 0.25}]
    load_checkpoint(build(data, CASES["mf-bpr-sampled"], tmp_path), tmp_path / "odd.pt")


def test_checkpoint_is_plain_data_loaded_with_weights_only(tmp_path):
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path)
    tr.config.epochs = 1
    tr.fit()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert set(state["rng"]) == {
        "python", "numpy", "torch", "generator", "generator_device", "cuda", "cuda_device"
    }  # fmt: skip
    assert state["rng"]["cuda"] == []  # a CPU trainer holds no CUDA random state
    assert state["rng"]["generator_device"] == "cpu"
    assert "user_embedding.weight" in state["model"]
    assert state["optimizer"]["state"], "Adam moments must be saved"


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_arbitrary_pickles_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "pyg-cf-checkpoint-2", "x": Evil()}, f)
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], None)
    # a plain pickle is no torch.save file: weights_only loading stops at its framing
    with pytest.raises(PygCFError, match=r"not written by torch\.save"):
        load_checkpoint(tr, path)
    assert not (tmp_path / "pwned").exists()
    # written by torch.save, the object is refused by name
    torch.save({"format": "pyg-cf-checkpoint-2", "x": Evil()}, path)
    with pytest.raises(PygCFError, match=r"could not be read safely .*GLOBAL \w+\.system"):
        load_checkpoint(tr, path)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_for_other_data_is_refused(tmp_path):
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path)
    tr.config.epochs = 1
    tr.fit()
    other = clustered(seed=1)  # same sizes, other interactions
    tr2 = build(other, CASES["mf-bpr-sampled"], None)
    with pytest.raises(PygCFError, match="written for other data"):
        load_checkpoint(tr2, tmp_path / "last.pt")


def test_missing_and_foreign_files_are_reported(tmp_path):
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], None)
    with pytest.raises(PygCFError, match="does not exist"):
        load_checkpoint(tr, tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(PygCFError, match="not a pyg-cf checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_model_of_other_size_is_refused(tmp_path):
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path)
    tr.config.epochs = 1
    tr.fit()
    model = GraphCF.from_data(data, "mf", embedding_dim=4)  # other dim
    tr2 = Trainer(model, data, get_loss("bpr"), TrainConfig(progress=False))
    with pytest.raises(PygCFError, match="does not fit this model"):
        load_checkpoint(tr2, tmp_path / "last.pt")


def test_a_callback_state_that_cannot_be_saved_safely_is_named(tmp_path):
    class Unsafe(Callback):
        def state_dict(self):
            return {"fn": print}  # not plain data: a weights-only load could not read it

        def load_state_dict(self, state):
            pass

    tr = build(clustered(), CASES["mf-bpr-sampled"], None, extra_callbacks=[Unsafe()])
    with pytest.raises(PygCFError, match=r"Unsafe\.state_dict\(\) returned objects that cannot"):
        save_checkpoint(tr, tmp_path / "last.pt")
    assert not (tmp_path / "last.pt").exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], None)
    path = tmp_path / "last.pt"
    save_checkpoint(tr, path)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    tr.epoch = 7
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tr, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class PoisonAt(Callback):
    """Turns the embeddings into NaN at the start of epoch ``epoch``."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_start(self, trainer, epoch):
        if epoch == self.epoch:
            with torch.no_grad():
                trainer.model.user_embedding.weight.fill_(float("nan"))


def test_nan_loss_keeps_last_good_checkpoint(tmp_path):
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path, extra_callbacks=[PoisonAt(3)])
    with pytest.raises(NonFiniteLossError, match=r"epoch 3, batch 0.*last good checkpoint is"):
        tr.fit()
    state = read_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2
    assert torch.isfinite(state["model"]["user_embedding.weight"]).all()
    fresh = build(data, CASES["mf-bpr-sampled"], None, extra_callbacks=[PoisonAt(-1)])
    assert load_checkpoint(fresh, tmp_path / "last.pt") == 2
    assert torch.isfinite(fresh.model.user_embedding.weight).all()


def test_nan_loss_before_any_checkpoint_does_not_point_at_one(tmp_path):
    # the message used to name last.pt as "the last good checkpoint" though none existed
    tr = build(clustered(), CASES["mf-bpr-sampled"], tmp_path, extra_callbacks=[PoisonAt(1)])
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, .*no checkpoint was written yet"):
        tr.fit()
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("recorded", [True, False])
def test_checkpoint_from_another_device_resumes_with_a_warning(tmp_path, caplog, recorded):
    """A checkpoint whose sampling generator ran on CUDA (a 16-byte Philox state) loads
    into a CPU trainer: weights, optimizer and history exactly, the generator re-seeded
    with a warning that names the change — also for checkpoints that predate the recorded
    device (told apart by the state's size)."""
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path)
    tr.config.epochs = 1
    tr.fit()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    state["rng"]["generator"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's size
    if recorded:
        state["rng"]["generator_device"] = "cuda"
    else:
        del state["rng"]["generator_device"]
    torch.save(state, tmp_path / "gpu.pt")
    other = build(data, CASES["mf-bpr-sampled"], tmp_path / "other")
    other.config.epochs = 2
    with caplog.at_level("WARNING"):
        assert load_checkpoint(other, tmp_path / "gpu.pt") == 1
    assert "generator was on cuda, this trainer's is on cpu" in caplog.text
    assert torch.equal(other.model.embeddings()[0], tr.model.embeddings()[0])
    assert len(other.fit()) == 2


def _two_cluster_data():
    users = torch.randint(60, (1500,), generator=torch.Generator().manual_seed(0))
    items = torch.randint(20, (1500,), generator=torch.Generator().manual_seed(1))
    items = items + (users % 2) * 20
    df = pd.DataFrame({"user": users.numpy(), "item": items.numpy()})
    return from_dataframe(df, ratios=(0.7, 0.1, 0.2), seed=0)


def _mf_bpr_trainer(data, epochs: int, patience, ckpt) -> Trainer:
    """A seeded MF + BPR trainer on ``data`` (8-dimensional, batch 64, lr 0.05)."""
    torch.manual_seed(0)
    model = GraphCF.from_data(data, "mf", embedding_dim=8)
    cfg = TrainConfig(
        epochs=epochs, batch_size=64, lr=0.05, patience=patience, progress=False,
        checkpoint_dir=ckpt,
    )  # fmt: skip
    return Trainer(model, data, get_loss("bpr"), cfg)


def test_resuming_an_early_stopped_run_stays_stopped(tmp_path):
    """The checkpoint of the evaluation that stopped a run resumes to the same run: no
    further epoch is trained (it could even move the selected best weights)."""
    data = _two_cluster_data()

    def make():
        torch.manual_seed(0)
        model = GraphCF.from_data(data, "mf", embedding_dim=8)
        cfg = TrainConfig(
            epochs=40, batch_size=64, lr=0.05, patience=1, progress=False,
            checkpoint_dir=str(tmp_path),
        )  # fmt: skip
        return Trainer(model, data, get_loss("bpr"), cfg)

    first = make()
    hist = first.fit()
    assert len(hist) < 40  # stopped early
    resumed = make()
    assert load_checkpoint(resumed, tmp_path / "last.pt") == len(hist)
    again = resumed.fit()
    assert len(again) == len(hist)
    pd.testing.assert_frame_equal(metrics_only(again), metrics_only(hist))
    assert torch.equal(resumed.model.embeddings()[0], first.model.embeddings()[0])


class _EpochClock(Callback):
    """A fake clock for the trainer: one second per epoch, advanced at each epoch's start
    (so training and evaluation take no time and the budget arithmetic is exact)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def on_epoch_start(self, trainer, epoch):
        self.now += 1.0

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.mark.parametrize("budget,more", [(2.5, None), (2.5, 5.5)])
def test_resuming_a_run_its_time_budget_ended(tmp_path, monkeypatch, budget, more):
    """Under the same budget the resumed run stays stopped (it trained one more epoch); a
    larger budget continues it as an uninterrupted run with that budget."""
    import pyg_cf.train.trainer as trainer_mod

    data = _two_cluster_data()

    def make(b):
        clock = _EpochClock()
        monkeypatch.setattr(trainer_mod, "time", clock)
        torch.manual_seed(0)
        model = GraphCF.from_data(data, "mf", embedding_dim=8)
        cfg = TrainConfig(
            epochs=40, batch_size=64, lr=0.05, patience=None, time_budget_s=b,
            progress=False, checkpoint_dir=str(tmp_path / str(b)),
        )  # fmt: skip
        return Trainer(model, data, get_loss("bpr"), cfg, [clock]), clock

    first, _ = make(budget)
    hist = first.fit()
    assert len(hist) == 3 and first.budget_reached  # 3 s >= 2.5 s
    ckpt = tmp_path / str(budget) / "last.pt"
    if more is None:
        resumed, clock = make(budget)
        load_checkpoint(resumed, ckpt)
        clock.now = float(hist["elapsed_s"].iloc[-1])
        again = resumed.fit()
        assert len(again) == 3
        assert torch.equal(resumed.model.embeddings()[0], first.model.embeddings()[0])
        return
    whole, _ = make(more)
    hist_whole = whole.fit()
    assert len(hist_whole) == 6
    resumed, clock = make(more)
    load_checkpoint(resumed, ckpt)
    again = resumed.fit()
    assert len(again) == 6
    pd.testing.assert_frame_equal(metrics_only(again), metrics_only(hist_whole))
    assert torch.equal(resumed.model.embeddings()[0], whole.model.embeddings()[0])


def test_a_larger_patience_on_resume_continues_as_an_uninterrupted_run(tmp_path, caplog):
    """Patience only decides when to stop, not what an epoch computes: a run stopped early
    at patience 1 and resumed with patience 4 equals the run made with patience 4 from the
    start, and the resume does not warn about changed settings."""
    data = _two_cluster_data()

    def make(patience, ckpt):
        return _mf_bpr_trainer(data, 30, patience, ckpt)

    straight = make(4, None)
    hist = straight.fit()
    short = make(1, str(tmp_path)).fit()
    assert len(short) < len(hist)  # the smaller patience stopped first
    resumed = make(4, str(tmp_path))
    with caplog.at_level("WARNING", logger="pyg_cf"):
        assert load_checkpoint(resumed, tmp_path / "last.pt") == len(short)
    assert "changed settings" not in caplog.text
    again = resumed.fit()
    pd.testing.assert_frame_equal(metrics_only(again), metrics_only(hist))
    assert torch.equal(resumed.model.embeddings()[0], straight.model.embeddings()[0])


@pytest.mark.parametrize(("eval_every", "first", "total"), [(0, 3, 6), (2, 3, 6), (4, 5, 8)])
def test_a_longer_resume_drops_the_last_epochs_off_schedule_evaluation(
    tmp_path, eval_every, first, total
):
    """A run of ``first`` epochs evaluates its last epoch even off the ``eval_every``
    schedule; resumed with more epochs, that evaluation must neither be a candidate best
    nor count for patience nor stay in the history, as the uninterrupted run never made
    it (it used to: the resumed run restored the weights of epoch ``first``)."""
    data = _two_cluster_data()

    def make(epochs, ckpt):
        torch.manual_seed(0)
        model = GraphCF.from_data(data, "mf", embedding_dim=8)
        cfg = TrainConfig(
            epochs=epochs, batch_size=64, lr=0.2, patience=None, eval_every=eval_every,
            progress=False, checkpoint_dir=ckpt,
        )  # fmt: skip
        return Trainer(model, data, get_loss("bpr"), cfg)

    straight = make(total, None)
    hist = straight.fit()
    short = make(first, str(tmp_path)).fit()
    assert short["val_ndcg@20"].notna().iloc[-1]  # the off-schedule evaluation was made
    resumed = make(total, None)
    assert load_checkpoint(resumed, tmp_path / "last.pt") == first
    again = resumed.fit()
    pd.testing.assert_frame_equal(metrics_only(again), metrics_only(hist))
    assert resumed.best_score == straight.best_score
    assert torch.equal(resumed.model.embeddings()[0], straight.model.embeddings()[0])
    # resumed with the same epoch count, the run is finished: its evaluation stays
    same = make(first, None)
    load_checkpoint(same, tmp_path / "last.pt")
    pd.testing.assert_frame_equal(metrics_only(same.fit()), metrics_only(short))


def test_a_resume_with_fewer_epochs_than_run_warns(tmp_path, caplog):
    """It trained nothing, quietly."""
    data = _two_cluster_data()

    def make(epochs, ckpt):
        model = GraphCF.from_data(data, "mf", embedding_dim=8)
        cfg = TrainConfig(epochs=epochs, batch_size=64, progress=False, checkpoint_dir=ckpt)
        return Trainer(model, data, get_loss("bpr"), cfg)

    make(3, str(tmp_path)).fit()
    for epochs, warned in ((2, True), (3, False)):
        tr = make(epochs, None)
        load_checkpoint(tr, tmp_path / "last.pt")
        caplog.clear()
        with caplog.at_level("WARNING", logger="pyg_cf"):
            assert len(tr.fit()) == 3
        assert ("past epochs=2" in caplog.text) is warned


@pytest.mark.parametrize(
    ("kind", "model_kw", "loss_name", "match"),
    [
        ("mf", {}, "ssm", "another model"),  # MF and LightGCN share their parameters
        ("lightgcn", {"num_layers": 2}, "ssm", "another model"),
        ("svdpp-user", {}, "ssm", "another model"),
        ("lightgcn", {}, "bpr", "written with loss SampledSoftmaxLoss"),
    ],
)
def test_resume_into_another_model_or_loss_is_refused(tmp_path, kind, model_kw, loss_name, match):
    """Weights of the same shapes are no proof of the same run: the model's propagation
    settings and the loss's class are checked too (the loss's saved attributes would be
    set on an object of another class)."""
    data = clustered()
    tr = build(data, CASES["lightgcn-ssm-inbatch"], tmp_path)
    tr.config.epochs = 1
    tr.fit()
    model = GraphCF.from_data(data, kind, embedding_dim=8, **model_kw)
    other = Trainer(model, data, get_loss(loss_name), TrainConfig(progress=False))
    with pytest.raises(PygCFError, match=match):
        load_checkpoint(other, tmp_path / "last.pt")
    same = build(data, CASES["lightgcn-ssm-inbatch"], None)
    assert load_checkpoint(same, tmp_path / "last.pt") == 1


def test_resume_with_other_loss_settings_is_refused(tmp_path):
    """The saved loss attributes would silently replace another ``tau`` (or number of
    negatives) given to the resumed run; a schedule's later changes are no difference
    (``test_resume_with_adaptive_temperature_callback``)."""
    data = clustered()
    tr = build(data, CASES["lightgcn-ssm-inbatch"], tmp_path)
    tr.config.epochs = 1
    tr.fit()
    case = ("lightgcn", "ssm", {"tau": 0.5}, {})
    with pytest.raises(PygCFError, match=r"other loss settings .*'tau': \(0.2, 0.5\)"):
        load_checkpoint(build(data, case, None), tmp_path / "last.pt")


def test_callback_attributes_left_out_of_a_checkpoint_are_named_once(tmp_path, caplog):
    # they were dropped silently: a resumed run's callback then lacked them
    class Keeps(Callback):
        def __init__(self):
            self.count = 3  # saved
            self.frames = {1: object()}  # not storable
            self._cache = object()  # private: not reported

    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path, extra_callbacks=[Keeps()])
    save_checkpoint(tr, tmp_path / "a.pt")
    save_checkpoint(tr, tmp_path / "b.pt")
    assert caplog.text.count("Keeps attribute(s) ['frames']") == 1
    saved = torch.load(tmp_path / "a.pt", weights_only=True)["callbacks"]
    assert {"type": "Keeps", "kind": "attributes", "state": {"count": 3}} in saved


def test_adaptive_temperature_checkpoints_without_an_unsaved_attribute_warning(tmp_path, caplog):
    """AdapTau0's per-epoch statistics are recomputed at each epoch start: not state, and
    no alarming "cannot be saved" warning (the documented smoke runs printed one)."""
    from pyg_cf.losses.temperature import AdapTau
    from pyg_cf.train import checkpoint as ckpt_mod

    ckpt_mod._WARNED_DROPPED.clear()
    data = clustered()
    tr = build(data, CASES["lightgcn-ssm-inbatch"], tmp_path, extra_callbacks=[AdapTau()])
    tr.config.epochs = 1
    with caplog.at_level("WARNING"):
        tr.fit()
    assert (tmp_path / "last.pt").is_file()
    assert "cannot be saved" not in caplog.text
    assert tr.callbacks[0].last is not None and tr.history[-1]["tau0"] > 0


def test_changed_training_settings_warn_by_default_and_are_refused_when_strict(tmp_path, caplog):
    """Another learning rate changes what the resumed epochs compute: the default resume
    names it in a warning, ``strict=True`` refuses before touching the trainer, and a
    free setting (a longer run) passes either way."""
    data = _two_cluster_data()

    def make(lr, epochs=2):
        torch.manual_seed(0)
        model = GraphCF.from_data(data, "mf", embedding_dim=8)
        cfg = TrainConfig(
            epochs=epochs, batch_size=64, lr=lr, progress=False, checkpoint_dir=str(tmp_path)
        )
        return Trainer(model, data, get_loss("bpr"), cfg)

    make(0.05).fit()
    ckpt = tmp_path / "last.pt"
    other = make(0.01)
    before = other.model.embeddings()[0].clone()
    with pytest.raises(PygCFError, match=r"other training settings.*'lr': \(0\.05, 0\.01\)"):
        load_checkpoint(other, ckpt, strict=True)
    assert other.epoch == 0 and other.history == []
    assert torch.equal(other.model.embeddings()[0], before)
    with caplog.at_level("WARNING", logger="pyg_cf"):
        assert load_checkpoint(other, ckpt) == 2
    assert "changed settings" in caplog.text and "'lr': (0.05, 0.01)" in caplog.text
    caplog.clear()
    longer = make(0.05, epochs=5)
    with caplog.at_level("WARNING", logger="pyg_cf"):
        assert load_checkpoint(longer, ckpt, strict=True) == 2
    assert "changed settings" not in caplog.text


def _trained_mf(data, tmp_path, dim=8, callbacks=()):
    torch.manual_seed(0)
    model = GraphCF.from_data(data, "mf", embedding_dim=dim)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, progress=False, checkpoint_dir=tmp_path)
    return Trainer(model, data, get_loss("bpr"), cfg, callbacks=list(callbacks))


def test_a_refused_resume_leaves_the_trainer_as_built(tmp_path):
    """Other callbacks, or weights of other sizes, are refused before anything is loaded:
    a later fit() must not continue half of the saved run."""

    class Counter(Callback):
        def __init__(self):
            self.n = 0

    data = _two_cluster_data()
    _trained_mf(data, str(tmp_path)).fit()
    ckpt = tmp_path / "last.pt"
    for other, match in [
        (_trained_mf(data, None, callbacks=[Counter()]), r"callbacks \[\], this trainer has"),
        (_trained_mf(data, None, dim=16), r"size mismatch for"),
    ]:
        before = {k: v.clone() for k, v in other.model.state_dict().items()}
        with pytest.raises(PygCFError, match=match):
            load_checkpoint(other, ckpt)
        assert other.epoch == 0 and other.history == [] and other.bad_evals == 0
        after = other.model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert other.optimizer.state_dict()["state"] == {}


def test_weights_of_other_sizes_are_named_in_the_error(tmp_path):
    """torch's heading alone ('Error(s) in loading state_dict for GraphCF:') said nothing."""
    from pyg_cf.train.checkpoint import load_weights

    data = _two_cluster_data()
    _trained_mf(data, str(tmp_path)).fit()
    wide = _trained_mf(data, None, dim=16)
    with pytest.raises(PygCFError, match=r"size mismatch for .*torch.Size\(\[\d+, 8\]\)"):
        load_weights(wide, tmp_path / "last.pt")


def test_a_damaged_checkpoint_is_named_as_such_not_as_an_unsafe_one(tmp_path):
    """Truncated, empty and garbage files were all reported as "could not be read safely
    (weights_only=True refuses ...)", with torch's advice to load with weights_only=False:
    unsafe, and no help for a damaged file."""
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path)
    tr.config.epochs = 1
    tr.fit()
    raw = (tmp_path / "last.pt").read_bytes()
    for name, blob in [("truncated", raw[: len(raw) // 2]), ("empty", b""), ("zeros", bytes(100))]:
        path = tmp_path / f"{name}.pt"
        path.write_bytes(blob)
        with pytest.raises(PygCFError) as err:
            load_checkpoint(build(data, CASES["mf-bpr-sampled"], None), path)
        message = str(err.value)
        assert message.startswith(f"checkpoint {path} is corrupt or truncated"), message
        assert "weights_only" not in message and "safely" not in message
        assert ("(the file is empty)" in message) == (name == "empty")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_checkpoint_gets_the_mode_the_umask_gives(tmp_path, umask):
    """mkstemp made the file 0600 and the rename kept it: others the umask lets read a
    file could not read the checkpoints."""
    import stat

    tr = build(clustered(), CASES["mf-bpr-sampled"], None)
    old = os.umask(umask)
    try:
        save_checkpoint(tr, tmp_path / "last.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "last.pt").st_mode) == 0o666 & ~umask


def test_the_writer_is_rank_0_of_the_trainers_process_group(tmp_path, monkeypatch):
    """Only world rank 0 wrote: a trainer on a process group without it never saved."""
    import torch.distributed as dist

    tr = build(clustered(), CASES["mf-bpr-sampled"], None)
    group, other = object(), object()
    ranks = {None: 1, group: 0, other: -1}  # world rank 1; rank 0 of group; not in other
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda g=None: ranks[g])
    tr.group = group
    save_checkpoint(tr, tmp_path / "group.pt")
    tr.group = other
    save_checkpoint(tr, tmp_path / "other.pt")
    tr.group = None
    save_checkpoint(tr, tmp_path / "world.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group.pt"]


def test_nan_loss_names_only_a_checkpoint_of_this_run(tmp_path):
    """Another run's last.pt in the folder was named "the last good checkpoint"; one this
    trainer loaded is (and stays so until the run writes its own)."""
    data = clustered()
    first = build(data, CASES["mf-bpr-sampled"], tmp_path, extra_callbacks=[PoisonAt(-1)])
    first.config.epochs = 1
    first.fit()
    ckpt = tmp_path / "last.pt"
    other = build(clustered(n_users=50, seed=1), CASES["mf-bpr-sampled"], tmp_path, [PoisonAt(1)])
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet") as err:
        other.fit()
    assert "last good checkpoint" not in str(err.value)
    resumed = build(data, CASES["mf-bpr-sampled"], None, extra_callbacks=[PoisonAt(2)])
    assert load_checkpoint(resumed, ckpt) == 1
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 0; the last good checkpoint is"):
        resumed.fit()


def test_changed_callback_settings_warn_or_are_refused_and_run_state_is_restored(tmp_path, caplog):
    """A callback's saved attributes replaced the resumed callback's settings silently
    (another ``tau``, another warm-up). Changed settings now warn, naming the callback and
    setting, and stay; ``strict`` refuses them; what changed during the run (AdapTau0's
    ``records``) is restored. Checkpoints without the recorded settings load as before."""
    from pyg_cf.losses.temperature import AdapTau0, FixedTemperature

    data = clustered()
    case = CASES["lightgcn-ssm-inbatch"]

    def make(tau, warmup, ckpt=None):
        cbs = [FixedTemperature(tau), AdapTau0(warmup_epochs=warmup)]
        tr = build(data, case, ckpt, extra_callbacks=cbs)
        tr.config.epochs = 2
        return tr

    first = make(0.1, 3, tmp_path)
    first.fit()
    records = first.callbacks[1].records
    assert len(records) == 2
    ckpt = tmp_path / "last.pt"
    changed = make(0.5, 1)
    with pytest.raises(
        PygCFError,
        match=r"other callback settings .*'FixedTemperature': \{'tau': \(0\.1, 0\.5\)\}, "
        r"'AdapTau0': \{'warmup_epochs': \(3, 1\)\}",
    ):
        load_checkpoint(changed, ckpt, strict=True)
    assert changed.epoch == 0 and changed.callbacks[1].records == []
    with caplog.at_level("WARNING", logger="pyg_cf"):
        assert load_checkpoint(changed, ckpt) == 2
    assert "changed callback settings" in caplog.text
    assert "'tau': (0.1, 0.5)" in caplog.text and "'warmup_epochs': (3, 1)" in caplog.text
    assert changed.callbacks[0].tau == 0.5 and changed.callbacks[1].warmup_epochs == 1
    assert changed.callbacks[1].records == records
    caplog.clear()
    same = make(0.1, 3)
    with caplog.at_level("WARNING", logger="pyg_cf"):
        assert load_checkpoint(same, ckpt, strict=True) == 2
    assert "callback settings" not in caplog.text and same.callbacks[1].records == records
    # a checkpoint written before the settings were recorded: nothing to compare
    state = torch.load(ckpt, weights_only=True)
    del state["callback_settings"]
    torch.save(state, tmp_path / "older.pt")
    older = make(0.5, 1)
    assert load_checkpoint(older, tmp_path / "older.pt", strict=True) == 2
    assert older.callbacks[1].warmup_epochs == 3 and older.callbacks[1].records == records


def test_load_weights_loads_the_last_or_the_selected_best_weights(tmp_path):
    """After an early stop last.pt holds weights ``patience`` evaluations past the best
    ones, which sat unused in the same file."""
    from pyg_cf.errors import ConfigError
    from pyg_cf.train.checkpoint import load_weights

    data = _two_cluster_data()

    def make(ckpt, patience, data=data):
        return _mf_bpr_trainer(data, 40, patience, ckpt)

    first = make(str(tmp_path), 1)
    hist = first.fit()
    best = int(hist.loc[hist["best"].eq(True), "epoch"].iloc[-1])
    assert best < len(hist) < 40
    ckpt = tmp_path / "last.pt"
    warm = make(None, 1)
    assert load_weights(warm, ckpt) == len(hist)
    last = read_checkpoint(ckpt)["model"]["user_embedding.weight"]
    assert torch.equal(warm.model.user_embedding.weight, last)
    assert load_weights(warm, ckpt, which="best") == best
    assert torch.equal(warm.model.user_embedding.weight, first.model.user_embedding.weight)
    with pytest.raises(ConfigError, match="which must be 'last' or 'best'"):
        load_weights(warm, ckpt, which="first")  # type: ignore[arg-type]
    # without a validation split no weights are selected
    users = torch.randint(60, (1500,), generator=torch.Generator().manual_seed(0))
    items = torch.randint(40, (1500,), generator=torch.Generator().manual_seed(1))
    df = pd.DataFrame({"user": users.numpy(), "item": items.numpy()})
    no_val = from_dataframe(df, ratios=(0.8, 0.2), seed=0)
    run = make(str(tmp_path / "no_val"), None, no_val)
    run.config.epochs = 1
    run.fit()
    with pytest.raises(PygCFError, match="holds no best weights"):
        load_weights(make(None, None, no_val), tmp_path / "no_val" / "last.pt", which="best")


def test_resume_with_other_allocator_or_cuda_graph_settings_is_no_change(tmp_path, caplog):
    """``retain_cpu_memory`` tunes the allocator and ``cuda_graphs`` launches the same
    kernels on the same numbers: a strict resume refused them as changed settings."""
    import json

    data = _two_cluster_data()
    _trained_mf(data, str(tmp_path)).fit()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    saved = json.loads(state["config"])
    saved.update(retain_cpu_memory=True, cuda_graphs=True)  # as a GPU run would save them
    state["config"] = json.dumps(saved, sort_keys=True)
    torch.save(state, tmp_path / "gpu.pt")
    with caplog.at_level("WARNING", logger="pyg_cf"):
        assert load_checkpoint(_trained_mf(data, None), tmp_path / "gpu.pt", strict=True) == 2
    assert "changed settings" not in caplog.text


def _no_all_devices(*args, **kwargs):
    raise AssertionError("get_rng_state_all would create a context on every GPU")


def test_cpu_trainer_checkpoint_reads_no_cuda_random_state(tmp_path, monkeypatch):
    """On a machine with GPUs, a CPU trainer's checkpoint must not touch them (reading
    every device's state creates a CUDA context on each)."""
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", _no_all_devices)
    monkeypatch.setattr(torch.cuda, "get_rng_state", _no_all_devices)
    save_checkpoint(tr, tmp_path / "cpu.pt")
    state = torch.load(tmp_path / "cpu.pt", weights_only=True)
    assert state["rng"]["cuda"] == [] and state["rng"]["cuda_device"] == -1


@pytest.mark.parametrize(("device", "current", "expected"), [("cuda:1", 0, 1), ("cuda", 2, 2)])
def test_cuda_trainer_checkpoint_reads_its_own_device_only(monkeypatch, device, current, expected):
    from types import SimpleNamespace

    from pyg_cf.train import checkpoint

    seen = []

    def one_device(index):
        seen.append(index)
        return torch.full((8,), index, dtype=torch.uint8)

    monkeypatch.setattr(torch.cuda, "get_rng_state_all", _no_all_devices)
    monkeypatch.setattr(torch.cuda, "get_rng_state", one_device)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    fake = SimpleNamespace(device=torch.device(device), generator=torch.Generator())
    rng = checkpoint._rng_state(fake)  # type: ignore[arg-type]
    assert seen == [expected] and rng["cuda_device"] == expected
    assert torch.equal(rng["cuda"][0], torch.full((8,), expected, dtype=torch.uint8))
    # restored onto the loading trainer's device (here another index)
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: restored.append((s, i)))
    loader = SimpleNamespace(device=torch.device("cuda:3"), generator=torch.Generator())
    checkpoint._set_rng_state(loader, rng)  # type: ignore[arg-type]
    assert len(restored) == 1 and restored[0][1] == 3
    assert torch.equal(restored[0][0], rng["cuda"][0])


def test_checkpoint_with_every_devices_cuda_state_still_loads(tmp_path):
    """Checkpoints written before the one-device CUDA state (a list of every device's
    states, no ``cuda_device``) load as before."""
    data = clustered()
    tr = build(data, CASES["mf-bpr-sampled"], tmp_path)
    tr.config.epochs = 1
    tr.fit()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    del state["rng"]["cuda_device"]
    torch.save(state, tmp_path / "old.pt")
    other = build(data, CASES["mf-bpr-sampled"], tmp_path / "other")
    other.config.epochs = 2
    assert load_checkpoint(other, tmp_path / "old.pt") == 1
    assert len(other.fit()) == 2
