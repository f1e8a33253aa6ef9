"""Sphinx configuration of the pyg-cf documentation.

Build (from the repository root)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The build imports :mod:`pyg_cf` (autodoc) but never trains or loads data. Optional
accelerators (``torch-sparse``, ``torch-scatter``, ``pyg-lib``) and plotting packages are
not needed: modules import them lazily, and any that are missing here are mocked for
autodoc.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.directives.code import LiteralInclude

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the checkout, installed or not

import pyg_cf  # noqa: E402

# -- project ---------------------------------------------------------------------------------
project = "pyg-cf"
author = "pyg-cf developers"
copyright = "pyg-cf developers"
version = release = pyg_cf.__version__  # the single version source

# -- extensions ------------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",  # Markdown pages: architecture.md, CHANGELOG.md
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "README.md"]
templates_path: list[str] = []

# autodoc: members follow each module's ``__all__``; signatures carry the type hints.
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
# Mock optional packages only where they are absent, so that autodoc never fails on them.
_OPTIONAL = ("torch_sparse", "torch_scatter", "pyg_lib", "matplotlib")
autodoc_mock_imports = [m for m in _OPTIONAL if importlib.util.find_spec(m) is None]

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # ``Attributes:`` -> :ivar: fields, never duplicate attribute entries

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# -- HTML ------------------------------------------------------------------------------------
if importlib.util.find_spec("sphinx_rtd_theme") is not None:
    html_theme = "sphinx_rtd_theme"
else:  # the docs extra installs it; fall back to Sphinx's built-in theme
    html_theme = "alabaster"
html_title = f"pyg-cf {release}"
html_static_path: list[str] = []

# Pages written for this site, in reading order. Any other page dropped into ``docs/``
# (e.g. a design note) is appended to the index's table of contents automatically.
_KNOWN_PAGES = {
    "index",
    "installation",
    "quickstart",
    "concepts",
    "architecture",
    "results",
    "changelog",
}


def _extra_pages() -> list[str]:
    pages = []
    for path in sorted(DOCS.iterdir()):
        if path.suffix in (".rst", ".md") and path.stem not in _KNOWN_PAGES:
            if path.name not in exclude_patterns:
                pages.append(path.stem)
    return pages


def _append_extra_pages(app: Any, docname: str, source: list[str]) -> None:
    extra = _extra_pages()
    if docname == "index" and extra:
        entries = "".join(f"   {page}\n" for page in extra)
        source[0] += f"\n\n.. toctree::\n   :caption: More notes\n   :maxdepth: 1\n\n{entries}"


class OptionalLiteralInclude(LiteralInclude):
    """``literalinclude`` that shows a note instead of failing when the file is absent.

    Generated pages (``examples/REPRODUCTION.md``) may not exist in a fresh checkout; the build
    must pass either way.
    """

    def run(self) -> list[nodes.Node]:
        _, path = self.env.relfn2path(self.arguments[0])
        if not Path(path).is_file():
            text = f"{self.arguments[0]} has not been generated in this checkout yet."
            return [nodes.note("", nodes.paragraph(text=text))]
        return super().run()


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("optional-literalinclude", OptionalLiteralInclude)
    app.connect("source-read", _append_extra_pages)
    return {"parallel_read_safe": True}
