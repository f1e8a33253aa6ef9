"""examples/reproduce.py: the validation grid, its cache and the page."""

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from pyg_cf import datasets
from tests.train.test_trainer import synthetic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repro(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "examples" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = mod
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "OUT", tmp_path / "repro")
    monkeypatch.setattr(mod, "CHECKPOINTS", tmp_path / "ckpt")
    monkeypatch.setattr(mod, "PAGE", tmp_path / "PAGE.md")
    data = synthetic()
    monkeypatch.setattr(datasets, "load", lambda name, **kw: data)
    cell = mod.Cell(
        "t9-mf-ssm", 1, "MF + SSM", "toy", "mf", "ssm", {"tau": 0.1, "similarity": "cos"},
        model_kwargs={"embedding_dim": 8}, published=(0.5, 0.4), epochs=2, grid_epochs=1,
        grid={"tau": (0.1, 1.0)}, grid_refine=(0.5, 1.0),
    )  # fmt: skip
    monkeypatch.setattr(mod, "CELLS", [cell])
    monkeypatch.setattr(mod, "BY_ID", {cell.id: cell})
    yield mod
    sys.modules.pop("reproduce", None)


def test_fixed_tau_softmax_cells_get_the_papers_grid(repro):
    c = repro.Cell("x", 1, "x", "gowalla", "lightgcn", "ssm", {"tau": 0.1})
    assert c.grid == {"tau": (0.1, 0.2, 0.5, 1.0)}
    assert repro.Cell("y", 1, "y", "gowalla", "mf", "bpr").grid == {}
    adaptive = repro.Cell("z", 5, "z", "gowalla", "mf", "ssm", {"tau": 0.1}, temperature="adap-tau")
    assert adaptive.grid == {}


def test_grid_selects_on_validation_and_the_cell_uses_the_choice(repro):
    assert repro.main(["--cell", "t9-mf-ssm", "--grid-budget", "100"]) == 0
    grid_dir = repro.OUT / "grid" / "t9-mf-ssm"
    points = {p.stem: json.loads(p.read_text()) for p in grid_dir.glob("*.json")}
    # coarse 0.1, 1.0, then the refinement around the winner (x0.5; x1.0 is already run)
    assert len(points) == 3 and {"tau=0.1", "tau=1.0"} <= set(points)
    for rec in points.values():
        assert "test" not in rec and "ndcg@20" in rec["val"]  # selection never sees test
    best = max(points.values(), key=lambda r: r["val"]["ndcg@20"])["point"]
    rec = json.loads((repro.OUT / "t9-mf-ssm.json").read_text())
    assert rec["grid"]["selected"] == best
    assert rec["loss_kwargs"]["tau"] == best["tau"]
    assert len(rec["grid"]["points"]) == 3
    assert rec["command"] == "python examples/reproduce.py --cell t9-mf-ssm --grid-budget 100"
    assert (repro.CHECKPOINTS / "t9-mf-ssm" / f"final-tau={best['tau']}" / "last.pt").exists()
    page = repro.PAGE.read_text()
    assert f"→ tau={best['tau']}" in page


def test_grid_points_are_cached(repro, monkeypatch):
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    (repro.OUT / "t9-mf-ssm.json").unlink()
    calls = []
    real = repro.run_cell

    def spy(cell, budget, overrides=None, tag="", epochs=None):
        calls.append(tag)
        return real(cell, budget, overrides=overrides, tag=tag, epochs=epochs)

    monkeypatch.setattr(repro, "run_cell", spy)
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    assert calls == [""]  # only the final run: every grid point came from its JSON


