"""Readers for the usual interaction file formats.

Both readers return a :class:`pandas.DataFrame` with columns ``user`` and ``item`` (raw ids)
and, for edge lists, optional ``rating`` and ``timestamp`` columns. Ids are not remapped
here; see :func:`pyg_cf.data.interactions.encode_ids`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pyg_cf.errors import ConfigError, DataFormatError

__all__ = [
    "read_adjacency_list",
    "read_adjacency_list_with_lines",
    "read_edge_list",
    "read_edge_list_with_lines",
]

log = logging.getLogger(__name__)

_WS = re.compile(r"\s+")
_FIELDS = re.compile(r"[\s,;]+")
_INT = re.compile(r"[+-]?[0-9]+")
# a plain decimal number: ASCII digits, optional sign, point and exponent (Python's float
# would also take '1_0' as 10 and non-ASCII digits such as '\u0663' as 3)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# spellings of non-finite values, refused by the finite check with their own message
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_INT64_MAX = int(np.iinfo(np.int64).max)
#: with ``numeric_ids=False``, a first line whose user or item field is one of these column
#: names (any case) is a header, never string ids
_HEADER_NAMES = frozenset({"user", "item", "user_id", "item_id", "userid", "itemid"})


def _open_lines(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataFormatError("file does not exist", path=path)
    if os.path.isdir(path):
        raise DataFormatError("expected a file but found a directory", path=path)
    try:
        # utf-8-sig drops a byte-order mark; universal newlines turn '\r\n' and '\r' into
        # '\n'. Split on '\n' only: str.splitlines would also break lines at form feeds,
        # vertical tabs and other Unicode separators, shifting the reported line numbers.
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"file is not UTF-8 text ({e.reason})", path=path) from e
    if not any(line.strip() for line in lines):
        raise DataFormatError("file is empty", path=path)
    return lines


def _parse_int(token: str, path: str, lineno: int, field: str) -> int:
    """Parse an id strictly: ASCII digits with an optional sign (Python's ``int`` would also
    take ``'1_0'`` as 10, so that ids ``'1_0'`` and ``'10'`` would silently merge)."""
    if not _INT.fullmatch(token):
        raise DataFormatError(
            f"field '{field}' must be a non-negative integer id, got {token!r}", path, lineno
        )
    value = int(token)
    if value < 0:
        raise DataFormatError(f"field '{field}' is a negative id ({value})", path, lineno)
    if value > _INT64_MAX:
        raise DataFormatError(f"field '{field}' is too large for int64 ({token})", path, lineno)
    return value


def _parse_rating(token: str, path: str, lineno: int) -> float:
    """Parse a rating strictly: a plain decimal number (see ``_FLOAT``); ``nan`` and
    ``inf`` pass here and are refused later as not finite."""
    if not (_FLOAT.fullmatch(token) or _NON_FINITE.fullmatch(token)):
        raise DataFormatError(
            f"field 'rating' must be a number, got {token!r} (a plain decimal number: "
            "ASCII digits, optional sign, point and exponent)",
            path,
            lineno,
        )
    return float(token)


def _parse_integer_field(token: str, path: str, lineno: int, field: str) -> int:
    """Parse an integer field such as ``timestamp`` strictly: ASCII digits with an
    optional sign, within int64 (a fractional value is refused, never truncated)."""
    value = int(token) if _INT.fullmatch(token) else None
    if value is None or not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise DataFormatError(
            f"field '{field}' must be an integer (int64), got {token!r}", path, lineno
        )
    return value


def _plain(line: str) -> bool:
    """Whether numpy's integer parsing of the tokens of ``line`` is as strict as
    :func:`_parse_int` (no digit group separators, no non-ASCII digits)."""
    return line.isascii() and "_" not in line


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _header_error(tokens: Sequence[str], path: str, lineno: int, hint: str) -> DataFormatError:
    return DataFormatError(
        f"the first line ({', '.join(repr(t) for t in tokens)}) looks like a header, "
        f"not ids; {hint}",
        path,
        lineno,
    )


def read_adjacency_list(
    path: str | os.PathLike[str],
    allow_empty: bool = False,
) -> pd.DataFrame:
    r"""Read a LightGCN-style adjacency list (``train.txt`` / ``test.txt``).

    Each non-blank line is ``user item item ...`` with non-negative integer ids separated by
    white space.

    Args:
        path: The file to read.
        allow_empty: If ``False`` (default), a line holding a user but no items is an error;
            if ``True`` such a line is skipped (the user then has no interaction in this file)
            and the skipped lines are counted in an INFO log line.

    Returns:
        A frame with ``int64`` columns ``user`` and ``item``, one row per listed pair, in file
        order.

    Raises:
        DataFormatError: naming the file and line, for a missing or empty file, a
            non-integer or negative id, or a user without items.
    """
    return read_adjacency_list_with_lines(path, allow_empty)[0]


def read_adjacency_list_with_lines(
    path: str | os.PathLike[str], allow_empty: bool = False
) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`read_adjacency_list` plus the 1-based line number of every row (so that
    later checks can name the line)."""
    spath = os.fspath(path)
    lines = _open_lines(spath)
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    rows_lines: list[np.ndarray] = []
    skipped: list[int] = []  # lines of a user without items, with allow_empty
    data_lines = [(k, ln.strip()) for k, ln in enumerate(lines, start=1) if ln.strip()]
    if len(data_lines) >= 2:
        # a non-numeric first line followed by numeric ones is a header
        (k0, first), (_, second) = data_lines[0], data_lines[1]
        head = _WS.split(first)
        if not any(_is_number(t) for t in head[:2]) and _is_number(_WS.split(second)[0]):
            raise _header_error(head, spath, k0, "remove the header line")
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if "," in line or ";" in line or "\t" in raw.strip(" "):
            if "," in line or ";" in line:
                raise DataFormatError(
                    "adjacency lists are separated by spaces; found ',' or ';' "
                    "(is this an edge list? use read_edge_list)",
                    spath,
                    lineno,
                )
        tokens = _WS.split(line)
        try:
            if not _plain(line):
                raise ValueError(line)
            ids = np.array(tokens, dtype=np.int64)
        except (ValueError, OverflowError):
            # the strict parser names the bad field; a line of valid ids that numpy did not
            # take (non-ASCII white space between them) is kept as parsed here
            ids = np.array(
                [
                    _parse_int(tok, spath, lineno, "user" if k == 0 else f"item #{k}")
                    for k, tok in enumerate(tokens)
                ],
                dtype=np.int64,
            )
        if (ids < 0).any():
            k = int(np.nonzero(ids < 0)[0][0])
            raise DataFormatError(
                f"field '{'user' if k == 0 else f'item #{k}'}' is a negative id ({ids[k]})",
                spath,
                lineno,
            )
        if ids.size < 2:
            if allow_empty:
                skipped.append(lineno)
                continue
            raise DataFormatError(
                f"user {ids[0]} has no items (pass allow_empty=True to skip such lines)",
                spath,
                lineno,
            )
        users.append(np.full(ids.size - 1, ids[0], dtype=np.int64))
        items.append(ids[1:])
        rows_lines.append(np.full(ids.size - 1, lineno, dtype=np.int64))
    if skipped:
        log.info(
            "%s: skipped %d line(s) holding a user but no items (first: line %d)",
            spath,
            len(skipped),
            skipped[0],
        )
    if not users:
        raise DataFormatError("file holds no interactions", path=spath)
    df = pd.DataFrame({"user": np.concatenate(users), "item": np.concatenate(items)})
    return df, np.concatenate(rows_lines)


