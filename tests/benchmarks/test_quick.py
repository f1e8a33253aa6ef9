"""Every benchmark's ``--quick`` mode runs and writes its results table (so that the scripts
cannot rot)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [
    "bench_train_step",
    "bench_eval",
    "bench_time_to_quality",
    "bench_scale",
    "bench_negatives",
    "bench_softmax",
    "bench_svdpp_step",
    "bench_table_grads",
    "bench_optim",
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_mode_writes_a_table(name, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    extra = ["--results-dir", str(tmp_path), "--threads", "1"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / f"{name}_quick.md").read_text()  # smoke runs never overwrite results
    assert "## Machine" in text and "CPU:" in text and "shared" in text
    assert text.count("|---") >= 1  # a results table
    assert "failed" not in text
    assert "| " in proc.stdout  # the table is printed too
    if name == "bench_scale":  # the cost model: per-node cost and the linear bound
        assert "µs per subgraph node" in text and "nodes / fan-out bound" in text
        assert "Cost model" in text and "s per million interactions" in text
        assert "forward() then gather" in text  # the sampled step's path before the rows


def test_rewriting_results_keeps_the_notes(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _common import write_results
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(sys, "argv", ["bench_x.py"])
    path = write_results("x", "X", ["## Table", "", "| a |", "|---|", "| 1 |"], tmp_path)
    assert "## Notes" not in path.read_text()
    path.write_text(path.read_text() + "\n## Notes\n\n- run 1: 1 ms\n- run 2: 2 ms\n")
    write_results("x", "X", ["## Table", "", "| a |", "|---|", "| 3 |"], tmp_path)
    text = path.read_text()
    assert "| 3 |" in text and "| 1 |" not in text  # the new table replaces the old
    assert text.count("## Notes") == 1 and text.rstrip().endswith("- run 2: 2 ms")
    assert text.index("| 3 |") < text.index("## Notes")


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--fanout", "2,x"], "--fanout"),
        (["--fanout", "5,-1"], "--fanout"),  # no fan-out bound to measure (was: negative bounds)
        (["--sizes", "1000,-5"], "--sizes"),
    ],
)
def test_bench_scale_names_a_bad_list(args, flag, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and flag in proc.stderr  # a usage error, before any run
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["bench_negatives", "bench_softmax", "bench_time_to_quality"])
def test_cpu_only_benchmarks_refuse_a_cuda_device(name, tmp_path):
    """These time the CPU whatever ``--device`` says: refused, not a results file claiming the
    GPU."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", "--device", "cuda",
         "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "CPU only" in proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("script", "args", "flag"),
    [
        ("bench_time_to_quality", ["--modes", "full,nope"], "--modes"),
        ("bench_time_to_quality", ["--max-epochs", "0"], "--max-epochs"),
        ("bench_time_to_quality", ["--fanouts", "10,x"], "--fanouts"),
        ("bench_train_step", ["--fanouts", "10;x"], "--fanouts"),
    ],
)
def test_bad_options_are_usage_errors(script, args, flag):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and flag in proc.stderr  # a usage error, before any run
    assert "Traceback" not in proc.stderr
