"""The ``python -m pyg_cf train`` command line on bundled real data (tiny step budgets)."""

import json

import pytest

from pyg_cf import __main__ as cli

BASE = "train --dataset ml-1m --model mf --loss bpr --max-steps 3 --quiet --eval-every 1"


def test_resume_continues_the_same_run(tmp_path, capsys):
    ck = tmp_path / "ck"
    straight, first, second = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert cli.main([*BASE.split(), "--epochs", "2", "--output", str(straight)]) == 0
    run = [*BASE.split(), "--checkpoint-dir", str(ck), "--resume"]
    assert cli.main([*run, "--epochs", "1", "--output", str(first)]) == 0
    assert (ck / "last.pt").exists()
    capsys.readouterr()
    assert cli.main([*run, "--epochs", "2", "--output", str(second)]) == 0
    # a restart with the same seed would give the same numbers: the resume itself shows
    # in its message and in epoch 1's row, read back from the checkpoint (timings too)
    assert f"resumed from {ck / 'last.pt'} after epoch 1" in capsys.readouterr().out
    a = json.loads(straight.read_text())
    b = json.loads(first.read_text())
    c = json.loads(second.read_text())
    assert c["history"][0] == b["history"][0]
    assert [r["epoch"] for r in c["history"]] == [1, 2]
    assert c["test"]["recall@20"] == pytest.approx(a["test"]["recall@20"], abs=1e-7)
    assert c["history"][1]["loss"] == pytest.approx(a["history"][1]["loss"], rel=1e-6)


def test_resume_needs_a_checkpoint_dir(capsys):
    assert cli.main([*BASE.split(), "--epochs", "1", "--resume"]) == 2
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err


def _spy_trainers(monkeypatch):
    """The (config, loss) of every Trainer the CLI builds."""
    from pyg_cf.train import Trainer

    seen = []
    init = Trainer.__init__

    def spy(self, model, data, loss, config=None, callbacks=None):
        seen.append((config, loss))
        init(self, model, data, loss, config, callbacks)

    monkeypatch.setattr(Trainer, "__init__", spy)
    return seen


class _Stop(Exception):
    """Raised by the Trainer spy of :func:`_config_of`: the run ends before training."""


def _refuse_loading(monkeypatch):
    """Make loading a data set fail the test: settings must be checked before it."""
    from pyg_cf import datasets

    def load(*args, **kwargs):
        raise AssertionError("the data set was loaded before the settings were checked")

    monkeypatch.setattr(datasets, "load", load)


def _config_of(monkeypatch, argv):
    """The :class:`TrainConfig` the CLI hands to its Trainer for ``argv``, on tiny synthetic
    data and without training."""
    from pyg_cf import datasets
    from pyg_cf.data.synthetic import power_law_bipartite
    from pyg_cf.train import Trainer

    def load(*args, **kwargs):
        return power_law_bipartite(30, 40, num_edges=300, test_ratio=0.2, seed=0)

    seen = []

    def spy(self, model, data, loss, config=None, callbacks=None):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(datasets, "load", load)
    monkeypatch.setattr(Trainer, "__init__", spy)
    with pytest.raises(_Stop):
        cli.main(argv)
    (cfg,) = seen
    return cfg