@pytest.mark.parametrize("flag", ["--budget", "--grid-budget"])
def test_budgets_must_be_positive(repro, flag, capsys):
    with pytest.raises(SystemExit):
        repro.main(["--cell", "t9-mf-ssm", flag, "-5"])
    assert "must be a positive number of seconds" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("device", "message"),
    [("gpu", "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"), ("cuda", "no CUDA device")],
)
def test_a_bad_device_is_refused_before_any_training(repro, device, message, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(SystemExit):
        repro.main(["--cell", "t9-mf-ssm", "--device", device])
    assert message in capsys.readouterr().err
    assert not (repro.OUT / "t9-mf-ssm.json").exists()


def test_cuda_graphs_need_a_gpu_and_show_in_the_command(repro, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        repro.main(["--cell", "t9-mf-ssm", "--cuda-graphs"])
    assert "--cuda-graphs / $PYG_CF_CUDA_GRAPHS needs --device cuda" in capsys.readouterr().err
    assert not (repro.OUT / "t9-mf-ssm.json").exists()
    monkeypatch.setattr(repro, "DEVICE", "cuda")
    monkeypatch.setattr(repro, "CUDA_GRAPHS", True)
    assert repro.command(repro.BY_ID["t9-mf-ssm"]).endswith("--device cuda --cuda-graphs")


def test_a_run_records_its_device_in_machine_and_command(repro, monkeypatch):
    monkeypatch.setattr(repro, "DEVICE", "cuda:0")
    monkeypatch.setattr("torch.cuda.get_device_name", lambda *a: "Some GPU")
    assert repro.machine().startswith("Some GPU (CUDA ")
    assert repro.command(repro.BY_ID["t9-mf-ssm"]).endswith("--cell t9-mf-ssm --device cuda:0")
    rec = {"machine": repro.machine(), "wall_s": 360.0}
    assert repro.on_gpu(rec) and repro.wall(rec) == "6 min (Some GPU)"
    monkeypatch.setattr(repro, "DEVICE", "cpu")
    cpu = {"machine": repro.machine(), "wall_s": 120.0, "torch_threads": 2}
    assert not repro.on_gpu(cpu) and repro.wall(cpu).endswith("2 threads)")


def test_refit_retrains_on_full_train_with_the_validation_choices(repro, monkeypatch):
    assert repro.main(["--refit", "--cell", "t9-mf-ssm"]) == 1  # nothing to refit yet
    assert not (repro.OUT / "refit" / "t9-mf-ssm.json").exists()
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    source = json.loads((repro.OUT / "t9-mf-ssm.json").read_text())
    seen = []
    data = synthetic()

    def load(name, **kw):
        seen.append(kw.get("val_ratio"))
        return data

    monkeypatch.setattr(datasets, "load", load)
    assert repro.main(["--refit", "--cell", "t9-mf-ssm"]) == 0
    assert seen == [0.0]  # the full training split, no validation carve
    rec = json.loads((repro.OUT / "refit" / "t9-mf-ssm.json").read_text())
    assert rec["selected_from"]["loss_kwargs"] == source["loss_kwargs"]
    assert rec["loss_kwargs"] == source["loss_kwargs"]
    assert rec["epochs_run"] == source["best_epoch"] and rec["converged"]
    assert rec["command"] == "python examples/reproduce.py --cell t9-mf-ssm --refit"
    assert "Refit on the full training split" in repro.PAGE.read_text()
    assert repro.main(["--refit", "--cell", "t9-mf-ssm"]) == 0  # cached: no second run
    assert seen == [0.0]


def test_a_refit_ahead_is_read_at_the_epoch_validation_chooses(repro, monkeypatch):
    """A refit trained ahead (before the validation run) for more epochs gives, at the
    chosen epoch, exactly the refit that trains that many epochs (seeded, on the CPU)."""
    bpr = repro.Cell(
        "t9-mf-bpr", 1, "MF + BPR", "toy", "mf", "bpr", model_kwargs={"embedding_dim": 8},
        published=(0.5, 0.4), epochs=3, patience=None,
    )  # fmt: skip
    cells = [*repro.CELLS, bpr]
    monkeypatch.setattr(repro, "CELLS", cells)
    monkeypatch.setattr(repro, "BY_ID", {c.id: c for c in cells})
    assert repro.main(["--cell", "t9-mf-ssm", "--refit-ahead", "4"]) == 1  # τ grid first
    assert repro.main(["--cell", "t9-mf-bpr", "--refit-ahead", "5"]) == 0
    ahead = json.loads((repro.OUT / "refit" / "t9-mf-bpr_ahead.json").read_text())
    assert ahead["epochs_run"] == 5
    assert ahead["command"].endswith("--cell t9-mf-bpr --refit-ahead 5")
    assert "a refit-ahead run trained 5 epochs" not in repro.PAGE.read_text()  # no val run
    assert repro.main(["--cell", "t9-mf-bpr"]) == 0
    source = json.loads((repro.OUT / "t9-mf-bpr.json").read_text())
    n = source["best_epoch"]
    assert repro.main(["--refit", "--cell", "t9-mf-bpr"]) == 0
    read = json.loads((repro.OUT / "refit" / "t9-mf-bpr.json").read_text())
    assert read["read_from_ahead"] == {
        "record": "refit/t9-mf-bpr_ahead.json", "epoch": n, "chosen_epoch": n,
        "ahead_epochs_run": 5,
    }  # fmt: skip
    assert read["epochs_run"] == n
    assert read["command"] == f"{ahead['command']} then {repro.command(bpr)} --refit"
    # the same refit trained for exactly n epochs
    (repro.OUT / "refit" / "t9-mf-bpr.json").unlink()
    (repro.OUT / "refit" / "t9-mf-bpr_ahead.json").unlink()
    assert repro.main(["--refit", "--cell", "t9-mf-bpr"]) == 0
    trained = json.loads((repro.OUT / "refit" / "t9-mf-bpr.json").read_text())
    assert "read_from_ahead" not in trained and trained["epochs_run"] == n
    assert read["test"] == pytest.approx(trained["test"], abs=1e-7)


def test_a_refit_continues_an_unfinished_run_ahead(repro, monkeypatch, capsys):
    """A refit resumes from the checkpoint of a run ahead (same choices, more epochs) that
    stopped before the chosen epoch, and equals the refit trained from scratch."""
    import shutil

    bpr = repro.Cell(
        "t9-mf-bpr", 1, "MF + BPR", "toy", "mf", "bpr", model_kwargs={"embedding_dim": 8},
        published=(0.5, 0.4), epochs=3, patience=None, eval_every=5,
    )  # fmt: skip
    monkeypatch.setattr(repro, "CELLS", [*repro.CELLS, bpr])
    monkeypatch.setattr(repro, "BY_ID", {c.id: c for c in repro.CELLS})
    # as the real sets: a refit's data has no validation carve (with one, the trainer would
    # restore the best-validation weights, and the run ahead evaluated at its last epoch 2)
    carved, full = synthetic(), synthetic(ratios=(0.8, 0.2))
    monkeypatch.setattr(
        datasets, "load", lambda name, val_ratio=0.0, **kw: carved if val_ratio else full
    )
    assert repro.main(["--cell", "t9-mf-bpr", "--refit-ahead", "2"]) == 0
    (repro.OUT / "refit" / "t9-mf-bpr_ahead.json").unlink()  # as if it had been stopped
    capsys.readouterr()
    chosen = dict(bpr.loss_kwargs)
    resumed = repro.run_cell(bpr, None, overrides=chosen, epochs=3, refit=True)
    assert "refit] resuming after epoch 2" in capsys.readouterr().out
    assert resumed["epochs_run"] == 3
    shutil.rmtree(repro.CHECKPOINTS / "t9-mf-bpr")
    fresh = repro.run_cell(bpr, None, overrides=chosen, epochs=3, refit=True)
    assert "resuming" not in capsys.readouterr().out
    # it continued the run ahead: the same first two epochs, then its own third
    assert [r["loss"] for r in resumed["history"][:2]] == [r["loss"] for r in fresh["history"][:2]]
    assert resumed["history"][2]["epoch"] == 3
    assert resumed["test"] == fresh["test"]  # bit-exact
    # a checkpoint past the chosen epoch, or of other choices, is never continued
    d = repro.CHECKPOINTS / "t9-mf-bpr"
    assert repro._same_refit_checkpoint(d / "refit-epochs=5", 5) == d / "refit-epochs=3" / "last.pt"
    assert repro._same_refit_checkpoint(d / "refit-epochs=2", 2) is None
    shutil.copytree(d / "refit-epochs=3", d / "refit-epochs=3,x=1")
    assert repro._same_refit_checkpoint(d / "refit-epochs=5,x=2", 5) is None


def test_a_refit_ahead_is_read_at_exactly_the_chosen_epoch_or_not_at_all(repro):
    """A budget-stopped validation run may choose an epoch the ahead run did not evaluate:
    the refit is then trained, not read at an earlier evaluation (another epoch count than
    validation chose); other loss arguments are never read."""
    cell = repro.Cell("t9-x", 1, "x", "toy", "mf", "bpr", {"k": 1}, eval_every=5)
    rows = [
        {"epoch": e, "elapsed_s": float(e), "test_recall@20": e / 100, "test_ndcg@20": e / 200}
        for e in (5, 10, 15)
    ]
    tail = {"recall@20": 0.15, "groups": {"group": [0, 1], "recall@20": [0.05, 0.1]}}
    ahead = {
        "loss_kwargs": {"k": 1}, "epochs_run": 15, "history": rows, "machine": "m",
        "test": {"recall@20": 0.15, "ndcg@20": 0.075}, "command": "ahead-cmd",
        "long_tail": tail,
    }  # fmt: skip
    repro.ahead_path(cell).parent.mkdir(parents=True)
    repro.ahead_path(cell).write_text(json.dumps(ahead))
    exact = repro.refit_from_ahead(cell, {"k": 1}, 10)
    assert exact["test"] == {"recall@20": 0.10, "ndcg@20": 0.05} and exact["epochs_run"] == 10
    assert exact["read_from_ahead"]["epoch"] == exact["read_from_ahead"]["chosen_epoch"] == 10
    assert [r["epoch"] for r in exact["history"]] == [5, 10]
    assert exact["long_tail"] is None  # measured at epoch 15, not 10
    # read at the ahead run's last epoch: its long-tail groups are those weights'
    assert repro.refit_from_ahead(cell, {"k": 1}, 15)["long_tail"] == tail
    assert repro.refit_from_ahead(cell, {"k": 1}, 13) is None  # was read at epoch 10
    assert repro.refit_from_ahead(cell, {"k": 1}, 21) is None
    # an ahead run that stopped at 15 never trained 18 epochs: reading its epoch 15 as the
    # 18-epoch refit (as it was) would mark an unfinished refit finished
    assert repro.refit_from_ahead(cell, {"k": 1}, 18) is None
    assert repro.refit_from_ahead(cell, {"k": 1}, 4) is None
    assert repro.refit_from_ahead(cell, {"k": 2}, 10) is None


def test_refit_ahead_needs_a_positive_epoch_count(repro, capsys):
    with pytest.raises(SystemExit):
        repro.main(["--cell", "t9-mf-ssm", "--refit-ahead", "0"])
    assert "--refit-ahead must be a positive number of epochs, got 0" in capsys.readouterr().err


def test_the_page_says_why_a_finished_cell_has_no_refit(repro, capsys):
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    cmd = "`python examples/reproduce.py --cell t9-mf-ssm --refit`"
    assert f"No refit yet for: MF + SSM (not run: {cmd})." in repro.PAGE.read_text()
    assert repro.main(["--refit", "--cell", "t9-mf-ssm"]) == 0
    assert "No refit yet" not in repro.PAGE.read_text()
    (repro.OUT / "refit" / "t9-mf-ssm.json").unlink()  # as if stopped after a checkpoint
    epochs = json.loads((repro.OUT / "t9-mf-ssm.json").read_text())["best_epoch"]
    assert repro.main(["--page"]) == 0
    assert (
        f"MF + SSM (in progress: `--cell t9-mf-ssm --refit` resumes after epoch {epochs})"
        in repro.PAGE.read_text()
    )
    capsys.readouterr()
    assert repro.main(["--list"]) == 0  # --list says the same
    assert f"done, refit after epoch {epochs}" in capsys.readouterr().out
    assert repro.main(["--refit", "--cell", "t9-mf-ssm"]) == 0  # resumes and finishes
    capsys.readouterr()
    assert repro.main(["--list"]) == 0
    assert "t9-mf-ssm table 1 done, refit done" in " ".join(capsys.readouterr().out.split())


def test_refit_needs_an_epoch_count(repro):
    with pytest.raises(ValueError, match="epoch count"):
        repro.run_cell(repro.CELLS[0], None, refit=True)


def test_an_alias_cell_shows_the_refit_of_its_source(repro, monkeypatch, capsys):
    alias = repro.Cell(
        "t9-alias", 2, "MF + SSM again", "toy", "mf", "ssm", {"tau": 0.1},
        published=(0.5, 0.4), note="same run as t9-mf-ssm",
    )  # fmt: skip
    monkeypatch.setattr(repro, "CELLS", [*repro.CELLS, alias])
    monkeypatch.setattr(repro, "BY_ID", {**repro.BY_ID, alias.id: alias})
    # before any run, the page tells how to run the alias: as its source (--cell t9-alias
    # alone would skip it)
    assert repro.command(alias) == "python examples/reproduce.py --cell t9-mf-ssm"
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    assert repro.main(["--refit", "--cell", "t9-alias"]) == 1
    assert "refit that cell" in capsys.readouterr().out
    assert repro.load_refit(alias) is None
    assert repro.main(["--refit", "--cell", "t9-mf-ssm"]) == 0
    assert repro.load_refit(alias) == repro.load_refit(repro.BY_ID["t9-mf-ssm"])
    assert "MF + SSM again" in repro.PAGE.read_text().split("## Refit")[1]


def test_unknown_cells_are_named(repro, capsys):
    with pytest.raises(SystemExit):
        repro.main(["--cell", "t9-nope"])
    assert "unknown cell(s) t9-nope" in capsys.readouterr().err


def _training_config(cell) -> dict:
    """Everything that shapes a cell's run (not its id, table, label or published numbers)."""
    from dataclasses import asdict

    cfg = asdict(cell)
    # extra test similarities are logged, they do not shape training
    for key in ("id", "table", "label", "published", "note", "extra_test_similarities"):
        cfg.pop(key)
    if cell.read_similarity:  # reads its source's run under another test similarity
        for key in ("test_similarity", "read_similarity"):
            cfg.pop(key)
    return cfg


def _fields(cell) -> dict:
    from dataclasses import fields

    return {f.name: getattr(cell, f.name) for f in fields(cell)}


def _real_cells():
    """``examples/reproduce.py`` with its real cells (not the ``repro`` fixture's toy)."""
    spec = importlib.util.spec_from_file_location(
        "reproduce_cells", ROOT / "examples" / "reproduce.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_cells"] = mod  # dataclasses resolve their module while defined
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("reproduce_cells")
    return mod


def test_alias_cells_share_their_sources_training_and_duplicates_are_aliased():
    mod = _real_cells()
    runs: dict[str, str] = {}
    for cell in mod.CELLS:
        if cell.select_from:  # trains nothing itself: its sources are real, distinct cells
            assert all(s in mod.BY_ID and not mod.BY_ID[s].select_from for s in cell.select_from)
            continue
        source = mod.source_id(cell)
        if source != cell.id:  # an alias reports its source's run: same training, same test
            src = mod.BY_ID[source]
            assert source in mod.BY_ID and mod.source_id(src) == source
            if cell.read_similarity:  # ... or the same training, read under its similarity
                assert cell.read_similarity == cell.test_similarity
                assert cell.read_similarity in src.extra_test_similarities, cell.id
                src = mod.Cell(**{**_fields(src), "read_similarity": cell.read_similarity})
            assert _training_config(cell) == _training_config(src), cell.id
            continue
        key = json.dumps(_training_config(cell), sort_keys=True, default=str)
        assert key not in runs, f"{cell.id} trains exactly as {runs.get(key)}: alias it"
        runs[key] = cell.id
    assert mod.source_id(mod.BY_ID["t3-cos-ip"]) == "t1-lightgcn-ssm"
    # table 3: one training run per train similarity, read under both test similarities
    assert mod.source_id(mod.BY_ID["t3-cos-cos"]) == "t1-lightgcn-ssm"
    assert mod.source_id(mod.BY_ID["t3-ip-cos"]) == "t3-ip-ip"
    for loss in ("ssm", "bpr"):  # the paper tunes α0 ∈ {0, 0.5, 1} with α1 = 0
        svdpp = mod.BY_ID[f"t2-svdpp-{loss}"]
        sources = [mod.BY_ID[s] for s in svdpp.select_from]
        assert sorted(s.model_kwargs["alpha0"] for s in sources) == [0.0, 0.5, 1.0]
        assert {s.model_kwargs["alpha1"] for s in sources} == {0.0}
        assert {(s.model, s.loss) for s in sources} == {("svdpp-user", loss)}
    ccl = mod.BY_ID["t6-mf-ccl-tuned"]  # the paper tunes CCL's negative weight
    sources = [mod.BY_ID[s] for s in ccl.select_from]
    assert sorted(s.loss_kwargs["neg_weight"] for s in sources) == [75, 100, 150, 300]
    rest = [{k: v for k, v in s.loss_kwargs.items() if k != "neg_weight"} for s in sources]
    assert all(r == rest[0] for r in rest) and {(s.model, s.loss) for s in sources} == {
        ("mf", "ccl")
    }


def test_a_selection_cell_reports_its_best_validation_source(repro, monkeypatch):
    base = repro.CELLS[0]
    a = repro.Cell(
        "t9-a", 1, "A", "toy", "mf", "ssm", {"tau": 0.1, "similarity": "cos"},
        model_kwargs={"embedding_dim": 8}, epochs=2, grid={},
    )  # fmt: skip
    b = repro.Cell(
        "t9-b", 1, "B", "toy", "mf", "ssm", {"tau": 1.0, "similarity": "cos"},
        model_kwargs={"embedding_dim": 8}, epochs=2, grid={},
    )  # fmt: skip
    sel = repro.Cell(
        "t9-sel", 2, "chosen", "toy", "mf", "ssm", {"tau": 0.1}, published=(0.5, None),
        select_from=("t9-a", "t9-b"),
    )  # fmt: skip
    assert sel.grid == {}
    cells = [base, a, b, sel]
    monkeypatch.setattr(repro, "CELLS", cells)
    monkeypatch.setattr(repro, "BY_ID", {c.id: c for c in cells})
    assert repro.load_record(sel) is None and repro.source_id(sel) == "t9-sel"
    assert repro.main(["--refit", "--cell", "t9-sel"]) == 1  # nothing to choose from yet
    assert repro.main(["--cell", "t9-a"]) == 0
    assert repro.load_record(sel) is None  # waits for every source
    assert "waiting for t9-b" in repro.PAGE.read_text()
    assert repro.main(["--cell", "t9-sel"]) == 0  # runs the missing source only
    assert not (repro.OUT / "t9-sel.json").exists()
    recs = {i: json.loads((repro.OUT / f"{i}.json").read_text()) for i in ("t9-a", "t9-b")}
    vals = {i: max(r["val_ndcg@20"] for r in rec["history"]) for i, rec in recs.items()}
    best = max(vals, key=vals.__getitem__)
    assert repro.source_id(sel) == best and repro.load_record(sel) == recs[best]
    assert f"→ {best}" in repro.PAGE.read_text()
    assert repro.main(["--refit", "--cell", "t9-sel"]) == 0
    assert (repro.OUT / "refit" / f"{best}.json").exists()
    assert repro.load_refit(sel) == repro.load_refit(repro.BY_ID[best])


def test_a_cell_reporting_another_run_is_judged_by_that_runs_schedule(repro, monkeypatch):
    # t6-mf-ccl-tuned (default 200 epochs) reports 400-epoch runs: a run stopped by its
    # budget at epoch 250 was shown as "fixed schedule: all 200 epochs" there
    src = repro.Cell("t9-src", 1, "S", "toy", "mf", "bpr", {}, epochs=400)
    alias = repro.Cell("t9-alias", 1, "A", "toy", "mf", "bpr", {}, note="same run as t9-src")
    cells = [*repro.CELLS, src, alias]
    monkeypatch.setattr(repro, "BY_ID", {c.id: c for c in cells})
    assert alias.epochs == 200 and repro.schedule(alias) == 400 and repro.schedule(src) == 400
    stopped = {"converged": False, "epochs_run": 250}
    assert not repro.ran_to_end(alias, stopped) and not repro.ran_to_end(src, stopped)
    assert repro.ran_to_end(alias, {"converged": False, "epochs_run": 400})


def test_runs_record_the_long_tail_groups_and_the_page_plots_them(repro):
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    rec = json.loads((repro.OUT / "t9-mf-ssm.json").read_text())
    tail = rec["long_tail"]
    groups = tail["groups"]["recall"]
    assert len(groups) == 10
    # the groups decompose the same weights' test Recall@20 (eq. 22)
    assert sum(groups) == pytest.approx(tail["recall@20"], abs=1e-6)
    assert tail["recall@20"] == pytest.approx(rec["test"]["recall@20"], abs=1e-5)
    page = repro.PAGE.read_text()
    assert "## Figure 1" in page and "MF + SSM (validation run)" in page
    assert "![long tail](repro/long_tail_table1.png)" in page
    assert (repro.OUT / "long_tail_table1.png").stat().st_size > 0
    # a record from before the groups were recorded is listed, not plotted
    del rec["long_tail"]
    (repro.OUT / "t9-mf-ssm.json").write_text(json.dumps(rec))
    (repro.OUT / "long_tail_table1.png").unlink()
    assert repro.main(["--page"]) == 0
    page = repro.PAGE.read_text()
    assert "Not yet recorded (not run, or run before the groups were recorded): MF + SSM" in page
    assert not (repro.OUT / "long_tail_table1.png").exists()


def test_a_cell_read_under_another_test_similarity_equals_its_own_run(repro, monkeypatch):
    """Table 3's shared runs: the alias's number is what a separate run would report."""
    kw = dict(model_kwargs={"embedding_dim": 8}, epochs=4, grid={}, patience=10)
    src = repro.Cell(
        "t9-ip", 3, "IP-IP", "toy", "mf", "ssm", {"tau": 0.5, "similarity": "ip"},
        extra_test_similarities=("cos",), **kw,
    )  # fmt: skip
    alias = repro.Cell(
        "t9-ip-cos", 3, "IP-COS", "toy", "mf", "ssm", {"tau": 0.5, "similarity": "ip"},
        test_similarity="cos", read_similarity="cos", note="same run as t9-ip", **kw,
    )  # fmt: skip
    alone = repro.Cell(  # the same training, selected and tested under cos on its own
        "t9-alone", 3, "IP-COS alone", "toy", "mf", "ssm", {"tau": 0.5, "similarity": "ip"},
        test_similarity="cos", **kw,
    )  # fmt: skip
    cells = [src, alias, alone]
    monkeypatch.setattr(repro, "CELLS", cells)
    monkeypatch.setattr(repro, "BY_ID", {c.id: c for c in cells})
    assert repro.load_record(alias) is None
    assert repro.main(["--cell", "t9-ip-cos"]) == 0  # runs its source
    assert (repro.OUT / "t9-ip.json").exists() and not (repro.OUT / "t9-ip-cos.json").exists()
    assert repro.main(["--cell", "t9-alone"]) == 0
    got, own = repro.load_record(alias), repro.load_record(alone)
    assert got["best_epoch"] == own["best_epoch"]
    assert got["test"]["recall@20"] == pytest.approx(own["test"]["recall@20"], abs=1e-6)
    assert got["test"]["ndcg@20"] == pytest.approx(own["test"]["ndcg@20"], abs=1e-6)
    assert repro.load_record(src)["test"] != got["test"]  # the source reports IP
    page = repro.PAGE.read_text()
    assert "t9-ip's run read under COS test similarity" in page
    # a refit of the source reports both: the alias reads the last epoch under cos
    assert repro.main(["--refit", "--cell", "t9-ip"]) == 0
    refit = json.loads((repro.OUT / "refit" / "t9-ip.json").read_text())
    last = refit["history"][-1]
    assert repro.load_refit(alias)["test"]["recall@20"] == last["test_cos_recall@20"]
    chosen = repro.load_refit(alias)["selected_from"]
    assert chosen["val_run_test_recall@20"] == got["test"]["recall@20"]
    assert repro.no_refit_reason(alias) == ""
    # a refit that did not log cos: the page's refit section says why the alias has none
    refit["history"] = [{k: v for k, v in r.items() if "_cos_" not in k} for r in refit["history"]]
    (repro.OUT / "refit" / "t9-ip.json").write_text(json.dumps(refit))
    assert repro.no_refit_reason(alias) == "t9-ip's refit logged no COS test metrics"
    # then the alias trains its own refit, for its own epoch count (it used to say "refit
    # that cell", whose refit may stop at another count): what the lone cell's refit gives
    assert repro.main(["--refit", "--cell", "t9-ip-cos"]) == 0
    mine = repro.load_refit(alias)
    assert (repro.OUT / "refit" / "t9-ip-cos.json").exists()
    assert mine["refit_read"] == "own epoch count" and mine["epochs_run"] == got["best_epoch"]
    assert mine["refit_of"] == "t9-ip-cos"  # the page names it as the cell's own refit
    assert repro.main(["--refit", "--cell", "t9-alone"]) == 0
    lone = repro.load_refit(alone)
    assert lone["epochs_run"] == mine["epochs_run"]
    assert mine["test"]["recall@20"] == pytest.approx(lone["test"]["recall@20"], abs=1e-6)
    assert mine["test"]["ndcg@20"] == pytest.approx(lone["test"]["ndcg@20"], abs=1e-6)
    assert repro.no_refit_reason(alias) == ""
    (repro.OUT / "refit" / "t9-ip-cos.json").unlink()
    # a source run that did not log cos: the alias is unfinished, and the page says why
    rec = json.loads((repro.OUT / "t9-ip.json").read_text())
    rec["history"] = [{k: v for k, v in r.items() if "_cos_" not in k} for r in rec["history"]]
    (repro.OUT / "t9-ip.json").write_text(json.dumps(rec))
    assert repro.load_record(alias) is None
    assert repro.main(["--page"]) == 0
    assert "t9-ip's run predates logging cos test metrics" in repro.PAGE.read_text()


def test_the_page_names_each_runs_machine(repro):
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    rec = json.loads((repro.OUT / "t9-mf-ssm.json").read_text())
    cpu = rec["machine"].split(", ")[1]
    threads = rec["torch_threads"]
    row = next(r for r in repro.PAGE.read_text().splitlines() if r.startswith("| MF + SSM |"))
    assert f"min ({cpu}, {threads} thread" in row
    assert repro.wall({"wall_s": 600.0}) == "10 min (machine not recorded)"


def test_list_and_page_show_where_an_unfinished_cell_resumes(repro, capsys):
    assert repro.main(["--list"]) == 0
    assert capsys.readouterr().out.split() == ["t9-mf-ssm", "table", "1", "todo"]
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0  # its checkpoints stay behind
    (repro.OUT / "t9-mf-ssm.json").unlink()  # as if the process died before the record
    capsys.readouterr()
    assert repro.main(["--list"]) == 0
    best = repro.run_grid(repro.BY_ID["t9-mf-ssm"], None)["selected"]  # cached: no training
    out = capsys.readouterr().out
    assert f"todo (checkpoint final-tau={best['tau']} after epoch 2)" in out, out
    assert repro.main(["--page"]) == 0  # the page says the same of the unfinished cell
    row = next(r for r in repro.PAGE.read_text().splitlines() if r.startswith("| MF + SSM |"))
    assert f"unfinished (checkpoint final-tau={best['tau']} after epoch 2)" in row, row
    # and it reports the checkpoint's best validation epoch so far, marked as not final
    from pyg_cf.train.checkpoint import read_checkpoint

    ckpt = repro.CHECKPOINTS / "t9-mf-ssm" / f"final-{repro.point_tag(best)}" / "last.pt"
    hist = read_checkpoint(ckpt)["history"]
    top = max(hist, key=lambda r: r["val_ndcg@20"])
    assert f"| so far {top['test_recall@20']:.4f} / {top['test_ndcg@20']:.4f} |" in row, row
    assert f"| 2 ({top['epoch']}) |" in row and "not final" in row, row


def test_a_shared_refit_is_read_at_the_readers_own_epoch_count(repro, monkeypatch):
    """A refit's first N epochs are an N-epoch refit: a cell reading a longer shared refit
    at its own epoch count reports what its own refit would."""
    src = repro.Cell(
        "t9-ip", 3, "IP-IP", "toy", "mf", "ssm", {"tau": 0.5, "similarity": "ip"},
        model_kwargs={"embedding_dim": 8}, grid={}, extra_test_similarities=("cos",),
    )  # fmt: skip
    monkeypatch.setattr(repro, "BY_ID", {src.id: src})
    long = repro.run_cell(src, None, overrides=src.loss_kwargs, epochs=10, refit=True)
    short = repro.run_cell(src, None, overrides=src.loss_kwargs, epochs=5, refit=True)
    logged = [r["epoch"] for r in long["history"] if r.get("test_cos_recall@20") is not None]
    assert logged == [5, 10]
    at5 = repro.read_under(long, "cos", refit=True, epoch=5)
    assert at5["refit_read"] == "own epoch count" and at5["epochs_run"] == 5
    assert at5["test"] == pytest.approx(repro.read_under(short, "cos", refit=True, epoch=5)["test"])
    assert at5["test"] != repro.read_under(long, "cos", refit=True, epoch=10)["test"]
    # an epoch count the refit did not log (or did not reach): its last epoch, said so
    at7 = repro.read_under(long, "cos", refit=True, epoch=7)
    assert at7["refit_read"] == "the source's epoch count" and at7["epochs_run"] == 10


def test_resuming_past_the_budget_says_so_instead_of_recording_nothing_new(repro):
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    (repro.OUT / "t9-mf-ssm.json").unlink()  # as if the process died before the record
    with pytest.raises(SystemExit, match=r"already trained .* pass a larger --budget"):
        repro.main(["--cell", "t9-mf-ssm", "--budget", "0.001"])
    assert not (repro.OUT / "t9-mf-ssm.json").exists()
    assert repro.main(["--cell", "t9-mf-ssm", "--budget", "3600"]) == 0  # a larger one: fine


def test_the_page_compares_runs_at_equal_training_time(repro, monkeypatch):
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    rec = json.loads((repro.OUT / "t9-mf-ssm.json").read_text())
    for row in rec["history"]:  # a minute of training an epoch: the clock is exact
        row["train_s"] = 60.0
    (repro.OUT / "t9-mf-ssm.json").write_text(json.dumps(rec))
    evals = [r for r in rec["history"] if r.get("test_recall@20") is not None]
    trained = len(rec["history"])  # minutes of training, evaluations left out
    # a budget no evaluation fits in, one that holds the whole run, one past its end
    monkeypatch.setattr(repro, "BUDGETS_MIN", (1e-9, trained, trained * 100))
    assert repro.main(["--page"]) == 0
    page = repro.PAGE.read_text()
    row = next(r for r in page.split("## Equal")[1].splitlines() if r.startswith("| MF + SSM |"))
    assert row.split(" | ")[1:4] == ["–", f"{evals[-1]['test_recall@20']:.4f}", "·"], row
    assert row.endswith("| finished |")
    assert (repro.OUT / "convergence_table1.png").is_file()
    cut = {**rec, "converged": False, "epochs_run": 1}  # as if a --budget had stopped it
    (repro.OUT / "t9-mf-ssm.json").write_text(json.dumps(cut))
    assert repro.main(["--page"]) == 0
    page = repro.PAGE.read_text()
    row = next(r for r in page.split("## Equal")[1].splitlines() if r.startswith("| MF + SSM |"))
    assert row.endswith("| budget reached |"), row
    assert "| MF + SSM (validation run, budget reached) |" in page.split("## Figure 1")[1]
    (repro.OUT / "t9-mf-ssm.json").unlink()  # unfinished: its checkpoint's curve, marked
    assert repro.main(["--page"]) == 0
    page = repro.PAGE.read_text()
    row = next(r for r in page.split("## Equal")[1].splitlines() if r.startswith("| MF + SSM |"))
    assert row.endswith(f"| in progress (epoch {rec['epochs_run']}) |"), row


def test_the_equal_budget_clock_leaves_evaluation_time_out(repro):
    # 10 s of training an epoch, every epoch evaluated (5 s): after 20 s of training the
    # epoch-2 evaluation counts, though its wall clock (elapsed_s, 30 s) is past 20 s — a
    # run evaluated every epoch used to fall behind one evaluated every 5
    history = [
        {"epoch": e, "train_s": 10.0, "eval_s": 5.0, "elapsed_s": 15.0 * e,
         "test_recall@20": e / 10}
        for e in (1, 2, 3)
    ]  # fmt: skip
    assert repro.training_clock(history) == [10.0, 20.0, 30.0]
    assert repro.recall_at({"history": history}, 20) == 0.2
    assert repro.recall_at({"history": history}, 9) is None
    old = [{k: v for k, v in r.items() if k != "train_s"} for r in history]
    assert repro.training_clock(old) == [15.0, 30.0, 45.0]  # records without train_s
    assert repro.recall_at({"history": old}, 20) == 0.1


def test_the_page_sets_adaptau_beside_its_fixed_tau_run(repro, monkeypatch):
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    path = repro.OUT / "t9-mf-ssm.json"
    rec = json.loads(path.read_text())
    monkeypatch.setattr(repro, "ADAPTAU_PAIRS", (("t9-mf-ssm", "t9-not-a-cell"),))
    monkeypatch.setattr(repro, "PAIR_EPOCHS", (1, 99))
    assert repro.main(["--page"]) == 0

    def row() -> list[str]:
        section = repro.PAGE.read_text().split("## Adap-τ against")[1].split("\n## ")[0]
        rows = [r for r in section.splitlines() if r.startswith("| MF + SSM |")]
        assert len(rows) == 1, section  # the unknown cell of the pair is left out
        return rows[0].split(" | ")

    evals = [r for r in rec["history"] if r.get("val_ndcg@20") is not None]
    best = max(evals, key=lambda r: r["val_ndcg@20"])
    first = next(r for r in evals if r["epoch"] == 1)
    cells = row()
    assert cells[1] == f"{rec['loss_kwargs']['tau']:g}"
    assert cells[2] == f"{best['val_ndcg@20']:.4f} ({best['epoch']})"
    assert cells[3] == f"{best['test_recall@20']:.4f} / {best['test_ndcg@20']:.4f}"
    assert cells[4:6] == [f"{first['test_recall@20']:.4f}", "·"]
    assert cells[6:] == ["finished", "not run |"]
    assert (repro.OUT / "adaptau_vs_fixed.png").stat().st_size > 0
    for r in rec["history"]:  # an Adap-τ run shows the τ0 of the epoch the row reports
        r["tau0"] = 0.05 + 0.01 * r["epoch"]
    last = rec["history"][-1]  # and an epoch past the reported one, not evaluated: not shown
    after = {k: v for k, v in last.items() if not k.startswith(("val_", "test_"))}
    rec["history"].append({**after, "epoch": last["epoch"] + 1, "tau0": 0.9})
    path.write_text(json.dumps(rec))
    assert repro.main(["--page"]) == 0
    assert row()[1] == f"τ0 {0.05 + 0.01 * best['epoch']:.4f} (computed, epoch {best['epoch']})"
    rec["history"].pop()
    path.unlink()  # unfinished: its checkpoint's history
    assert repro.main(["--page"]) == 0
    assert row()[-2] == f"in progress (epoch {rec['epochs_run']})"
    path.write_text(json.dumps(rec))
    assert repro.main(["--cell", "t9-mf-ssm", "--refit"]) == 0
    assert repro.main(["--page"]) == 0
    refit = json.loads((repro.OUT / "refit" / "t9-mf-ssm.json").read_text())
    t = refit["test"]
    assert row()[-1] == f"{t['recall@20']:.4f} / {t['ndcg@20']:.4f} ({refit['epochs_run']}) |"


@pytest.mark.parametrize("env", [None, "elsewhere"])
def test_checkpoint_root_follows_the_environment(tmp_path, monkeypatch, env):
    if env is None:
        monkeypatch.delenv("PYG_CF_REPRO_CHECKPOINTS", raising=False)
    else:
        monkeypatch.setenv("PYG_CF_REPRO_CHECKPOINTS", str(tmp_path / env))
    spec = importlib.util.spec_from_file_location(
        "reproduce_env", ROOT / "examples" / "reproduce.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["reproduce_env"] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("reproduce_env")
    expected = tmp_path / env if env else ROOT / "runs" / "repro_checkpoints"
    assert mod.CHECKPOINTS == expected


@pytest.fixture
def probe(repro, monkeypatch):
    """examples/results/probe.py, running its cells through the ``repro`` fixture's module."""
    spec = importlib.util.spec_from_file_location(
        "probe", ROOT / "examples" / "results" / "probe.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "_reproduce", lambda: repro)
    return mod


def test_a_probe_changes_one_setting_and_records_how_to_rerun_it(
    repro, probe, tmp_path, monkeypatch
):
    # the cell selects τ on a grid: a probe changes one setting of the cell as selected
    # (it used to run the cell's ungridded τ, silently a second change)
    with pytest.raises(SystemExit, match=r"selects \['tau'\] on a grid that has not run"):
        probe.probe("t9-mf-ssm", "lr", 1e-4, 1, tmp_path / "probes")
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    chosen = json.loads((repro.OUT / "t9-mf-ssm.json").read_text())["grid"]["selected"]
    seen = []
    run_cell = repro.run_cell

    def spy(cell, budget_s, overrides=None, **kw):
        seen.append((cell.lr, cell.epochs, overrides))
        return run_cell(cell, budget_s, overrides=overrides, **kw)

    monkeypatch.setattr(repro, "run_cell", spy)
    out = probe.probe("t9-mf-ssm", "lr", 1e-4, 1, tmp_path / "probes")
    assert out.name == "t9-mf-ssm-lr=0.0001-1ep.json"
    assert seen == [(1e-4, 1, chosen)]  # a Cell field, beside the grid's choice
    rec = json.loads(out.read_text())
    assert rec["probe"] == {"base_cell": "t9-mf-ssm", "lr": 1e-4}
    cmd = f"python examples/results/probe.py t9-mf-ssm lr 0.0001 1 {tmp_path / 'probes'}"
    assert rec["command"] == cmd
    probe.probe("t9-mf-ssm", "tau", 0.5, 1, tmp_path / "probes", budget=30)
    assert seen[-1][2] == {"tau": 0.5}  # a loss argument
    assert probe.probe("t9-mf-ssm", "lr", 1e-4, 1, tmp_path / "probes") == out  # cached
    assert len(seen) == 2
    # several settings at once: Cell fields and loss arguments, one record
    both = probe.probe("t9-mf-ssm", "lr,tau", [1e-4, 0.5], 1, tmp_path / "probes")
    assert both.name == "t9-mf-ssm-lr=0.0001+tau=0.5-1ep.json"
    assert seen[-1] == (1e-4, 1, {"tau": 0.5})
    rec = json.loads(both.read_text())
    assert rec["probe"] == {"base_cell": "t9-mf-ssm", "lr": 1e-4, "tau": 0.5}
    assert " t9-mf-ssm lr,tau 0.0001,0.5 1 " in rec["command"]
    with pytest.raises(SystemExit, match="need as many values"):
        probe.probe("t9-mf-ssm", "lr,tau", [1e-4], 1, tmp_path / "probes")
    with pytest.raises(SystemExit, match="unknown cell 'nope'"):
        probe.probe("nope", "lr", 1e-4, 1, tmp_path / "probes")


def test_a_probe_of_init_std_reaches_the_model(probe, tmp_path, monkeypatch):
    from pyg_cf.nn import GraphCF

    seen = []
    build = GraphCF.from_data.__func__

    def spy(cls, data, model="lightgcn", **kw):
        m = build(cls, data, model, **kw)
        seen.append((kw.get("init_std"), m.init_std, float(m.user_embedding.weight.std())))
        return m

    monkeypatch.setattr(GraphCF, "from_data", classmethod(spy))
    out = probe.probe("t9-mf-ssm", "init_std,tau", [0.1, 0.1], 1, tmp_path / "p")
    assert out.name == "t9-mf-ssm-init_std=0.1+tau=0.1-1ep.json"
    (asked, kept, std), *_ = seen
    assert asked == kept == 0.1 and std == pytest.approx(0.1, rel=0.2)


def test_a_probe_of_a_model_argument_reaches_the_model(probe, tmp_path, monkeypatch):
    from pyg_cf.nn import GraphCF

    seen = []
    build = GraphCF.from_data.__func__

    def spy(cls, data, model="lightgcn", **kw):
        m = build(cls, data, model, **kw)
        seen.append((kw, m.user_embedding.weight.size(1)))
        return m

    monkeypatch.setattr(GraphCF, "from_data", classmethod(spy))
    out = probe.probe("t9-mf-ssm", "model.embedding_dim,tau", [4, 0.1], 1, tmp_path / "p")
    assert out.name == "t9-mf-ssm-model.embedding_dim=4+tau=0.1-1ep.json"
    (kw, dim), *_ = seen
    assert kw == {"embedding_dim": 4} and dim == 4  # the cell's own 8, overridden
    rec = json.loads(out.read_text())
    assert rec["probe"] == {"base_cell": "t9-mf-ssm", "model.embedding_dim": 4, "tau": 0.1}
    with pytest.raises(SystemExit, match=r"mf takes no model argument \['num_layers'\]"):
        probe.probe("t9-mf-ssm", "model.num_layers,tau", [1, 0.1], 1, tmp_path / "p")


@pytest.fixture
def val_ratios(monkeypatch):
    """The ``val_ratio`` of every ``datasets.load`` call, in order (0.0: the full training
    split of a refit; 0.1: a validation run)."""
    seen = []
    load = datasets.load

    def spy(name, **kw):
        seen.append(kw.get("val_ratio"))
        return load(name, **kw)

    monkeypatch.setattr(datasets, "load", spy)
    return seen


def test_a_probe_refit_retrains_its_best_epoch_count_on_full_train(probe, tmp_path, val_ratios):
    seen = val_ratios
    out = probe.probe("t9-mf-ssm", "tau", 0.5, 2, tmp_path / "p", refit=True)
    assert out.name == "t9-mf-ssm-tau=0.5-2ep-refit.json"
    assert seen == [0.1, 0.0]  # the probe on the validation carve, then the full split
    src = json.loads((tmp_path / "p" / "t9-mf-ssm-tau=0.5-2ep.json").read_text())
    rec = json.loads(out.read_text())
    assert rec["epochs_run"] == src["best_epoch"] and rec["converged"]
    assert rec["loss_kwargs"]["tau"] == 0.5
    assert rec["selected_from"]["probe"] == "t9-mf-ssm-tau=0.5-2ep.json"
    assert rec["command"].endswith(f"t9-mf-ssm tau 0.5 2 {tmp_path / 'p'} --refit")
    assert probe.probe("t9-mf-ssm", "tau", 0.5, 2, tmp_path / "p", refit=True) == out
    assert seen == [0.1, 0.0]  # both cached


def test_a_probe_refit_ahead_is_read_at_the_chosen_epoch(
    repro, probe, tmp_path, monkeypatch, val_ratios
):
    """``--refit-ahead N`` trains the refit before the choice; ``--refit`` then reads the
    chosen epoch from it, and that equals a refit trained for exactly that many epochs."""
    seen = val_ratios
    ahead = probe.probe("t9-mf-ssm", "tau", 0.5, 3, tmp_path / "p", refit_ahead=3)
    assert ahead.name == "t9-mf-ssm-tau=0.5-3ep-refit_ahead.json"
    assert seen == [0.0]  # the full split only: the validation run has not run
    arec = json.loads(ahead.read_text())
    assert arec["epochs_run"] == 3 and arec["command"].endswith(" --refit-ahead 3")
    assert [r["epoch"] for r in arec["history"] if r.get("test_recall@20") is not None] == [1, 2, 3]
    out = probe.probe("t9-mf-ssm", "tau", 0.5, 3, tmp_path / "p", refit=True)
    assert seen == [0.0, 0.1]  # the validation run trains; the refit is read, not trained
    src = json.loads((tmp_path / "p" / "t9-mf-ssm-tau=0.5-3ep.json").read_text())
    rec = json.loads(out.read_text())
    n = src["best_epoch"]
    assert rec["epochs_run"] == n and rec["read_from_ahead"]["epoch"] == n
    row = next(r for r in arec["history"] if r["epoch"] == n)
    assert rec["test"]["recall@20"] == row["test_recall@20"]
    assert " --refit-ahead 3 then python examples/results/probe.py " in rec["command"]
    assert rec["command"].endswith(" --refit")
    # the same refit trained for exactly n epochs (from scratch: no checkpoint to resume)
    # gives the same test metrics
    monkeypatch.setattr(repro, "CHECKPOINTS", tmp_path / "fresh_checkpoints")
    fresh = probe.probe("t9-mf-ssm", "tau", 0.5, 3, tmp_path / "q", refit=True)
    assert seen[-1] == 0.0  # trained this time
    assert (tmp_path / "fresh_checkpoints").exists()
    assert json.loads(fresh.read_text())["test"]["recall@20"] == pytest.approx(
        rec["test"]["recall@20"], abs=1e-6
    )


def test_a_stopped_refit_ahead_is_closed_at_its_checkpoint_and_read(
    repro, probe, tmp_path, val_ratios
):
    """What ``results/bpr_long/finish.sh`` does once validation has chosen: a refit ahead
    stopped at a checkpoint (here epoch 2 of a 5-epoch run) is closed there by
    ``--refit-ahead 2`` without training another epoch, and ``--refit`` reads the chosen
    epoch from it."""
    name, _, ahead_path = probe.probe_names("t9-mf-ssm", {"tau": 0.5}, 2, tmp_path / "p", None)
    probe.probe("t9-mf-ssm", "tau", 0.5, 2, tmp_path / "p", refit_ahead=2)
    first = json.loads(ahead_path.read_text())
    # as if it had been a longer run ahead, stopped after epoch 2: its record not written
    ahead_path.unlink()
    root = repro.CHECKPOINTS / name
    (root / "refit-epochs=2,similarity=cos,tau=0.5").rename(
        root / "refit-epochs=5,similarity=cos,tau=0.5"
    )
    before = list(val_ratios)
    probe.probe("t9-mf-ssm", "tau", 0.5, 2, tmp_path / "p", refit_ahead=2)
    closed = json.loads(ahead_path.read_text())
    assert val_ratios == [*before, 0.0]
    assert closed["epochs_run"] == 2
    # nothing retrained: the same history, times included, from the checkpoint
    assert closed["history"] == first["history"]
    assert closed["test"] == first["test"]
    out = probe.probe("t9-mf-ssm", "tau", 0.5, 2, tmp_path / "p", refit=True)
    rec = json.loads(out.read_text())
    n = rec["selected_from"]["best_epoch"]
    row = next(r for r in closed["history"] if r["epoch"] == n)
    assert rec["read_from_ahead"]["epoch"] == n
    assert rec["test"]["recall@20"] == row["test_recall@20"]


def test_the_bpr_pairs_finish_script_names_the_pairs_own_files(monkeypatch):
    """``results/bpr_long/finish.sh`` hard-codes the pair's record and checkpoint (it runs
    in the pinned worktree): they must be the names probe.py and reproduce.py give them."""
    mods = {}
    for name, path in [
        ("reproduce", ROOT / "examples" / "reproduce.py"),
        ("probe", ROOT / "examples" / "results" / "probe.py"),
    ]:
        spec = importlib.util.spec_from_file_location(f"_finish_{name}", path)
        mods[name] = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, mods[name])  # for its dataclasses
        spec.loader.exec_module(mods[name])
    script = (ROOT / "examples" / "results" / "bpr_long" / "finish.sh").read_text()
    resume = (ROOT / "examples" / "results" / "bpr_long" / "resume.sh").read_text()
    args_line = next(ln for ln in script.splitlines() if ln.startswith("args=("))
    assert args_line in resume.splitlines()  # the same runs as resume.sh starts
    cell_id, key, value, epochs, out_dir, budget = args_line.removeprefix("args=(")[:-1].split()
    run, record, _ = mods["probe"].probe_names(
        cell_id, {key: int(value)}, int(epochs), Path(out_dir), float(budget)
    )
    cell = mods["reproduce"].BY_ID[cell_id]
    tag = mods["reproduce"].point_tag({**cell.loss_kwargs, "epochs": int(epochs)})
    ckpt = f"runs/repro_checkpoints/{run}/refit-{tag}/last.pt"
    assert f'record="$main/{record.as_posix()}"' in script
    assert f'ahead_ckpt="$main/{ckpt}"' in script
    assert "--refit-ahead 1000" in script and f" {epochs} " in args_line


def test_a_gpu_run_keeps_out_of_the_equal_time_view(repro):
    """A cell reported from a GPU run shows 'GPU run' for its 600-s column, and the
    equal-training-time section (CPU minutes) shows its earlier CPU run instead, marked."""
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    path = repro.OUT / "t9-mf-ssm.json"
    rec = json.loads(path.read_text())
    (repro.OUT / "t9-mf-ssm_cpu_budget60.json").write_text(json.dumps(rec))
    rec["machine"] = "Some GPU (CUDA 13.0), 16 cores, Xeon, torch 2.11.0"
    path.write_text(json.dumps(rec))
    repro.write_page()
    page = repro.PAGE.read_text()
    row = next(line for line in page.splitlines() if line.startswith("| MF + SSM | 0."))
    assert "(Some GPU)" in row and "| GPU run |" in row
    assert "earlier CPU run (t9-mf-ssm_cpu_budget60.json)" in page
    (repro.OUT / "t9-mf-ssm_cpu_budget60.json").unlink()
    repro.write_page()
    assert "earlier CPU run (" not in repro.PAGE.read_text()  # no row without a CPU run


def test_a_cells_seed_changes_the_initialisation_and_draws_not_the_split(repro, monkeypatch):
    import dataclasses

    cell = dataclasses.replace(repro.BY_ID["t9-mf-ssm"], epochs=1, grid={})
    seen = []
    load = datasets.load  # the fixture's toy data

    def spy(name, **kw):
        seen.append(kw)
        return load(name, **kw)

    monkeypatch.setattr(datasets, "load", spy)
    a = repro.run_cell(cell, None, eval_every=1)
    b = repro.run_cell(dataclasses.replace(cell, id="t9-seed1", seed=1), None, eval_every=1)
    again = repro.run_cell(dataclasses.replace(cell, id="t9-seed0"), None, eval_every=1)
    assert a["history"][0]["loss"] == again["history"][0]["loss"]
    assert a["history"][0]["loss"] != b["history"][0]["loss"]
    assert all(kw.get("seed") == 0 for kw in seen) and len(seen) == 3  # one carve for all


def test_the_bce_bias_cells_differ_from_the_paper_cell_only_in_the_bias():
    mod = _real_cells()
    plain = mod.BY_ID["t1-lightgcn-bce"]
    for cid, extra in (
        ("t1-lightgcn-bce-bias", {"logit_bias": -math.log(4)}),
        ("t1-lightgcn-bce-learned-bias", {"learn_bias": True}),
    ):
        cell = mod.BY_ID[cid]
        assert cell.loss_kwargs == {**plain.loss_kwargs, **extra}
        same = ("model", "loss", "epochs", "lr", "l2", "sampling", "patience")
        assert all(getattr(cell, f) == getattr(plain, f) for f in same), cid


def test_the_committed_records_were_trained_with_their_cells_settings():
    """The page puts a cell's record beside the cell's command: a record trained with other
    loss arguments than the cell now names (the cell changed, its record did not) would show
    another recipe's number. Grid keys take the value the record's grid chose."""
    mod = _real_cells()
    checked = 0
    for cell in mod.CELLS:
        if cell.select_from or mod.source_id(cell) != cell.id:
            continue  # trains nothing itself; its source is checked
        for path in (mod.OUT / f"{cell.id}.json", mod.OUT / "refit" / f"{cell.id}.json"):
            rec = json.loads(path.read_text()) if path.exists() else {}
            if "loss_kwargs" not in rec:  # not run yet, or recorded before the field existed
                continue
            chosen = {k: rec["loss_kwargs"].get(k) for k in cell.grid}
            assert all(isinstance(v, (int, float)) for v in chosen.values()), (cell.id, chosen)
            expected = {**cell.loss_kwargs, **chosen}
            assert rec["loss_kwargs"] == expected, f"{path.name} was not trained as {cell.id}"
            checked += 1
    assert checked >= 20


def test_a_checkpoint_past_the_runs_epochs_is_refused(repro):
    """A shorter run of the same cell (e.g. a probe with fewer epochs) must not resume a
    longer run's checkpoint: its record would report the longer run's best epoch."""
    cell = repro.BY_ID["t9-mf-ssm"]
    repro.run_cell(cell, None)  # 2 epochs, checkpointed
    shorter = dataclasses.replace(cell, epochs=cell.epochs - 1)
    with pytest.raises(SystemExit, match=r"past this run's \d+ epochs"):
        repro.run_cell(shorter, None)


def test_a_selection_follows_validation_where_test_disagrees(repro, monkeypatch):
    """Hand-written records whose validation and test rank the sources oppositely: the
    choice (and the score it reports) follows validation only."""
    sel = repro.Cell(
        "t9-sel", 2, "chosen", "toy", "mf", "ssm", {"tau": 0.1}, published=(0.5, None),
        select_from=("t9-a", "t9-b"),
    )  # fmt: skip
    monkeypatch.setattr(repro, "BY_ID", {**repro.BY_ID, sel.id: sel})
    repro.OUT.mkdir(parents=True, exist_ok=True)
    hist = {
        "t9-a": [{"epoch": 1, "val_ndcg@20": 0.30, "test_ndcg@20": 0.90}],
        "t9-b": [
            {"epoch": 1, "val_ndcg@20": 0.20, "test_ndcg@20": 0.95},
            {"epoch": 2, "val_ndcg@20": 0.50, "test_ndcg@20": 0.10},
        ],
    }
    for sid, rows in hist.items():
        (repro.OUT / f"{sid}.json").write_text(json.dumps({"cell": sid, "history": rows}))
    chosen, missing, scores = repro.selection(sel)
    assert (chosen, missing) == ("t9-b", [])
    assert scores == {"t9-a": 0.30, "t9-b": 0.50}


def test_unknown_tables_and_a_tables_refit_ahead_are_refused(repro, capsys):
    """Both returned 0 having trained nothing."""
    with pytest.raises(SystemExit):
        repro.main(["--table", "99"])
    assert "unknown table(s) [99]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        repro.main(["--table", "1", "--refit-ahead", "5"])
    assert "--refit-ahead needs --cell" in capsys.readouterr().err


def test_reading_under_another_similarity_stops_where_a_run_monitoring_it_would(repro):
    """A maximum under ``sim`` that comes after the patience under ``sim`` ran out is one a
    run monitoring ``sim`` never reaches: it is not chosen."""
    vals = [0.10, 0.12, 0.11, 0.11, 0.115, 0.13]  # patience 3 runs out at epoch 5
    hist = [
        {"epoch": e, "elapsed_s": float(e), "val_ndcg@20": 0.5, "test_recall@20": 0.5,
         "val_cos_ndcg@20": v, "test_cos_recall@20": v / 2}
        for e, v in enumerate(vals, start=1)
    ]  # fmt: skip
    rec = {"cell": "t9-ip", "history": hist}
    free = repro.read_under(rec, "cos")
    assert free["best_epoch"] == 6 and "stopped_epoch" not in free
    stopped = repro.read_under(rec, "cos", patience=3)
    assert stopped["best_epoch"] == 2 and stopped["stopped_epoch"] == 5
    assert stopped["test"]["recall@20"] == pytest.approx(0.06)
    # never before min_epochs, as the trainer; a longer patience reaches the later maximum
    assert repro.read_under(rec, "cos", patience=3, min_epochs=6)["best_epoch"] == 6
    assert repro.read_under(rec, "cos", patience=4)["best_epoch"] == 6


def test_the_page_gives_the_computed_tau0_of_the_reported_epoch(repro):
    """An Adap-τ row reports the metrics of its best-validation epoch: its τ0 must be that
    epoch's too (the page printed the last epoch's beside the best epoch's metrics)."""
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    path = repro.OUT / "t9-mf-ssm.json"
    rec = json.loads(path.read_text())
    for row in rec["history"]:
        row["tau0"] = 0.1 + row["epoch"] / 1000  # 0.101, 0.102, ...
    rec["best_epoch"] = rec["history"][0]["epoch"]
    path.write_text(json.dumps(rec))
    assert repro.main(["--page"]) == 0
    page = repro.PAGE.read_text()
    assert f"computed τ0 {0.1 + rec['best_epoch'] / 1000:.4f} (epoch {rec['best_epoch']})" in page


def test_the_page_names_the_machines_of_refits_too(repro):
    assert repro.main(["--cell", "t9-mf-ssm"]) == 0
    assert repro.main(["--cell", "t9-mf-ssm", "--refit"]) == 0
    path = repro.OUT / "refit" / "t9-mf-ssm.json"
    refit = json.loads(path.read_text())
    path.write_text(json.dumps({**refit, "machine": "the refit's own machine"}))
    assert repro.main(["--page"]) == 0
    machines = next(r for r in repro.PAGE.read_text().splitlines() if r.startswith("Machines: "))
    assert "the refit's own machine" in machines
    validation = json.loads((repro.OUT / "t9-mf-ssm.json").read_text())["machine"]
    assert validation in machines
