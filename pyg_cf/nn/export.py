r"""Export final embeddings with their raw-id maps, readable without pyg-cf's model class.

:func:`export_embeddings` (also :meth:`GraphCF.export <pyg_cf.nn.GraphCF.export>`)
writes a folder::

    path/
      embeddings.npz   user_embedding [U, d], item_embedding [I, d] (float32),
                       user_id [U], item_id [I] (raw ids: int64 or unicode strings)
      users.csv        index,raw_id   (row k of user_embedding is raw user raw_id)
      items.csv        index,raw_id
      meta.json        format, sizes, model settings

Nothing in it needs unpickling: ``numpy.load(path/"embeddings.npz", allow_pickle=False)``
or any CSV reader will do. Raw ids are unique and may be any strings, ``"NA"`` or ``""``
included, so read the CSV files without missing-value conversion, e.g.
``pandas.read_csv(path/"users.csv", dtype=str, keep_default_na=False)``: pandas' default
turns such ids into ``NaN``. :func:`load_embeddings` reads the folder back into
:class:`ExportedEmbeddings`, whose :meth:`~ExportedEmbeddings.score` is the model's
inner-product (or cosine) score :math:`s(u, i) = \mathbf{p}_u^\top \mathbf{q}_i`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pyg_cf.errors import ConfigError, DataFormatError

__all__ = ["FORMAT", "ExportedEmbeddings", "export_embeddings", "load_embeddings"]

#: Format tag written into ``meta.json``.
FORMAT = "pyg-cf-embeddings-1"


def _raw_ids(ids: Any, n: int, kind: str) -> np.ndarray:
    if ids is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(ids)
    if arr.ndim != 1 or len(arr) != n:
        raise ConfigError(f"{kind}_ids must be a sequence of {n} raw ids, got shape {arr.shape}")
    if arr.dtype.kind == "u" and len(arr) and int(arr.max()) > np.iinfo(np.int64).max:
        out = arr.astype(np.uint64)  # int64 would wrap these ids to negative numbers
    elif arr.dtype.kind in "iu":
        out = arr.astype(np.int64)
    else:
        out = arr.astype(str)  # unicode array: stored without pickling
    uniq, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise ConfigError(
            f"{kind}_ids must be unique, got {len(dup)} duplicated raw id(s), first: "
            f"{dup[:5].tolist()}"
        )
    return out


def _write_id_csv(path: str, ids: np.ndarray) -> None:
    r"""Write the ``index,raw_id`` file of ``ids``.

    The CSV writer quotes a field holding the separator, a quote or ``\n``, but not a bare
    ``\r``, which CSV readers take as a line break. When a raw id holds ``\r``, every
    string field is therefore quoted (``csv.QUOTE_NONNUMERIC``; any CSV reader, and
    :func:`load_embeddings`, reads it back); otherwise the file is written as always.
    """
    quoting = csv.QUOTE_MINIMAL
    if ids.dtype.kind == "U" and len(ids) and bool(np.char.find(ids, "\r").max() >= 0):
        quoting = csv.QUOTE_NONNUMERIC
    pd.DataFrame({"index": np.arange(len(ids)), "raw_id": ids}).to_csv(
        path, index=False, quoting=quoting
    )


def _read_id_csv(path: str) -> pd.DataFrame:
    """An ``index,raw_id`` file as strings, without missing-value conversion (a raw id
    ``"NA"`` or ``""`` stays that string)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def _check_id_csv(path: str, ids: np.ndarray) -> None:
    """Raise a :class:`DataFormatError` unless the file ``path``, if present, maps row
    ``k`` to raw id ``ids[k]`` for every ``k``."""
    if not os.path.isfile(path):
        return  # optional: embeddings.npz holds the same map
    try:
        table = _read_id_csv(path)
    except (ValueError, OSError) as e:
        raise DataFormatError(f"cannot read the raw-id map ({e})", path=path) from None
    if list(table.columns) != ["index", "raw_id"]:
        raise DataFormatError(
            f"columns must be ['index', 'raw_id'], got {list(table.columns)}", path=path
        )
    index = table["index"].to_numpy(dtype=str)
    raw = table["raw_id"].to_numpy(dtype=str)
    if not (
        np.array_equal(index, np.arange(len(ids)).astype(str))
        and np.array_equal(raw, ids.astype(str))
    ):
        raise DataFormatError("raw-id map does not match embeddings.npz", path=path)