def test_user_sampling_and_shared_negatives_flags(tmp_path, monkeypatch):
    seen = _spy_trainers(monkeypatch)
    out = tmp_path / "s.json"
    argv = [
        *BASE.replace("--loss bpr", "--loss ssm").split(),
        "--sampling", "user", "--epochs", "1", "--output", str(out),
        "--loss-arg", 'negatives="sampled"', "--loss-arg", "num_negatives=64",
        "--loss-arg", "shared_negatives=true",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    s = json.loads(out.read_text())
    assert s["args"]["sampling"] == "user" and s["test"]["recall@20"] > 0
    ((cfg, loss),) = seen  # the flags reach the trainer, not just the record of the args
    assert cfg.sampling == "user"
    assert (loss.negatives, loss.num_negatives, loss.shared_negatives) == ("sampled", 64, True)


def test_full_softmax_on_user_blocks_flag(tmp_path, monkeypatch):
    seen = _spy_trainers(monkeypatch)
    out = tmp_path / "sm.json"
    argv = [
        *BASE.replace("--loss bpr", "--loss softmax").split(),
        "--sampling", "user_blocks", "--epochs", "1", "--output", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    s = json.loads(out.read_text())
    assert s["args"]["sampling"] == "user_blocks" and s["test"]["recall@20"] > 0
    ((cfg, loss),) = seen
    assert cfg.sampling == "user_blocks" and type(loss).__name__ == "SoftmaxLoss"


def test_init_from_warm_starts_with_new_settings(tmp_path, capsys):
    ck = tmp_path / "ck"
    first, warm = tmp_path / "a.json", tmp_path / "b.json"
    run = [*BASE.split(), "--checkpoint-dir", str(ck)]
    assert cli.main([*run, "--epochs", "2", "--output", str(first)]) == 0
    a = json.loads(first.read_text())
    # another loss and learning rate, starting from the first run's weights
    argv = [
        *BASE.replace("--loss bpr", "--loss ssm").split(), "--lr", "1e-5", "--epochs", "1",
        "--init-from", str(ck / "last.pt"), "--output", str(warm),
        "--checkpoint-dir", str(tmp_path / "warm_ck"),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    assert "initialised the model from" in capsys.readouterr().out
    b = json.loads(warm.read_text())
    assert [r["epoch"] for r in b["history"]] == [1]
    assert b["args"]["loss"] == "ssm"
    # one epoch at a tiny lr barely moves the weights: the warm start keeps the first
    # run's quality
    assert b["test"]["recall@20"] == pytest.approx(a["test"]["recall@20"], abs=0.002)
    # the weights themselves started from the first run's (both runs sit near random
    # recall here, so the metric alone would not tell a warm start from a fresh model)
    import torch

    w0 = torch.load(ck / "last.pt", weights_only=True)["model"]
    w1 = torch.load(tmp_path / "warm_ck" / "last.pt", weights_only=True)["model"]
    for name, t in w0.items():
        if t.is_floating_point():
            assert (w1[name] - t).abs().max() < 1e-3, name  # a fresh draw differs by ~1e-2


def test_load_weights_copies_the_model_only(tmp_path):
    import torch

    from pyg_cf import datasets
    from pyg_cf.losses import get_loss
    from pyg_cf.nn import GraphCF
    from pyg_cf.train import TrainConfig, Trainer, load_weights, read_checkpoint

    ck = tmp_path / "ck"
    assert cli.main([*BASE.split(), "--epochs", "1", "--checkpoint-dir", str(ck)]) == 0
    saved = read_checkpoint(ck / "last.pt")["model"]
    data = datasets.load("ml-1m")
    model = GraphCF.from_data(data, "mf", embedding_dim=64)
    tr = Trainer(model, data, get_loss("ssm"), TrainConfig(epochs=1, progress=False))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_weights(tr, ck / "last.pt") == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]) and not torch.equal(v, before[k])
    assert tr.epoch == 0 and tr.history == [] and len(tr.optimizer.state) == 0


def test_init_from_refuses_other_data(tmp_path):
    from pyg_cf.errors import PygCFError
    from pyg_cf.train import load_weights

    ck = tmp_path / "ck"
    assert cli.main([*BASE.split(), "--epochs", "1", "--checkpoint-dir", str(ck)]) == 0
    from pyg_cf.data.synthetic import power_law_bipartite
    from pyg_cf.losses import get_loss
    from pyg_cf.nn import GraphCF
    from pyg_cf.train import TrainConfig, Trainer

    data = power_law_bipartite(50, 40, num_edges=400, test_ratio=0.2, seed=1)
    model = GraphCF.from_data(data, "mf", embedding_dim=8)
    tr = Trainer(model, data, get_loss("bpr"), TrainConfig(epochs=1, progress=False))
    with pytest.raises(PygCFError, match="other data"):
        load_weights(tr, ck / "last.pt")


def test_init_from_missing_file_and_bad_dropout_are_clear_errors(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert cli.main([*BASE.split(), "--epochs", "1", "--init-from", str(missing)]) == 2
    assert f"checkpoint {missing} does not exist" in capsys.readouterr().err
    assert cli.main([*BASE.split(), "--epochs", "1", "--user-dropout", "1.5"]) == 2
    assert "user_dropout must be in [0, 1)" in capsys.readouterr().err
    assert cli.main([*BASE.split(), "--epochs", "1", "--min-epochs", "-1"]) == 2
    assert "min_epochs must be >= 0, got -1" in capsys.readouterr().err


def test_l2_layers_flag_reaches_the_trainer(tmp_path):
    """``--l2-layers all`` penalises every hop: the same seeded LightGCN run trains to a
    different loss than with the layer-0 penalty of the same weight."""
    losses = {}
    for layers in ("input", "all"):
        out = tmp_path / f"{layers}.json"
        argv = [
            *BASE.replace("--model mf", "--model lightgcn --layers 2").split(),
            "--l2", "1e-1", "--l2-layers", layers, "--epochs", "1", "--output", str(out),
        ]  # fmt: skip
        assert cli.main(argv) == 0
        s = json.loads(out.read_text())
        assert s["args"]["l2_layers"] == layers
        losses[layers] = s["history"][0]["loss"]
    assert losses["input"] != pytest.approx(losses["all"], rel=1e-6)


def test_user_block_size_flag_reaches_the_trainer(tmp_path, capsys, monkeypatch):
    seen = _spy_trainers(monkeypatch)
    out = tmp_path / "s.json"
    argv = [
        *BASE.replace("--loss bpr", "--loss softmax").split(),
        "--sampling", "user_blocks", "--user-block-size", "3", "--epochs", "1",
        "--output", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    assert json.loads(out.read_text())["args"]["user_block_size"] == 3
    ((cfg, _),) = seen  # the trainer's config, not only the record of the args
    assert (cfg.sampling, cfg.user_block_size) == ("user_blocks", 3)
    bad = [*BASE.split(), "--epochs", "1", "--user-block-size", "3"]
    assert cli.main(bad) == 2
    assert "user_block_size only applies to sampling='user_blocks'" in capsys.readouterr().err


def test_patience_none_turns_early_stopping_off(capsys):
    args = cli.build_parser().parse_args([*BASE.split(), "--patience", "none"])
    assert args.patience is None
    assert cli.build_parser().parse_args([*BASE.split(), "--patience", "3"]).patience == 3
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([*BASE.split(), "--patience", "soon"])
    assert "expected an integer or 'none'" in capsys.readouterr().err


@pytest.mark.parametrize("flag,patience", [("none", None), ("3", 3), (None, 10)])
def test_patience_flag_reaches_the_trainer(monkeypatch, flag, patience):
    extra = ["--patience", flag] if flag is not None else []
    cfg = _config_of(monkeypatch, [*BASE.split(), "--epochs", "1", *extra])
    assert cfg.patience == patience


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--loss-arg", "tau=abc"], "argument tau='abc' must be a number"),
        (["--loss", "nope"], "unknown loss 'nope'"),
        (["--loss-arg", "tau"], "error: --loss-arg expects KEY=VALUE, got 'tau'"),
        (["--temperature", "adap-tau0", "--temperature-arg", "warmup_epochs=1.5"], "must be an"),
        # --loss-arg silently replaced the flag's value
        (["--tau", "0.2", "--loss-arg", "tau=0.1"], "--tau 0.2 and --loss-arg tau=0.1 disagree"),
        (["--train-sim", "ip", "--loss-arg", "similarity=cos"], "--train-sim ip and --loss-arg"),
    ],
)
def test_bad_loss_settings_fail_before_the_data_is_loaded(monkeypatch, capsys, extra, message):
    _refuse_loading(monkeypatch)
    argv = [*BASE.replace("--loss bpr", "--loss ssm").split(), "--epochs", "1", *extra]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_init_std_flag_reaches_the_model(monkeypatch):
    from pyg_cf.nn import GraphCF

    seen = []
    build = GraphCF.from_data.__func__

    def spy(cls, data, model="lightgcn", **kw):
        seen.append(kw.get("init_std"))
        return build(cls, data, model, **kw)

    monkeypatch.setattr(GraphCF, "from_data", classmethod(spy))
    assert cli.main([*BASE.split(), "--epochs", "1", "--init-std", "0.1"]) == 0
    assert cli.main([*BASE.split(), "--epochs", "1"]) == 0
    assert seen == [0.1, None]


def test_epoch_lines_and_history_carry_the_l2_penalty(tmp_path, capsys):
    out = tmp_path / "l2.json"
    argv = [*BASE.replace(" --quiet", "").split(), "--epochs", "1", "--l2", "1e-2"]
    assert cli.main([*argv, "--output", str(out)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch"))
    row = json.loads(out.read_text())["history"][0]
    assert row["l2"] > 0 and f"l2 {row['l2']:.5f}" in line


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--layers", "2"], "--layers only applies to --model lightgcn, got --model mf"),
        (["--model", "svdpp-user", "--layers", "3"], "--layers only applies to --model lightgcn"),
        (["--alpha0", "0"], "--alpha0 only applies to --model svdpp-user or svdpp-item, got "),
        (["--model", "lightgcn", "--alpha1", "0.5"], "--alpha1 only applies to --model svdpp"),
    ],
)
def test_model_flags_the_model_does_not_use_are_refused(monkeypatch, capsys, extra, message):
    # they used to be ignored silently: an mf run with --layers 2 looked like another run
    from pyg_cf import datasets

    def load(*args, **kwargs):
        raise AssertionError("the data set was loaded before the model flags were checked")

    monkeypatch.setattr(datasets, "load", load)
    assert cli.main([*BASE.split(), "--epochs", "1", *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--model", "lightgcn"], {"num_layers": 3}),
        (["--model", "lightgcn", "--layers", "2"], {"num_layers": 2}),
        (["--model", "svdpp-item", "--alpha0", "0", "--alpha1", "1"], {"alpha0": 0, "alpha1": 1}),
        ([], {}),
    ],
)
def test_model_flags_reach_the_model(monkeypatch, extra, expected):
    from pyg_cf.nn import GraphCF

    seen = []
    build = GraphCF.from_data.__func__

    def spy(cls, data, model="lightgcn", **kw):
        seen.append({k: v for k, v in kw.items() if k not in ("embedding_dim", "init_std")})
        return build(cls, data, model, **kw)

    monkeypatch.setattr(GraphCF, "from_data", classmethod(spy))
    _config_of(monkeypatch, [*BASE.split(), "--epochs", "1", *extra])
    assert seen == [expected]


def test_seed_help_says_it_also_seeds_the_validation_carve(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "also of the --val-ratio validation carve" in text


def test_every_train_flag_says_what_it_does_and_losses_are_listed():
    import argparse

    from pyg_cf.losses import list_losses

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    silent = [a.option_strings[0] for a in train._actions if a.option_strings and not a.help]
    assert silent == []
    (loss,) = (a for a in train._actions if "--loss" in a.option_strings)
    assert all(name in loss.help for name in list_losses())


@pytest.mark.parametrize("verbose", [False, True])
def test_an_epoch_is_one_line_unless_verbose(tmp_path, capsys, caplog, verbose):
    import logging

    argv = [*BASE.replace(" --quiet", "").split(), "--epochs", "1"]
    with caplog.at_level(logging.INFO):
        assert cli.main(argv + (["--verbose"] if verbose else [])) == 0
    rows = [r for r in caplog.records if r.name == "pyg_cf.train.trainer"]
    assert len(rows) == (1 if verbose else 0)
    assert capsys.readouterr().out.count("epoch   1  loss") == 1
    assert logging.getLogger("pyg_cf.train.trainer").level == logging.NOTSET  # restored


def test_quiet_and_verbose_together_are_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main([*BASE.split(), "--verbose"])
    assert "--quiet and --verbose exclude each other" in capsys.readouterr().err


def test_the_data_summary_is_printed_once(tmp_path, monkeypatch, capsys, caplog):
    # without --quiet it used to appear twice: load's INFO log line and the CLI's print
    import logging

    from pyg_cf import datasets
    from pyg_cf.train import Trainer

    lines = ["0 " + " ".join(map(str, range(12))), "1 " + " ".join(map(str, range(12, 25)))]
    (tmp_path / "train.txt").write_text("\n".join([*lines, "2 0 5"]) + "\n")
    (tmp_path / "test.txt").write_text("0 12\n1 0\n")
    info = datasets.DatasetInfo("ml-1m", "lightgcn", ("train.txt", "test.txt"), 3, 25, 27, 2)
    monkeypatch.setitem(datasets.DATASETS, "ml-1m", info)

    def stop(self, *args, **kwargs):
        raise _Stop

    monkeypatch.setattr(Trainer, "__init__", stop)  # the summary comes before training
    argv = [*BASE.replace(" --quiet", "").split(), "--epochs", "1", "--root", str(tmp_path)]
    with caplog.at_level(logging.DEBUG, logger="pyg_cf"), pytest.raises(_Stop):
        cli.main(argv)
    out, err = capsys.readouterr()
    line = "ml-1m: 3 users, 25 items, 29 interactions (27 train / 0 val / 2 test)"
    assert out.count(line) == 1  # on stdout, with the other results
    shown = [r for r in caplog.records if line in r.getMessage() and r.levelno >= logging.INFO]
    assert shown == [] and line not in err


def test_output_is_strict_json(tmp_path):
    """History rows differ in their keys (``best`` only where validation improved, metrics
    only at evaluations); the DataFrame filled the gaps with NaN, written as a bare ``NaN``
    token that strict JSON parsers refuse."""
    out = tmp_path / "run.json"
    argv = [*BASE.replace("--eval-every 1", "--eval-every 2").split(), "--epochs", "3"]
    argv += ["--val-ratio", "0.1"]
    assert cli.main([*argv, "--output", str(out)]) == 0

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    rows = json.loads(out.read_text(), parse_constant=refuse)["history"]
    assert [("val_ndcg@20" in r) for r in rows] == [False, True, True]  # 2, then the last
    assert all("loss" in r for r in rows)


def test_sampled_mode_flags_reach_the_trainer(monkeypatch):
    lightgcn = BASE.replace("--model mf", "--model lightgcn --layers 2").split()
    argv = [*lightgcn, "--epochs", "1", "--mode", "sampled", "--num-neighbors", "5,-1"]
    cfg = _config_of(monkeypatch, [*argv, "--sparse-grad"])
    assert (cfg.mode, cfg.num_neighbors, cfg.sparse_grad) == ("sampled", (5, -1), True)
    cfg = _config_of(monkeypatch, [*lightgcn, "--epochs", "1"])
    assert (cfg.mode, cfg.num_neighbors, cfg.sparse_grad) == ("full", None, False)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--num-neighbors", "5,5"], "--num-neighbors needs --mode sampled"),
        (["--sparse-grad"], "--sparse-grad needs --mode sampled"),
        (["--mode", "sampled", "--num-neighbors", "5,0"], "num_neighbors"),
    ],
)
def test_bad_sampled_mode_flags_are_named(monkeypatch, capsys, extra, message):
    _refuse_loading(monkeypatch)
    assert cli.main([*BASE.split(), "--epochs", "1", *extra]) == 2
    assert message in capsys.readouterr().err


def test_fan_outs_that_are_not_integers_are_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([*BASE.split(), "--num-neighbors", "5,x"])
    assert (
        "expected comma-separated integers such as 10,10,10, got '5,x'" in capsys.readouterr().err
    )


def test_a_sampled_run_on_real_data(tmp_path):
    """ML-1M, LightGCN over sampled neighborhoods with sparse gradients: three steps and
    an evaluation, its history written."""
    out = tmp_path / "s.json"
    argv = [
        *BASE.replace("--model mf", "--model lightgcn --layers 2").split(), "--epochs", "1",
        "--mode", "sampled", "--num-neighbors", "5,5", "--sparse-grad", "--output", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    s = json.loads(out.read_text())
    assert s["args"]["mode"] == "sampled" and s["history"][0]["test_recall@20"] > 0
