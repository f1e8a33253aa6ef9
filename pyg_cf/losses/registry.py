"""The loss registry: ``get_loss("ssm", tau=0.1)`` and ``@register_loss("name")``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import CFLoss

__all__ = ["get_loss", "list_losses", "register_loss"]

_REGISTRY: dict[str, type[CFLoss]] = {}

T = TypeVar("T", bound=type[CFLoss])


def register_loss(name: str, *, overwrite: bool = False) -> Callable[[T], T]:
    """Class decorator registering a :class:`CFLoss` subclass under ``name``.

    Example:
        >>> @register_loss("my-loss")  # doctest: +SKIP
        ... class MyLoss(CFLoss): ...
    """
    key = name.lower()

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


def list_losses() -> list[str]:
    """Names of all registered losses."""
    return sorted(_REGISTRY)


def get_loss(name: str, **kwargs: Any) -> CFLoss:
    """Instantiate the loss registered as ``name`` with ``kwargs``."""
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown loss {name!r}; registered losses: {list_losses()}")
    try:
        return _REGISTRY[key](**kwargs)
    except TypeError as e:
        raise ConfigError(f"bad arguments for loss {name!r}: {e}") from None
