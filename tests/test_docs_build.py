"""The documentation builds with warnings as errors and stays true to the code.

The Sphinx build is skipped when Sphinx or MyST is not installed (``pip install -e
".[docs]"``; the ``dev`` extra that CI installs includes them). It never trains: autodoc
only imports the package.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import pyg_cf

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "pyg_cf"


def _subpackage_names() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(pyg_cf.__path__) if info.ispkg)


def test_every_subpackage_has_an_api_page() -> None:
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.rst"))
    documented = set(re.findall(r"^\.\. automodule:: (\S+)\s*$", pages, flags=re.M))
    missing = [f"pyg_cf.{n}" for n in _subpackage_names() if f"pyg_cf.{n}" not in documented]
    assert not missing, f"subpackages without '.. automodule::' in docs/api/: {missing}"


def test_architecture_module_map_lists_every_module() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    modules = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))
    missing = [
        m
        for m in modules
        if not m.endswith("/__init__.py") and f"| `{m}` |" not in text  # a module-map row
    ]
    assert not missing, (
        f"modules missing from the module map of docs/architecture.md: {missing} "
        "(add a row '| `path` | what it holds |')"
    )
    stale = [
        m
        for m in re.findall(r"^\| `([\w/]+\.py)` \|", text, flags=re.M)
        if not (PACKAGE / m).is_file()
    ]
    assert not stale, f"docs/architecture.md lists modules that do not exist: {stale}"


def _python_block(markdown: str, section: str) -> str:
    body = markdown.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)\n\s*```", body, flags=re.S)
    assert match, f"no python block under '## {section}'"
    return textwrap.dedent(match.group(1))


def test_architecture_add_a_loss_recipe_runs() -> None:
    from pyg_cf.losses import LossBatch, get_loss
    from pyg_cf.losses.registry import _REGISTRY

    code = _python_block(
        (DOCS / "architecture.md").read_text(encoding="utf-8"), "How to add a loss"
    )
    namespace: dict[str, object] = {"__name__": "architecture_example"}
    before = dict(_REGISTRY)
    try:
        exec(compile(code, "docs/architecture.md", "exec"), namespace)
        loss = get_loss("sq-hinge", margin=0.5, num_negatives=3)
        assert (loss.negatives, loss.num_negatives) == ("sampled", 3)
        g = torch.Generator().manual_seed(0)
        u, p = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        n = torch.randn(4, 3, 8, generator=g)
        batch = LossBatch(torch.arange(4), torch.arange(4), u, p, neg_emb=n)
        want = sum(
            max(0.0, 0.5 + float(u[r] @ n[r, m]) - float(u[r] @ p[r])) ** 2
            for r in range(4)
            for m in range(3)
        ) / (4 * 3)
        assert float(loss(batch)) == pytest.approx(want, rel=1e-5)
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(before)


def test_results_page_tolerates_a_missing_results_file() -> None:
    # The results page includes examples/RESULTS.md through the optional directive, so a
    # fresh checkout without generated results still builds.
    text = (DOCS / "results.rst").read_text(encoding="utf-8")
    assert ".. optional-literalinclude:: ../examples/RESULTS.md" in text


@pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("myst_parser") is None,
    reason="Sphinx and myst-parser not installed (pip install -e '.[docs]')",
)
def test_docs_build_html_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "html"
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "-d",
        str(tmp_path / "doctrees"),
        str(DOCS),
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    for page in ("index", "installation", "quickstart", "concepts", "results", "architecture"):
        assert (out / f"{page}.html").is_file(), f"{page}.html not built"
    nn_page = (out / "api" / "nn.html").read_text(encoding="utf-8")
    assert 'id="pyg_cf.nn.BipartiteNormConv"' in nn_page  # autodoc ran
    losses_page = (out / "api" / "losses.html").read_text(encoding="utf-8")
    assert 'id="pyg_cf.losses.SampledSoftmaxLoss"' in losses_page
    assert pyg_cf.__version__ in (out / "index.html").read_text(encoding="utf-8")
