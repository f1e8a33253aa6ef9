"""From files or frames to a pyg-cf :class:`HeteroData`.

Three entry points share one pipeline:

* :func:`from_dataframe` – one interaction table, split here at random (7:1:2 by default).
* :func:`from_lightgcn_files` – LightGCN ``train.txt`` / ``test.txt`` adjacency lists with the
  given split (a validation part can be carved from training with a seed).
* :func:`from_edge_list_files` – ``user item [rating] [timestamp]`` edge lists, one file per
  split.

The pipeline, in order: the splits (:func:`from_dataframe`: optional ``min_rating``
filter → drop duplicates → optional k-core → random split; the file loaders: the files'
split, a validation part optionally carved from training) → drop duplicates in each split
→ align the id dtypes of the splits → drop cold-start (by ``cold_start``) and overlapping
held-out pairs → encode ids → :func:`build_graph`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from numbers import Real

import numpy as np
import pandas as pd
from torch_geometric.data import HeteroData

from pyg_cf.data.graph import build_graph
from pyg_cf.data.interactions import (
    align_id_dtypes,
    dense_id_limit,
    drop_duplicates,
    encode_ids,
    k_core,
    random_split,
    validate_frame,
)
from pyg_cf.data.io import read_adjacency_list_with_lines, read_edge_list_with_lines
from pyg_cf.errors import ConfigError, DataFormatError

__all__ = ["from_dataframe", "from_edge_list_files", "from_lightgcn_files", "from_splits"]

log = logging.getLogger(__name__)


def _cold_start(
    train: pd.DataFrame, held: pd.DataFrame | None, name: str, policy: str
) -> pd.DataFrame | None:
    if held is None or len(held) == 0:
        return held
    cold = ~held["user"].isin(train["user"]) | ~held["item"].isin(train["item"])
    n = int(cold.sum())
    if n:
        if policy == "drop":
            log.warning("%s: dropped %d cold-start pair(s) (user or item not in train)", name, n)
            return held.loc[~cold].reset_index(drop=True)
        if policy == "error":
            row = held.loc[cold].iloc[0]
            raise ConfigError(
                f"{name}: {n} pair(s) have a user or item that never appears in training "
                f"(first: user {row['user']!r}, item {row['item']!r}); "
                "pass cold_start='keep' or 'drop'"
            )
        log.warning("%s: kept %d cold-start pair(s) (user or item not in train)", name, n)
    return held


def _check_cold_lines(
    train: pd.DataFrame, held: pd.DataFrame | None, lines: np.ndarray | None, path: str | None
) -> None:
    """For ``cold_start='error'``: raise naming the file and line of the first held-out
    pair whose user or item never occurs in the training file."""
    if held is None or len(held) == 0:
        return
    cold = (~held["user"].isin(train["user"]) | ~held["item"].isin(train["item"])).to_numpy()
    if cold.any():
        j = int(np.argmax(cold))
        user, item = held[["user", "item"]].iloc[j].tolist()
        raise DataFormatError(
            f"{int(cold.sum())} pair(s) have a user or item that never appears in training "
            f"(first: user {user!r}, item {item!r}); "
            "pass cold_start='keep' or 'drop'",
            path,
            int(lines[j]) if lines is not None else None,
        )


def _check_dense_ids(
    files: Sequence[tuple[pd.DataFrame, np.ndarray, str]],
) -> None:
    """The file-level check of ``keep_dense`` (see :func:`dense_id_limit`): a
    :class:`DataFormatError` naming the file and line of the largest user or item id when
    it is far beyond the number of distinct ids of the files together."""
    for col in ("user", "item"):
        values = [df[col].to_numpy() for df, _, _ in files if len(df)]
        if not values:
            return
        largest = max(int(v.max()) for v in values)
        distinct = int(pd.unique(np.concatenate(values)).size)
        if largest + 1 <= dense_id_limit(distinct):
            continue
        for df, lines, path in files:
            hit = np.nonzero(df[col].to_numpy() == largest)[0]
            if hit.size:
                raise DataFormatError(
                    f"{col} id {largest} is far beyond the {distinct} distinct {col} ids "
                    f"(ids are kept as given, so {largest + 1:,} {col}s would be made; at "
                    f"most {dense_id_limit(distinct):,} are accepted); these are not dense "
                    "0-based ids: pass keep_dense=False to map them to 0..n-1",
                    path,
                    int(lines[hit[0]]),
                )


def _remove_overlap(
    reference: pd.DataFrame, held: pd.DataFrame | None, name: str, reference_name: str
) -> pd.DataFrame | None:
    """``held`` without the pairs ``reference`` holds too (logged: splits stay apart)."""
    if held is None or len(held) == 0:
        return held
    key = pd.MultiIndex.from_frame(reference[["user", "item"]])
    dup = pd.MultiIndex.from_frame(held[["user", "item"]]).isin(key)
    n = int(dup.sum())
    if n:
        log.warning("%s: dropped %d pair(s) that are also %s pairs", name, n, reference_name)
        return held.loc[~dup].reset_index(drop=True)
    return held


def from_splits(
    train: pd.DataFrame,
    val: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    name: str | None = None,
    keep_dense: bool = False,
    cold_start: str = "keep",
) -> HeteroData:
    """Build the data object from already split raw-id frames.

    Args:
        train: Training interactions (``user``, ``item`` columns, raw ids).
        val: Validation interactions or ``None``.
        test: Test interactions or ``None``.
        name: Data set name.
        keep_dense: Keep integer ids ``0..n-1`` as they are (LightGCN releases).
        cold_start: What to do with held-out pairs whose user or item never occurs in
            training: ``'keep'`` (default; reported in a log line), ``'drop'`` or ``'error'``.

    Raises:
        DataFormatError: naming the column, when the frames' id types cannot be compared
            exactly (float ids other than whole numbers below 2**53 beside integer ids
            beyond ±2**53: float64 could merge distinct ids).
    """
    _check_policy(cold_start)
    return _from_frames(train, val, test, name, keep_dense, False, cold_start, cold_start, train)


def _check_policy(cold_start: str) -> None:
    if cold_start not in ("keep", "drop", "error"):
        raise ConfigError(f"cold_start must be 'keep', 'drop' or 'error', got {cold_start!r}")


def _check_val_ratio(val_ratio: float) -> None:
    """A carve's fraction: ``0`` (no carve) or a fraction of each user's training rows."""
    if isinstance(val_ratio, bool) or not isinstance(val_ratio, Real) or not 0 <= val_ratio < 1:
        raise ConfigError(f"val_ratio must be a number in [0, 1) (0: no carve), got {val_ratio!r}")


def _from_frames(
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    test: pd.DataFrame | None,
    name: str | None,
    keep_dense: bool,
    dense_checked: bool,
    val_policy: str,
    test_policy: str,
    test_reference: pd.DataFrame,
) -> HeteroData:
    """:func:`from_splits` with a cold-start policy per split, and test pairs judged
    against ``test_reference`` (the file loaders pass the training file as read, before a
    validation carve, so that their carve never changes the given test split): test pairs
    whose user or item is not in it are cold, and test pairs it holds are dropped (a
    training pair the carve moved into validation included, even when validation then
    drops it as cold), so the test split does not depend on the carve's ratio or seed.

    The id columns of all frames are first cast so that ids compare exactly across
    frames (:func:`~pyg_cf.data.interactions.align_id_dtypes`: integer ids beyond ±2**53
    beside float ids are refused unless the floats are whole numbers below 2**53).

    ``dense_checked``: the file loaders checked the ``keep_dense`` limit on the files as
    read (:func:`_check_dense_ids`), so :func:`encode_ids` does not check it again on the
    frames left after the drops (the result would then depend on ``cold_start``).
    """
    train = drop_duplicates(train, "train")
    val = drop_duplicates(val, "val") if val is not None else None
    test = drop_duplicates(test, "test") if test is not None else None
    train, val, test, test_reference = align_id_dtypes(
        [train, val, test, test_reference], ["train", "val", "test", "train"]
    )
    val = _remove_overlap(train, _cold_start(train, val, "val", val_policy), "val", "training")
    test = _cold_start(test_reference, test, "test", test_policy)
    test = _remove_overlap(test_reference, test, "test", "training")
    if val is not None and test is not None:
        test = _remove_overlap(val, test, "test", "validation")
    frames = [f for f in (train, val, test) if f is not None]
    enc, id_map = encode_ids(*frames, keep_dense=keep_dense, check_dense_limit=not dense_checked)
    it = iter(enc)
    tr = next(it)
    va = next(it) if val is not None else None
    te = next(it) if test is not None else None
    return build_graph(tr, id_map, val=va, test=te, name=name)


def _carved(
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    test: pd.DataFrame | None,
    val_ratio: float,
    seed: int,
    name: str | None,
    keep_dense: bool,
    cold_start: str,
) -> HeteroData:
    """The file loaders' common end: carve a validation split from the distinct pairs of
    ``train`` when none was given and ``val_ratio > 0``, then build. ``cold_start`` is the
    policy for the given files; pairs the carve itself leaves cold in validation are kept
    (``'error'``) or dropped (``'drop'``), never an error the caller could not fix, and test
    pairs are judged against the training file as given. With ``keep_dense`` the caller
    has checked the dense-id limit on the files (:func:`_check_dense_ids`)."""
    full_train, val_policy = train, cold_start
    if val is None and val_ratio > 0:
        # de-duplicate first: a repeated pair carved into validation would be dropped again
        # as a training pair, silently shrinking validation below val_ratio
        train, val = _carve(drop_duplicates(train, "train"), val_ratio, seed)
        val_policy = "keep" if cold_start == "error" else cold_start
    return _from_frames(
        train, val, test, name, keep_dense, keep_dense, val_policy, cold_start, full_train
    )


def from_dataframe(
    df: pd.DataFrame,
    user_col: str = "user",
    item_col: str = "item",
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    per_user: bool = True,
    user_k: int = 0,
    item_k: int = 0,
    min_rating: float | None = None,
    name: str | None = None,
) -> HeteroData:
    """Build a data object from one interaction table, split at random.

    Args:
        df: The interactions; any id types.
        user_col: Column of user ids.
        item_col: Column of item ids.
        ratios: Split ratios ``(train, val, test)`` or ``(train, test)``.
        seed: Split seed.
        per_user: Split each user's interactions (default) or the whole table.
        user_k: k-core threshold for users (0 = no filtering).
        item_k: k-core threshold for items.
        min_rating: Keep only rows whose ``rating`` column is at least this value (a
            finite number).
        name: Data set name.

    Raises:
        ConfigError: for bad arguments (columns, ``ratios``, ``min_rating``, k-core
            thresholds) or when no interaction is left after filtering.
        DataFormatError: for a ``df`` that is not a frame, or a missing id (naming the
            caller's column).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataFormatError(f"dataframe: expected a pandas DataFrame, got {type(df).__name__}")
    if user_col not in df.columns or item_col not in df.columns:
        raise ConfigError(
            f"columns {user_col!r} and {item_col!r} are required; the frame has {list(df.columns)}"
        )
    if user_col == item_col:
        raise ConfigError(f"user_col and item_col are the same column {user_col!r}")
    for col, target in ((user_col, "user"), (item_col, "item")):
        if col != target and target in df.columns and target not in (user_col, item_col):
            raise ConfigError(
                f"{col!r} is to be read as {target!r}, but the frame already has a "
                f"{target!r} column; drop or rename it first"
            )
    if min_rating is not None and (
        isinstance(min_rating, bool)
        or not isinstance(min_rating, Real)
        or not math.isfinite(min_rating)
    ):
        raise ConfigError(f"min_rating must be a finite number or None, got {min_rating!r}")
    frame = df.rename(columns={user_col: "user", item_col: "item"})
    validate_frame(frame, "dataframe", labels={"user": user_col, "item": item_col})
    if min_rating is not None:
        if "rating" not in frame.columns:
            raise ConfigError("min_rating needs a 'rating' column")
        rating = pd.to_numeric(frame["rating"], errors="coerce")  # finite: validate_frame
        frame = frame.loc[(rating >= min_rating).to_numpy()]
    frame = drop_duplicates(frame, "dataframe")
    if user_k or item_k:
        frame = k_core(frame, user_k, item_k)
    if len(frame) == 0:
        raise ConfigError("no interactions left after filtering")
    parts = random_split(frame, ratios, seed=seed, per_user=per_user)
    if len(parts) == 2:
        return from_splits(parts[0], test=parts[1], name=name)
    if len(parts) == 3:
        return from_splits(parts[0], parts[1], parts[2], name=name)
    raise ConfigError(f"ratios must have 2 or 3 parts, got {len(parts)}")


def _carve(train: pd.DataFrame, val_ratio: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not 0 < val_ratio < 1:
        raise ConfigError(f"val_ratio must be in (0, 1), got {val_ratio}")
    tr, va = random_split(train, (1 - val_ratio, val_ratio), seed=seed, per_user=True)
    return tr, va


def from_lightgcn_files(
    root: str | os.PathLike[str],
    val_ratio: float = 0.0,
    seed: int = 0,
    name: str | None = None,
    train_file: str = "train.txt",
    test_file: str = "test.txt",
    cold_start: str = "keep",
    keep_dense: bool = True,
    allow_empty: bool = False,
) -> HeteroData:
    """Load a LightGCN-style directory (``train.txt``, ``test.txt`` adjacency lists).

    Ids in these releases are already dense and 0-based and are kept as they are (ids
    without interactions below the largest one count as users or items), unless
    ``keep_dense=False``.

    Args:
        root: The directory.
        val_ratio: If positive, carve this fraction of each user's training interactions
            into a validation split (seeded); the given test split is never touched.
        seed: Seed of the validation carve.
        name: Data set name (defaults to the directory name).
        train_file: Training file name.
        test_file: Test file name.
        cold_start: Test pairs whose user or item never occurs in ``train_file``:
            ``'keep'`` (default, reported in a log line), ``'drop'`` or ``'error'`` (naming
            the file and line). Validation pairs the carve leaves cold are kept (dropped
            under ``'drop'``).
        keep_dense: Keep the ids as they are (default). The largest id plus one may then
            be at most ``2 * distinct + 1,000,000`` (distinct ids of both files, see
            :func:`~pyg_cf.data.interactions.dense_id_limit`), checked once on the files
            as read, so the pairs ``cold_start`` or the carve drop never change it.
            ``False`` maps the ids to ``0..n-1`` like the other loaders.
        allow_empty: If ``False`` (default), a line of ``train_file`` holding a user but
            no items is a :class:`~pyg_cf.errors.DataFormatError` naming the file and
            line; if ``True`` such lines are skipped, and counted in an INFO log line (the
            user then has no training interaction: it remains a user only when the test
            file names it or, with ``keep_dense``, a larger user id occurs). Such lines of
            ``test_file`` are always skipped: the LightGCN releases list every user there,
            some without test items.

    Raises:
        DataFormatError: naming the file and line, for a malformed file, or, with
            ``keep_dense``, for an id far beyond the number of distinct ids.
    """
    _check_policy(cold_start)
    _check_val_ratio(val_ratio)
    root = os.fspath(root)
    train_path = os.path.join(root, train_file)
    train, train_lines = read_adjacency_list_with_lines(train_path, allow_empty=allow_empty)
    test_path = os.path.join(root, test_file)
    test, test_lines = read_adjacency_list_with_lines(test_path, allow_empty=True)
    if keep_dense:
        _check_dense_ids([(train, train_lines, train_path), (test, test_lines, test_path)])
    if cold_start == "error":
        _check_cold_lines(train, test, test_lines, test_path)
    name = name or os.path.basename(os.path.normpath(root))
    return _carved(train, None, test, val_ratio, seed, name, keep_dense, cold_start)


def from_edge_list_files(
    train_path: str | os.PathLike[str],
    test_path: str | os.PathLike[str] | None = None,
    val_path: str | os.PathLike[str] | None = None,
    sep: str | None = None,
    header: bool = False,
    val_ratio: float = 0.0,
    seed: int = 0,
    name: str | None = None,
    cold_start: str = "keep",
) -> HeteroData:
    """Load ``user item [rating] [timestamp]`` edge lists, one file per split.

    Args:
        train_path: Training edge list.
        test_path: Test edge list, or ``None``.
        val_path: Validation edge list, or ``None`` (then ``val_ratio`` may carve one).
        sep: Field separator (``None``: white space).
        header: Skip a header line in each file.
        val_ratio: Carve a validation split from training (only without ``val_path``).
        seed: Seed of the carve.
        name: Data set name.
        cold_start: Policy for held-out pairs whose user or item never occurs in
            ``train_path`` (``'keep'``, ``'drop'``, ``'error'``); validation pairs a carve
            leaves cold are kept (dropped under ``'drop'``).

    Every row is a positive interaction: a ``rating`` column is read (and checked) but
    then dropped, so a row of any rating, 0 or negative included, becomes a positive;
    remove the rows that are not positives from the files first.

    Raises:
        ConfigError: for bad arguments (no ``train_path``, ``cold_start``, ``val_ratio``,
            or both ``val_path`` and ``val_ratio``).
        DataFormatError: naming the file and line, for a malformed file, or, with
            ``cold_start='error'``, for a cold-start pair.
    """
    if train_path is None:
        raise ConfigError("train_path is required (the training edge list), got None")
    _check_policy(cold_start)
    _check_val_ratio(val_ratio)
    if val_path is not None and val_ratio > 0:
        raise ConfigError("give val_path or val_ratio (a carve from training), not both")

    def read(p: str | os.PathLike[str] | None) -> tuple[pd.DataFrame | None, np.ndarray | None]:
        if p is None:
            return None, None
        df, lines = read_edge_list_with_lines(p, sep=sep, header=header)
        return df[["user", "item"]], lines

    train, _ = read(train_path)
    assert train is not None  # train_path is not None: checked above
    (val, val_lines), (test, test_lines) = read(val_path), read(test_path)
    if cold_start == "error":
        _check_cold_lines(train, val, val_lines, os.fspath(val_path) if val_path else None)
        _check_cold_lines(train, test, test_lines, os.fspath(test_path) if test_path else None)
    return _carved(train, val, test, val_ratio, seed, name, False, cold_start)
