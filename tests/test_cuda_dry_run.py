"""``tests/test_cuda.py`` only runs where a GPU is visible, which CI never has. So that it
cannot rot between GPU sessions, CI runs it against the CPU (``PYG_CF_TEST_DEVICE=cpu``):
every check must still pass there, none skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cuda_checks_pass_as_a_cpu_dry_run():
    env = {**os.environ, "PYG_CF_TEST_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = out.stdout[-3000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    assert " passed" in out.stdout and "skipped" not in out.stdout, tail
