"""Interaction tables: id encoding, de-duplication, k-core filtering and splits.

All functions take and return :class:`pandas.DataFrame` objects with at least the columns
``user`` and ``item``. They are pure (the input frame is never modified).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd

from pyg_cf.errors import ConfigError, DataFormatError

__all__ = [
    "IdMap",
    "drop_duplicates",
    "encode_ids",
    "k_core",
    "random_split",
    "validate_frame",
]

log = logging.getLogger(__name__)

#: ``keep_dense`` refuses ids whose largest value, plus one, exceeds twice the number of
#: distinct ids plus this slack: the dense range would then be mostly ids without any
#: interaction (and a stray huge id would allocate gigabytes).
DENSE_ID_SLACK = 1_000_000

_INT64_MAX = int(np.iinfo(np.int64).max)


def dense_id_limit(num_distinct: int) -> int:
    """The largest dense id count ``max id + 1`` that ``keep_dense`` accepts for
    ``num_distinct`` distinct ids: ``2 * num_distinct + DENSE_ID_SLACK``."""
    return 2 * num_distinct + DENSE_ID_SLACK


def validate_frame(
    df: pd.DataFrame, name: str = "frame", *, labels: Mapping[str, str] | None = None
) -> None:
    """Check that ``df`` has ``user`` and ``item`` columns without missing values.

    Args:
        df: The frame.
        name: Names the frame in errors.
        labels: The names the caller gave the ``user`` and ``item`` columns, used in
            errors in their place (``from_dataframe`` renames the caller's columns).

    Raises:
        DataFormatError: naming the missing column, or the first row with a missing id.
    """
    labels = labels or {}
    if not isinstance(df, pd.DataFrame):
        raise DataFormatError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}")
    repeated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if repeated:
        raise DataFormatError(f"{name}: repeated column name(s) {repeated}; rename or drop them")
    for col in ("user", "item"):
        label = labels.get(col, col)
        if col not in df.columns:
            raise DataFormatError(
                f"{name}: missing column '{label}' (columns are {list(df.columns)}); "
                "rename your columns or pass user_col/item_col"
            )
        na = df[col].isna().to_numpy()
        if na.any():
            row = df.index[int(np.argmax(na))]
            raise DataFormatError(f"{name}: column '{label}' has a missing value at row {row!r}")
    if "rating" in df.columns:
        r = pd.to_numeric(df["rating"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(r)
        if bad.any():
            row = df.index[int(np.argmax(bad))]
            raise DataFormatError(f"{name}: column 'rating' is not a finite number at row {row!r}")


@dataclass(frozen=True)
class IdMap:
    """Dense 0-based ids for raw user and item ids.

    Attributes:
        users: ``users[k]`` is the raw id of dense user ``k``.
        items: ``items[k]`` is the raw id of dense item ``k``.
    """

    users: np.ndarray
    items: np.ndarray

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def user_index(self, raw: Sequence[object] | np.ndarray) -> np.ndarray:
        """Dense ids of raw user ids; raises :class:`KeyError` for unknown ids."""
        return _lookup(self.users, raw, "user")

    def item_index(self, raw: Sequence[object] | np.ndarray) -> np.ndarray:
        """Dense ids of raw item ids; raises :class:`KeyError` for unknown ids."""
        return _lookup(self.items, raw, "item")


def _lookup(table: np.ndarray, raw: Sequence[object] | np.ndarray, kind: str) -> np.ndarray:
    """Positions of the ``raw`` ids in ``table``; a list or tuple is looked up as Python
    objects (``np.asarray`` would turn ``["a", 1]`` into the strings ``"a"``, ``"1"``)."""
    if isinstance(raw, (list, tuple)):
        query = pd.Index(list(raw), dtype=object)
    elif isinstance(raw, (np.ndarray, pd.Index, pd.Series)):
        query = pd.Index(raw)
    else:
        query = pd.Index(np.asarray(raw))
    idx = pd.Index(table).get_indexer(query)
    if (idx < 0).any():
        bad = query[idx < 0][:5].tolist()
        raise KeyError(f"unknown raw {kind} id(s): {bad}")
    return idx.astype(np.int64)


#: Integers up to this magnitude are exact in float64; a float64 id of at least this
#: magnitude may be the rounded form of several integer ids.
_FLOAT_EXACT = 2**53


def _exact_parts(parts: Sequence[pd.Series], col: str, names: Sequence[str]) -> list[pd.Series]:
    """``parts`` (the non-empty ``col`` columns of several frames, named ``names``), cast
    so that joining or comparing them is exact; parts needing no cast are returned as they
    are.

    * Integer columns of mixed signedness (``int64`` and ``uint64``), which pandas would
      join as ``float64`` (rounding ids beyond 2**53), become ``int64`` when every id fits
      it, else ``uint64`` when none is negative.
    * Integer columns beside float columns are joined as ``float64``, as pandas does, when
      every integer id is within ±2**53 (exact in float64). When one is beyond, the float
      columns are cast to ``int64`` if they hold whole numbers below 2**53 in magnitude;
      otherwise distinct ids could merge, and the mix is refused.

    Raises:
        DataFormatError: naming the column, for negative ids beside ``uint64`` ids beyond
            the ``int64`` range, or for float ids beside integer ids beyond ±2**53 that
            cannot be cast to ``int64`` exactly.
    """
    is_int = pd.api.types.is_integer_dtype
    is_float = pd.api.types.is_float_dtype
    out = list(parts)
    ints = [p for p in out if is_int(p)]
    floats = [k for k, p in enumerate(out) if is_float(p)]
    if ints and floats and len(ints) + len(floats) == len(out):
        big = [p for p in ints if int(p.max()) > _FLOAT_EXACT or int(p.min()) < -_FLOAT_EXACT]
        if big:
            for k in floats:
                v = out[k].to_numpy(dtype=np.float64)
                bad = ~(np.isfinite(v) & (np.abs(v) < _FLOAT_EXACT))
                bad[~bad] = v[~bad] != np.floor(v[~bad])
                if bad.any():
                    hi, lo = int(big[0].max()), int(big[0].min())
                    raise DataFormatError(
                        f"column '{col}' mixes integer ids beyond ±2**53 (e.g. "
                        f"{hi if hi > _FLOAT_EXACT else lo}) with "
                        f"float ids ({names[k]}: {float(v[bad][0])!r}) that are not whole "
                        "numbers below 2**53 in magnitude; float64 cannot tell such ids apart "
                        f"exactly, so distinct ids could merge: give every '{col}' column as "
                        "integers (or strings)"
                    )
                out[k] = out[k].astype(np.int64)
    # pandas joins int64 with uint64 as float64: the empty join shows the common dtype
    if all(is_int(p) for p in out) and not is_int(pd.concat([p.iloc[:0] for p in out])):
        unsigned = [p for p in out if pd.api.types.is_unsigned_integer_dtype(p)]
        if all(int(p.max()) <= _INT64_MAX for p in unsigned):
            dtype: type[np.integer] = np.int64
        elif all(int(p.min()) >= 0 for p in out):
            dtype = np.uint64
        else:
            raise DataFormatError(
                f"column '{col}' mixes negative ids with unsigned ids beyond the int64 range; "
                "no integer type holds both exactly (convert the ids to strings)"
            )
        out = [p if p.dtype == dtype else p.astype(dtype) for p in out]
    return out


def _id_values(frames: Sequence[pd.DataFrame], col: str) -> pd.Series:
    """The ``col`` ids of all ``frames`` in one series, in frame order, with exact values
    (see :func:`_exact_parts`).

    Empty frames add no rows, so their dtype (``object`` for ``pd.DataFrame(columns=...)``)
    never changes how the ids are handled.

    Raises:
        DataFormatError: for id columns no common type holds exactly (:func:`_exact_parts`).
    """
    named = [(f"frame #{k}", df[col]) for k, df in enumerate(frames) if len(df)]
    if not named:
        return pd.concat([df[col] for df in frames], ignore_index=True)
    parts = _exact_parts([p for _, p in named], col, [n for n, _ in named])
    return pd.concat(parts, ignore_index=True)


def align_id_dtypes(
    frames: Sequence[pd.DataFrame | None], names: Sequence[str]
) -> list[pd.DataFrame | None]:
    """``frames`` with their ``user`` and ``item`` columns cast (see :func:`_exact_parts`)
    so that ids compare exactly across frames; a frame needing no cast (and ``None``) is
    returned as it is. ``names`` name the frames in errors.

    Raises:
        DataFormatError: naming the column, for id columns no common type holds exactly.
    """
    out = list(frames)
    for col in ("user", "item"):
        ks = [k for k, df in enumerate(out) if df is not None and len(df)]
        cols = [df[col] for df in out if df is not None and len(df)]
        parts = _exact_parts(cols, col, [names[k] for k in ks])
        for k, p in zip(ks, parts):
            df = out[k]
            assert df is not None
            if p.dtype != df[col].dtype:
                df = df.copy()
                df[col] = p
                out[k] = df
    return out


def encode_ids(
    *frames: pd.DataFrame,
    keep_dense: bool = False,
    check_dense_limit: bool = True,
) -> tuple[list[pd.DataFrame], IdMap]:
    """Remap raw user and item ids of one or more frames to dense 0-based ids.

    The id space is the union over all frames; the first frame (normally the training set)
    decides nothing special. Ids of any hashable type are accepted.

    Args:
        *frames: Frames with ``user`` and ``item`` columns.
        keep_dense: If ``True`` and the raw ids are already non-negative integers
            ``0..n-1`` (as in the LightGCN releases), keep them unchanged so ``n`` counts
            every id up to the largest one, including ids without interactions (with a
            negative id the ids are mapped as without ``keep_dense``). The ids must be
            close to dense: ``max id + 1`` may be at most ``2 * distinct + 1,000,000``
            (:func:`dense_id_limit`).
        check_dense_limit: Whether ``keep_dense`` checks that limit here (default). The
            file loaders pass ``False``: they check it once on the files as read, so that
            pairs dropped later (cold-start, overlaps) never change whether a load passes.

    Returns:
        The re-encoded frames (same order) and the :class:`IdMap`.

    Raises:
        ConfigError: with ``keep_dense``, when the largest id is far beyond the number of
            distinct ids (pass ``keep_dense=False`` to map them to ``0..distinct-1``).
        DataFormatError: naming the column, when no id type holds the ids of all frames
            exactly (e.g. float ids that are not whole numbers below 2**53 beside integer
            ids beyond ±2**53, which float64 could merge).
    """
    if not frames:
        raise ConfigError("encode_ids needs at least one frame")
    for k, df in enumerate(frames):
        validate_frame(df, name=f"frame #{k}")
    maps = {}
    codes = {}
    for col in ("user", "item"):
        values = _id_values(frames, col)
        if (
            keep_dense
            and pd.api.types.is_integer_dtype(values)
            and len(values) > 0
            and int(values.min()) >= 0  # negative ids have no place in 0..n-1: map them
        ):
            n = int(values.max()) + 1
            distinct = int(values.nunique())
            if check_dense_limit and n > dense_id_limit(distinct):
                raise ConfigError(
                    f"keep_dense: the largest {col} id is {n - 1}, but there are only "
                    f"{distinct} distinct {col} ids (at most {dense_id_limit(distinct)} "
                    "dense ids are kept); pass keep_dense=False to map the ids to "
                    f"0..{distinct - 1}"
                )
            maps[col] = np.arange(n, dtype=np.int64)
        else:
            maps[col] = np.asarray(pd.unique(values))
            if pd.api.types.is_integer_dtype(values):
                maps[col] = np.sort(maps[col])
        codes[col] = pd.Index(maps[col]).get_indexer(values).astype(np.int64)
    ends = np.cumsum([len(df) for df in frames])
    out = []
    for df, end in zip(frames, ends):
        new = df.copy()
        for col in ("user", "item"):
            new[col] = codes[col][end - len(df) : end]
        out.append(new)
    return out, IdMap(users=maps["user"], items=maps["item"])


def drop_duplicates(df: pd.DataFrame, name: str = "interactions") -> pd.DataFrame:
    """Drop repeated (user, item) pairs, keeping the first, and log how many were dropped."""
    validate_frame(df, name)
    dup = df.duplicated(subset=["user", "item"], keep="first").to_numpy()
    n = int(dup.sum())
    if n:
        log.warning("%s: dropped %d duplicate interaction(s) of %d", name, n, len(df))
        return df.loc[~dup].reset_index(drop=True)
    return df


def k_core(df: pd.DataFrame, user_k: int = 10, item_k: int = 10) -> pd.DataFrame:
    """Keep the largest sub-table in which every user has at least ``user_k`` and every item
    at least ``item_k`` interactions; filtering is iterated until it is stable.

    Args:
        df: Interactions (duplicates should be dropped first).
        user_k: Minimum interactions per user.
        item_k: Minimum interactions per item.
    """
    validate_frame(df, "k_core input")
    for name, k in (("user_k", user_k), ("item_k", item_k)):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ConfigError(f"k_core: {name} must be an integer >= 0, got {k!r}")
    # a positional index: an index level named 'user' / 'item' would make groupby ambiguous
    cur = df.reset_index(drop=True)
    while True:
        ucount = cur.groupby("user")["user"].transform("size")
        icount = cur.groupby("item")["item"].transform("size")
        keep = ((ucount >= user_k) & (icount >= item_k)).to_numpy()
        if keep.all():
            return cur.reset_index(drop=True)
        cur = cur.loc[keep]
        if len(cur) == 0:
            log.warning("k_core(%d, %d) removed every interaction", user_k, item_k)
            return cur.reset_index(drop=True)


def _ratios(ratios: object) -> np.ndarray | None:
    """``ratios`` as a ``float64`` array, or ``None`` when they are not finite numbers
    (strings, ``None``, NaN or infinity; numpy would read ``"0.8"`` as ``0.8``)."""
    try:
        raw = np.asarray(ratios)
        if raw.dtype.kind in "USV":
            return None
        r = raw.astype(np.float64)
    except (TypeError, ValueError):
        return None
    return r if np.isfinite(r).all() else None


def random_split(
    df: pd.DataFrame,
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    per_user: bool = True,
) -> list[pd.DataFrame]:
    """Split interactions at random into parts with the given ratios.

    With ``per_user=True`` (default, as in the sampled-softmax paper) each user's
    interactions are shuffled and cut at the rounded cumulative ratios: of a user's ``n``
    shuffled interactions, part ``k`` holds ranks ``[round(n c_{k-1}), round(n c_k))``
    with ``c`` the cumulative ratios (``c_{-1} = 0``), and the first part at least one,
    so each user appears in training (e.g. ``n = 8`` at 7:1:2 gives 6 / 0 / 2). With
    ``per_user=False`` the whole table is shuffled and cut at the rounded cumulative
    ratios.

    Args:
        df: Interactions.
        ratios: Fractions of each part (normalized to sum to 1), e.g. ``(0.8, 0.2)`` or
            ``(0.7, 0.1, 0.2)``.
        seed: Seed of the shuffle; the same seed gives the same split.
        per_user: Split each user's interactions separately.

    Returns:
        One frame per ratio, in order. The parts are disjoint and their union is ``df``.

    Raises:
        ConfigError: for ``ratios`` that are not a sequence of at least two finite
            non-negative numbers with a positive sum, or a bad ``seed``.
    """
    validate_frame(df, "random_split input")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    r = _ratios(ratios)
    if r is None or r.ndim != 1 or len(r) < 2 or (r < 0).any() or r.sum() <= 0:
        raise ConfigError(
            f"ratios must be a sequence of >= 2 finite non-negative numbers, got {ratios!r}"
        )
    r = r / r.sum()
    rng = np.random.default_rng(seed)
    n = len(df)
    perm = rng.permutation(n)
    part = np.zeros(n, dtype=np.int64)
    if per_user:
        # factorized codes sort whatever the id types (ints mixed with strings included)
        users = pd.factorize(df["user"])[0][perm]
        order = np.argsort(users, kind="stable")
        perm = perm[order]
        users = users[order]
        _, start, counts = np.unique(users, return_index=True, return_counts=True)
        rank = np.arange(n) - np.repeat(start, counts)
        # Part k of a user with n_u rows holds ranks [round(n_u*c_{k-1}), round(n_u*c_k)),
        # c the cumulative ratios; a single-row user keeps its row in the first part.
        cum = np.cumsum(r)[:-1]
        bounds = np.maximum(np.floor(counts[:, None] * cum[None, :] + 0.5), 1)
        rank_b = np.repeat(bounds, counts, axis=0)
        part[perm] = (rank[:, None] >= rank_b).sum(1)
    else:
        cuts = np.floor(np.cumsum(r)[:-1] * n + 0.5).astype(np.int64)
        for k, c in enumerate(cuts):
            part[perm[c:]] = k + 1
    return [df.loc[part == k].reset_index(drop=True) for k in range(len(r))]
