"""Runs the code cells of ``examples/explore.ipynb`` top to bottom in one namespace (what
a kernel would do, without needing Jupyter), on a small budget."""

import json
import time
from pathlib import Path

import pytest

from tests.conftest import data_dir

pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "explore.ipynb"


def _load() -> dict:
    return json.loads(NOTEBOOK.read_text())


def _run(monkeypatch, **env: str) -> dict:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ns: dict = {"__name__": "__main__"}
    for cell in _load()["cells"]:
        if cell["cell_type"] == "code":
            code = compile("".join(cell["source"]), f"{NOTEBOOK.name}:{cell['id']}", "exec")
            exec(code, ns)
    return ns


def test_notebook_is_a_clean_v4_notebook():
    nb = _load()
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 8
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


def test_notebook_validates_with_nbformat():
    nbformat = pytest.importorskip("nbformat")
    nbformat.validate(nbformat.reads(NOTEBOOK.read_text(), as_version=4))


def _check(ns: dict) -> None:
    from matplotlib.figure import Figure

    assert set(ns["models"]) == {"MF", "LightGCN"}
    for t in ns["tails"].values():
        assert abs(float(t.table["recall"].sum()) - t.recall) < 1e-9
    assert ns["check"]["count"].sum() > 0
    assert isinstance(ns["plots"].plot_similarity(ns["sims"]), Figure)


def test_notebook_runs_on_synthetic_data(monkeypatch):
    t0 = time.perf_counter()
    ns = _run(monkeypatch, PYG_CF_NB_DATASET="synthetic", PYG_CF_NB_EPOCHS="1",
              PYG_CF_NB_MAX_STEPS="3")  # fmt: skip
    _check(ns)
    assert time.perf_counter() - t0 < 120


@pytest.mark.slow
@pytest.mark.skipif(data_dir("ml-1m") is None, reason="ML-1M not available")
def test_notebook_runs_on_ml1m(monkeypatch):
    ns = _run(monkeypatch, PYG_CF_NB_DATASET="ml-1m", PYG_CF_NB_EPOCHS="1",
              PYG_CF_NB_MAX_STEPS="20")  # fmt: skip
    _check(ns)
