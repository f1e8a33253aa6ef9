"""Every public name is documented, and every registered loss states its equation and paper.

Public names are those in ``pyg_cf.__all__`` and in the ``__all__`` of each subpackage of
:mod:`pyg_cf` (a subpackage without ``__all__`` exports nothing yet). Modules, classes and
functions need their own docstring (inherited ones and the signature that
:func:`dataclasses.dataclass` fills in do not count). Constants cannot carry a docstring;
they need a Sphinx doc comment (``#:`` above the assignment, or a string literal right
after it) in the module that defines them, or a mention as ``NAME`` in the docstring of
that module or of the exporting package.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import pyg_cf
from pyg_cf.losses import list_losses
from pyg_cf.losses.registry import _REGISTRY


def _subpackages() -> list[ModuleType]:
    return [
        importlib.import_module(f"pyg_cf.{info.name}")
        for info in pkgutil.iter_modules(pyg_cf.__path__)
        if info.ispkg
    ]


def _public_names() -> list[tuple[ModuleType, str]]:
    out = [(pyg_cf, name) for name in pyg_cf.__all__]
    for pkg in _subpackages():
        out += [(pkg, name) for name in getattr(pkg, "__all__", [])]
    return out


def _own_doc(obj: Any) -> str:
    """``obj``'s own docstring: not inherited, not a dataclass's generated signature."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not isinstance(doc, str):
        return ""
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        if doc.startswith(f"{obj.__name__}("):  # filled in by @dataclass
            return ""
    return doc.strip()


def _modules_of(pkg: ModuleType) -> Iterator[ModuleType]:
    """``pkg`` and, lazily, its submodules (those whose optional imports are missing are
    skipped: they cannot be documented here anyway)."""
    yield pkg
    if hasattr(pkg, "__path__"):
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
            try:
                yield importlib.import_module(info.name)
            except ImportError:
                continue


def _has_doc_comment(module: ModuleType, name: str) -> bool:
    """Whether ``module`` assigns ``name`` at top level with a ``#:`` comment or a
    string literal right after the assignment (the forms autodoc renders)."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return False
    lines = source.splitlines()
    body = ast.parse(source).body
    for k, node in enumerate(body):
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        else:
            continue
        if name not in targets:
            continue
        above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
        if above.startswith("#:") or "#:" in lines[node.lineno - 1]:
            return True
        after = body[k + 1] if k + 1 < len(body) else None
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            return True
    return False


def _constant_documented(pkg: ModuleType, name: str) -> bool:
    mentioned = re.compile(rf"``{re.escape(name)}``|:(data|const|attr):`[~.\w]*{re.escape(name)}`")
    if mentioned.search(pkg.__doc__ or ""):
        return True
    for module in _modules_of(pkg):
        if _has_doc_comment(module, name):
            return True
        if name in vars(module) and mentioned.search(module.__doc__ or ""):
            return True
    return False


def test_all_lists_only_existing_names() -> None:
    missing = [f"{pkg.__name__}.{name}" for pkg, name in _public_names() if not hasattr(pkg, name)]
    assert not missing, f"names in __all__ that do not exist: {missing}"


def test_public_names_have_docstrings() -> None:
    undocumented = []
    for pkg, name in _public_names():
        obj = getattr(pkg, name)
        if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj):
            ok = bool(_own_doc(obj))
        else:
            ok = _constant_documented(pkg, name)
        if not ok:
            undocumented.append(f"{pkg.__name__}.{name}")
    assert not undocumented, (
        f"public names without a docstring: {undocumented} (constants: add a '#:' comment "
        "above the assignment)"
    )


def test_subpackages_in_top_level_all_have_docstrings() -> None:
    listed = {name for name in pyg_cf.__all__ if inspect.ismodule(getattr(pyg_cf, name))}
    assert {"data", "nn", "losses", "metrics", "train"} <= listed
    for name in listed:
        assert _own_doc(getattr(pyg_cf, name)), f"pyg_cf.{name} has no module docstring"


def test_checker_rejects_missing_docs() -> None:
    # The helpers above must be able to fail: an undocumented class, a dataclass with only
    # its generated signature, and a class inheriting its parent's docstring.
    class Documented:
        """Has one."""

    class Inherits(Documented):
        pass

    @dataclasses.dataclass
    class Plain:
        x: int = 0

    def bare() -> None:
        pass

    assert _own_doc(Documented) == "Has one."
    assert _own_doc(Inherits) == ""
    assert _own_doc(Plain) == ""
    assert _own_doc(bare) == ""
    assert not _constant_documented(pyg_cf, "no_such_constant")


@pytest.mark.parametrize("name", list_losses())
def test_registered_loss_documents_equation_and_paper(name: str) -> None:
    cls = _REGISTRY[name]
    doc = _own_doc(cls)
    assert ".. math::" in doc, f"loss {name!r} ({cls.__name__}): no '.. math::' block"
    assert isinstance(cls.paper, str) and cls.paper.strip(), (
        f"loss {name!r} ({cls.__name__}): empty 'paper' attribute"
    )