@dataclass
class ExportedEmbeddings:
    """Embeddings read back by :func:`load_embeddings`.

    Attributes:
        user_embedding: ``[U, d]`` final user embeddings.
        item_embedding: ``[I, d]`` final item embeddings.
        user_id: ``[U]`` raw id of each row of ``user_embedding``.
        item_id: ``[I]`` raw id of each row of ``item_embedding``.
        meta: The contents of ``meta.json``.
    """

    user_embedding: np.ndarray
    item_embedding: np.ndarray
    user_id: np.ndarray
    item_id: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def _index(self, table: np.ndarray, raw: Sequence[Any] | np.ndarray, kind: str) -> np.ndarray:
        raw_arr = np.asarray(raw)
        if table.dtype.kind == "U":
            raw_arr = raw_arr.astype(str)
        idx = pd.Index(table).get_indexer(pd.Index(raw_arr.reshape(-1)))
        if (idx < 0).any():
            bad = raw_arr.reshape(-1)[idx < 0][:5].tolist()
            raise ConfigError(f"unknown raw {kind} id(s): {bad}")
        return idx.astype(np.int64)

    def user_index(self, raw: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Rows of the given raw user ids."""
        return self._index(self.user_id, raw, "user")

    def item_index(self, raw: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Rows of the given raw item ids."""
        return self._index(self.item_id, raw, "item")

    def score(self, raw_users: Sequence[Any] | np.ndarray, similarity: str = "ip") -> np.ndarray:
        """Scores ``[len(raw_users), I]`` of every item for the given raw user ids."""
        if similarity not in ("ip", "cos"):
            raise ConfigError(f"similarity must be 'ip' or 'cos', got {similarity!r}")
        u = self.user_embedding[self.user_index(raw_users)]
        i = self.item_embedding
        if similarity == "cos":
            u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
            i = i / np.maximum(np.linalg.norm(i, axis=1, keepdims=True), 1e-12)
        return u @ i.T


def export_embeddings(
    model: nn.Module,
    path: str | os.PathLike[str],
    data: Any = None,
    user_ids: Sequence[Any] | np.ndarray | None = None,
    item_ids: Sequence[Any] | np.ndarray | None = None,
) -> str:
    """Write ``model``'s final embeddings (``model.embeddings()``) and raw-id maps to the
    folder ``path`` (created; existing files of the export are replaced).

    Args:
        model: A model with ``embeddings() -> (user_emb, item_emb)`` (e.g. ``GraphCF``
            with its training graph attached).
        path: The output folder.
        data: A pyg-cf data object whose ``['user'].raw_id`` / ``['item'].raw_id`` give
            the raw ids (optional).
        user_ids: Raw user ids (override ``data``); default ``0..U-1``. Integers are
            stored as int64, anything else as strings; they must be unique.
        item_ids: Raw item ids (override ``data``); default ``0..I-1``; as ``user_ids``.

    Returns:
        The folder written.

    Raises:
        ConfigError: naming ``user_ids`` / ``item_ids``, if they are not one raw id per
            row or hold duplicates (a raw id must name one row).
    """
    with torch.no_grad():
        user_emb, item_emb = model.embeddings()  # type: ignore[operator]
    u = user_emb.detach().float().cpu().numpy()
    i = item_emb.detach().float().cpu().numpy()
    if data is not None:
        if user_ids is None:
            user_ids = getattr(data["user"], "raw_id", None)
        if item_ids is None:
            item_ids = getattr(data["item"], "raw_id", None)
    uid = _raw_ids(user_ids, len(u), "user")
    iid = _raw_ids(item_ids, len(i), "item")
    folder = os.fspath(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, ".embeddings.npz.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, user_embedding=u, item_embedding=i, user_id=uid, item_id=iid)
    os.replace(tmp, os.path.join(folder, "embeddings.npz"))
    for name, ids in (("users.csv", uid), ("items.csv", iid)):
        _write_id_csv(os.path.join(folder, name), ids)
    meta = {
        "format": FORMAT,
        "num_users": len(u),
        "num_items": len(i),
        "embedding_dim": int(u.shape[1]),
        "model": type(model).__name__,
        "settings": {
            k: getattr(model, k)
            for k in ("num_layers", "alpha0", "alpha1", "propagate_users", "propagate_items")
            if isinstance(getattr(model, k, None), (int, float, bool))
        },
    }
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    return folder


def load_embeddings(path: str | os.PathLike[str]) -> ExportedEmbeddings:
    """Read a folder written by :func:`export_embeddings` (no pickle, no model class).

    Raises:
        DataFormatError: naming the file, if the folder, ``embeddings.npz`` or
            ``meta.json`` is missing, or a file is inconsistent (``users.csv`` and
            ``items.csv`` are optional, but must match ``embeddings.npz`` when present).
    """
    folder = os.fspath(path)
    npz = os.path.join(folder, "embeddings.npz")
    meta_path = os.path.join(folder, "meta.json")
    for p in (npz, meta_path):
        if not os.path.isfile(p):
            raise DataFormatError("exported embeddings file does not exist", path=p)
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise DataFormatError(f"format is {meta.get('format')!r}, expected {FORMAT}", meta_path)
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("user_embedding", "item_embedding", "user_id", "item_id")}
    except (KeyError, ValueError, OSError) as e:
        raise DataFormatError(f"cannot read the arrays ({e})", path=npz) from None
    out = ExportedEmbeddings(meta=meta, **arrays)
    if (len(out.user_embedding), len(out.item_embedding)) != (
        meta["num_users"],
        meta["num_items"],
    ) or (len(out.user_id), len(out.item_id)) != (meta["num_users"], meta["num_items"]):
        raise DataFormatError("array sizes do not match meta.json", path=npz)
    _check_id_csv(os.path.join(folder, "users.csv"), out.user_id)
    _check_id_csv(os.path.join(folder, "items.csv"), out.item_id)
    return out