def read_edge_list(
    path: str | os.PathLike[str],
    sep: str | None = None,
    columns: Sequence[str] = ("user", "item", "rating", "timestamp"),
    header: bool = False,
    numeric_ids: bool = True,
) -> pd.DataFrame:
    r"""Read an edge list: one interaction per line, ``user item [rating] [timestamp]``.

    Args:
        path: The file to read.
        sep: Field separator, a non-empty string; ``None`` (default) splits on any run of
            white space.
        columns: Names of the fields in order, each once; ``user`` and ``item`` are
            required, the optional trailing fields may be absent from the file.
        header: Whether the first non-blank line is a header to skip.
        numeric_ids: If ``True`` (default) ids must be non-negative integers; if ``False`` ids
            are kept as strings (remapped later by :func:`encode_ids`); with ``header=False``
            a first line whose user or item field is a column name (``user``, ``item``,
            ``user_id``, ``item_id``, ``userid``, ``itemid``, any case) is then refused as
            a header.

    Returns:
        A frame with ``user``, ``item`` and the optional columns present in the file
        (``rating`` as ``float64``, ``timestamp`` as ``int64``).

    Raises:
        DataFormatError: naming the file and line for a missing or empty file, a wrong number
            of fields, an empty, non-integer or negative id, a header line found when
            ``header`` is ``False``, a first line of numbers only (data, not a header) when
            ``header`` is ``True``, mixed separators, a rating that is not a plain finite
            decimal number, or a timestamp that is not an integer.
        ConfigError: for an empty ``sep`` or a name repeated in ``columns``.
    """
    return read_edge_list_with_lines(path, sep, columns, header, numeric_ids)[0]


