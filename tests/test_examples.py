"""The example scripts under ``examples/`` (other than ``reproduce.py``): usage errors on bad
arguments, runs without the optional matplotlib, outputs where they are asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import data_dir

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
needs_ml1m = pytest.mark.skipif(data_dir("ml-1m") is None, reason="ML-1M not bundled")

# runs a script as __main__ with matplotlib made unimportable
NO_MPL = (
    "import runpy, sys; sys.modules['matplotlib'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=cwd,
        timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("script", "args", "flag"),
    [
        ("magnitude_vs_degree", ["--models", "MF,nope"], "--models"),
        ("magnitude_vs_degree", ["--alpha0", "0,x"], "--alpha0"),
        ("magnitude_vs_degree", ["--dataset", "nope"], "--dataset"),
        ("long_tail", ["--dataset", "nope"], "--dataset"),
    ],
)
def test_bad_arguments_are_usage_errors(script, args, flag, tmp_path):
    proc = _run([str(EXAMPLES / f"{script}.py"), *args], cwd=tmp_path)
    assert proc.returncode == 2 and flag in proc.stderr  # before any data is loaded
    assert "Traceback" not in proc.stderr


@needs_ml1m
def test_magnitude_vs_degree_without_matplotlib(tmp_path):
    out = tmp_path / "slopes.json"
    args = ["--dataset", "ml-1m", "--epochs", "1", "--max-steps", "1", "--models", "MF"]
    args += ["--out", str(out), "--plots", str(tmp_path / "plots")]
    proc = _run(["-c", NO_MPL, str(EXAMPLES / "magnitude_vs_degree.py"), *args], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no plots" in proc.stdout
    assert set(json.loads(out.read_text())["models"]) == {"MF"}
    assert not (tmp_path / "plots").exists()


@needs_ml1m
def test_long_tail_writes_to_out_dir_without_matplotlib(tmp_path):
    out = tmp_path / "lt"
    args = ["--dataset", "ml-1m", "--max-steps", "1", "--losses", "ssm", "--out-dir", str(out)]
    proc = _run(["-c", NO_MPL, str(EXAMPLES / "long_tail.py"), *args], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no plot" in proc.stdout
    rec = json.loads((out / "long_tail_ssm.json").read_text())
    assert rec["dataset"] == "ml-1m" and rec["max_steps_per_epoch"] == 1
    assert len(rec["groups"]["recall"]) == 10
    assert abs(sum(rec["groups"]["recall"]) - rec["recall@20"]) < 1e-9


@needs_ml1m
def test_losses_proof_smoke_run_keeps_to_its_out_dir(tmp_path):
    """A smoke run (relative OUT, from another directory) writes its JSONs and checkpoints
    under OUT: it neither resumes from nor overwrites the recorded runs' checkpoints."""
    env = dict(ENV, OUT="p", DATASET="ml-1m", EXTRA="--max-steps 2 --epochs 1")
    proc = subprocess.run(
        ["bash", str(EXAMPLES / "run_losses_proof.sh")], capture_output=True, text=True,
        env=env, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("losses_mf_adaptau_authors_g16_ml-1m", "losses_mf_mml_shared800_ml-1m"):
        assert (tmp_path / "p" / f"{name}.json").is_file()
        assert (tmp_path / "p" / f"ck_{name}" / "last.pt").is_file()
