"""The loss registry: ``get_loss("ssm", tau=0.1)`` and ``@register_loss("name")``."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any, TypeVar, Union

import torch
from torch import nn

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import CFLoss

__all__ = ["check_argument_types", "get_loss", "list_losses", "register_loss"]

_REGISTRY: dict[str, type[CFLoss]] = {}

T = TypeVar("T", bound=type[CFLoss])


def register_loss(name: str, *, overwrite: bool = False) -> Callable[[T], T]:
    """Class decorator registering a :class:`CFLoss` subclass under ``name``.

    Example:
        >>> @register_loss("my-loss")  # doctest: +SKIP
        ... class MyLoss(CFLoss): ...
    """
    key = _key(name, "register_loss")

    def deco(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, CFLoss)):
            raise ConfigError(f"register_loss({name!r}) expects a CFLoss subclass, got {cls!r}")
        if key in _REGISTRY and not overwrite and _REGISTRY[key] is not cls:
            raise ConfigError(
                f"a loss named {name!r} is already registered (pass overwrite=True to replace it)"
            )
        _REGISTRY[key] = cls
        cls.registry_name = key  # type: ignore[attr-defined]
        return cls

    return deco


def _key(name: Any, what: str) -> str:
    """The registry key of ``name`` (lower case); a :class:`ConfigError` unless it is a
    string."""
    if not isinstance(name, str):
        raise ConfigError(f"{what}: the loss name must be a string, got {name!r}")
    return name.lower()


def list_losses() -> list[str]:
    """Names of all registered losses."""
    return sorted(_REGISTRY)


def get_loss(name: str, **kwargs: Any) -> CFLoss:
    """Instantiate the loss registered as ``name`` with ``kwargs``."""
    key = _key(name, "get_loss")
    if key not in _REGISTRY:
        raise ConfigError(f"unknown loss {name!r}; registered losses: {list_losses()}")
    return construct(_REGISTRY[key], kwargs, f"loss {name!r}")


# Bases whose ``__init__`` takes no keyword argument a subclass may pass up: the walk over
# a class's bases stops there (``nn.Module.__init__(*args, **kwargs)`` refuses any)
_ROOTS = (nn.Module, object)


def _constructors(factory: Callable[..., Any]) -> list[Any]:
    """``[factory]``, or for a class the ``__init__`` of it and of its bases, most derived
    first (a subclass passing ``**kwargs`` up: its bases name them), up to but not
    including ``nn.Module`` or ``object`` (which take none)."""
    if not isinstance(factory, type):
        return [factory]
    inits = []
    for c in factory.__mro__:
        if c in _ROOTS:
            break
        if "__init__" in vars(c):
            inits.append(c.__init__)  # type: ignore[misc]
    return inits


def _accepted_names(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword arguments ``factory`` takes — for a class, those of its ``__init__`` and,
    while that passes ``**kwargs`` up, its bases' (up to ``nn.Module`` or ``object``, which
    take none: a class without an ``__init__`` of its own takes no argument) — or ``None``
    where it takes any."""
    names: set[str] = set()
    for target in _constructors(factory):
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):  # no signature to read: the factory judges
            return None
        names.update(
            k
            for k, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k != "self"
        )
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names
    return names if isinstance(factory, type) else None


def construct(factory: Callable[..., Any], kwargs: dict[str, Any], what: str) -> Any:
    """``factory(**kwargs)`` after checking the arguments: their types
    (:func:`check_argument_types`), that each is one ``factory`` takes, and that none it
    requires is missing — each refused with a :class:`ConfigError` that names it. An error
    raised inside the constructor itself is not caught (it is not a bad argument).

    Raises:
        ConfigError: ``"bad arguments for <what>: ..."``.
    """
    check_argument_types(factory, kwargs, what)
    accepted = _accepted_names(factory)
    if accepted is not None and (unknown := sorted(set(kwargs) - accepted)):
        raise ConfigError(
            f"bad arguments for {what}: it takes no argument {', '.join(map(repr, unknown))}; "
            f"it takes {sorted(accepted)}"
        )
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as e:  # e.g. a required argument missing
        raise ConfigError(f"bad arguments for {what}: {e}") from None
    except ValueError:  # no signature to read: the factory judges
        pass
    return factory(**kwargs)


def _conforms(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``hint``; ``None`` where the annotation is
    not one this check reads (the constructor then judges the value itself)."""
    if hint is Any:
        return True
    if isinstance(value, torch.Tensor) or (
        hasattr(value, "__array__") and not isinstance(value, Real)
    ):
        return None  # a tensor or array (a 0-dim one for a number, or for a list)
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        verdicts = [_conforms(value, h) for h in typing.get_args(hint)]
        if True in verdicts:
            return True
        return None if None in verdicts else False
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # numbers.Integral takes numpy integers; a bool is not a count
        return isinstance(value, Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, Real) and not isinstance(value, bool)
    if origin in (Sequence, list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False
        args = typing.get_args(hint)
        if len(args) != 1:  # tuple[int, str] and the like: the container only
            return True
        verdicts = [_conforms(v, args[0]) for v in value]
        return False if False in verdicts else True
    if isinstance(hint, type):
        return isinstance(value, hint)
    return None


def _describe(hint: Any) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return "a number" if hint is float else ("an integer" if hint is int else hint.__name__)
    text = str(hint).replace("collections.abc.", "").replace("typing.", "")
    return re.sub(r"<class '([\w.]+)'>", r"\1", text)


def check_argument_types(factory: Callable[..., Any], kwargs: dict[str, Any], what: str) -> None:
    """Check keyword arguments against the annotations of ``factory``'s signature before
    calling it, so that a value of the wrong kind is refused by name instead of failing
    deep inside (``tau='abc'``) or being silently converted (``num_negatives=2.5``
    truncated to 2, ``reject_positives='yes'`` taken as true). Arguments the signature
    does not name, or annotates in a way this check does not read, are left to
    ``factory``.

    Raises:
        ConfigError: ``"<what>: argument <key>=<value> must be <type>"``.
    """
    hints: dict[str, Any] = {}
    for target in reversed(_constructors(factory)):  # the class's own annotation wins over a base's
        try:
            params = inspect.signature(target).parameters
            found = typing.get_type_hints(target)
        except (NameError, TypeError, ValueError):  # unresolvable annotations: not read
            continue
        hints.update(
            (k, v)
            for k, v in found.items()
            if k in params and params[k].kind is not inspect.Parameter.VAR_KEYWORD
        )
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            hints = {k: v for k, v in hints.items() if k in params}
    for key, value in kwargs.items():
        if key not in hints:
            continue
        if _conforms(value, hints[key]) is False:
            raise ConfigError(f"{what}: argument {key}={value!r} must be {_describe(hints[key])}")
