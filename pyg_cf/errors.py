"""The one exception family of :mod:`pyg_cf`.

Every error raised on purpose by the package derives from :class:`PygCFError`, which is
itself a :class:`ValueError`, so callers may catch either. Messages name the file, line,
field or argument at fault.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DataFormatError", "PygCFError"]


class PygCFError(ValueError):
    """Base class of all errors raised on purpose by :mod:`pyg_cf`."""


class DataFormatError(PygCFError):
    """A data file or frame is malformed.

    Args:
        message: What is wrong.
        path: The file at fault, if any.
        line: The 1-based line number at fault, if any.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class ConfigError(PygCFError):
    """An argument or setting has an invalid value."""
