"""The ``python -m pyg_cf train`` command line on bundled real data (tiny step budgets)."""

import json

import pytest

from pyg_cf import __main__ as cli

BASE = "train --dataset ml-1m --model mf --loss bpr --max-steps 3 --quiet --eval-every 1"


def test_resume_continues_the_same_run(tmp_path):
    ck = tmp_path / "ck"
    straight, first, second = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert cli.main([*BASE.split(), "--epochs", "2", "--output", str(straight)]) == 0
    run = [*BASE.split(), "--checkpoint-dir", str(ck), "--resume"]
    assert cli.main([*run, "--epochs", "1", "--output", str(first)]) == 0
    assert (ck / "last.pt").exists()
    assert cli.main([*run, "--epochs", "2", "--output", str(second)]) == 0
    a = json.loads(straight.read_text())
    c = json.loads(second.read_text())
    assert [r["epoch"] for r in c["history"]] == [1, 2]
    assert c["test"]["recall@20"] == pytest.approx(a["test"]["recall@20"], abs=1e-7)
    assert c["history"][1]["loss"] == pytest.approx(a["history"][1]["loss"], rel=1e-6)


def test_resume_needs_a_checkpoint_dir(capsys):
    assert cli.main([*BASE.split(), "--epochs", "1", "--resume"]) == 2
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err


def test_user_sampling_and_shared_negatives_flags(tmp_path):
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