def read_edge_list_with_lines(
    path: str | os.PathLike[str],
    sep: str | None = None,
    columns: Sequence[str] = ("user", "item", "rating", "timestamp"),
    header: bool = False,
    numeric_ids: bool = True,
) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`read_edge_list` plus the 1-based line number of every row."""
    spath = os.fspath(path)
    cols = list(columns)
    if cols[:2] != ["user", "item"]:
        raise DataFormatError(f"columns must start with 'user', 'item', got {cols}")
    repeated = sorted({c for c in cols if cols.count(c) > 1})
    if repeated:
        raise ConfigError(f"columns must name each field once; repeated: {repeated} in {cols}")
    if sep is not None and (not isinstance(sep, str) or sep == ""):
        raise ConfigError(f"sep must be a non-empty string or None (white space), got {sep!r}")
    lines = _open_lines(spath)
    rows: list[list[str]] = []
    linenos: list[int] = []
    odd: list[int] = []  # rows whose ids numpy would parse more leniently than _parse_int
    width: int | None = None
    skipped_header = not header
    other_seps = [s for s in ("\t", ",", ";", " ") if s != sep]
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if not skipped_header:
            skipped_header = True
            # split at sep as the data lines are (with sep=None also at ',' and ';': a
            # comma-separated line read without sep is data too); empty fields (a
            # separator doubled or at an end) say nothing about whether this is a header
            head = _FIELDS.split(line) if sep is None else [f.strip() for f in line.split(sep)]
            tokens = [f for f in head if f]
            if tokens and all(_is_number(f) for f in tokens):
                raise DataFormatError(
                    "header=True but this line is all numbers, i.e. data: it would be "
                    "dropped; pass header=False",
                    spath,
                    lineno,
                )
            continue
        if sep is None:
            fields = _WS.split(line)
            if len(fields) == 1 and ("," in line or ";" in line):
                raise DataFormatError(
                    "no white space between fields; pass sep=',' (or ';') for this file",
                    spath,
                    lineno,
                )
        else:
            fields = [f.strip() for f in line.split(sep)]
            if len(fields) == 1 and any(s in line for s in other_seps):
                raise DataFormatError(
                    f"separator {sep!r} not found but another separator is present "
                    "(mixed separators?)",
                    spath,
                    lineno,
                )
        if width is None:
            width = len(fields)
            if width < 2 or width > len(cols):
                raise DataFormatError(
                    f"expected 2 to {len(cols)} fields ({', '.join(cols)}), found {width}",
                    spath,
                    lineno,
                )
        elif len(fields) != width:
            hint = "mixed separators?"
            if not header and not any(_is_number(t) for t in rows[0][:2]):
                hint = (
                    f"line {linenos[0]} ({', '.join(repr(t) for t in rows[0])}) was read as "
                    "data but looks like a header: pass header=True"
                )
            raise DataFormatError(
                f"expected {width} fields like line {linenos[0]}, found {len(fields)} ({hint})",
                spath,
                lineno,
            )
        for name, token in zip(("user", "item"), fields):
            if not token:
                raise DataFormatError(f"field '{name}' is an empty id", spath, lineno)
        if not _plain(line):
            odd.append(len(rows))
        rows.append(fields)
        linenos.append(lineno)
    if not rows:
        raise DataFormatError("file holds no interactions", path=spath)
    assert width is not None
    if (
        not header
        and not any(_is_number(t) for t in rows[0][:2])
        and (len(rows) == 1 or _is_number(rows[1][0]) or not numeric_ids)
    ):
        if numeric_ids:
            raise _header_error(rows[0], spath, linenos[0], "pass header=True")
        if {t.lower() for t in rows[0][:2]} & _HEADER_NAMES:
            raise _header_error(rows[0], spath, linenos[0], "pass header=True")
    arr = np.array(rows, dtype=object)
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(cols[:width]):
        column = arr[:, k]
        if name in ("user", "item"):
            if numeric_ids:
                for j in odd:
                    _parse_int(column[j], spath, linenos[j], name)
                try:
                    out[name] = column.astype(np.int64)
                except (ValueError, OverflowError):
                    for j, tok in enumerate(column):
                        _parse_int(tok, spath, linenos[j], name)
                    raise DataFormatError(f"could not parse field '{name}'", spath) from None
                neg = np.nonzero(out[name] < 0)[0]
                if neg.size:
                    j = int(neg[0])
                    raise DataFormatError(
                        f"field '{name}' is a negative id ({out[name][j]})", spath, linenos[j]
                    )
            else:
                out[name] = column.astype(str)
        elif name == "rating":
            for j in odd:
                _parse_rating(column[j], spath, linenos[j])
            try:
                vals = column.astype(np.float64)
            except ValueError:
                for j, tok in enumerate(column):
                    _parse_rating(tok, spath, linenos[j])
                raise
            bad = np.nonzero(~np.isfinite(vals))[0]
            if bad.size:
                j = int(bad[0])
                raise DataFormatError(
                    f"field 'rating' is not finite ({column[j]})", spath, linenos[j]
                )
            out[name] = vals
        else:
            # exact for integer strings (float() would round nanosecond stamps)
            out[name] = np.array(
                [
                    _parse_integer_field(tok, spath, linenos[j], name)
                    for j, tok in enumerate(column)
                ],
                dtype=np.int64,
            )
    df = pd.DataFrame(out)
    return df, np.asarray(linenos, dtype=np.int64)
