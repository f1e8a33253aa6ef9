"""Building and reading the :class:`~torch_geometric.data.HeteroData` that every other module
takes.

Layout of a pyg-cf data object::

    data['user'].num_nodes, data['item'].num_nodes
    data['user'].raw_id, data['item'].raw_id            # numpy arrays: dense id -> raw id
    data['user', 'rates', 'item'].edge_index            # training edges, [2, E], sorted
    data['item', 'rated_by', 'user'].edge_index         # the same edges reversed
    data['user', 'rates', 'item'].val_edge_index        # held-out positives, [2, E_val]
    data['user', 'rates', 'item'].test_edge_index       # held-out positives, [2, E_test]
    data.name                                           # e.g. 'gowalla'

Only training edges take part in message passing and degrees; the held-out positives are
stored beside them and read with :func:`held_out_edges`.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_cf.data.interactions import IdMap
from pyg_cf.errors import DataFormatError, PygCFError

__all__ = [
    "REV_EDGE",
    "USER_ITEM",
    "build_graph",
    "data_fingerprint",
    "degrees",
    "held_out_edges",
    "summarize",
    "train_edges",
]

log = logging.getLogger(__name__)

USER_ITEM = ("user", "rates", "item")
REV_EDGE = ("item", "rated_by", "user")


def _edge_tensor(df: pd.DataFrame | None, split: str) -> Tensor:
    """The ``(user, item)`` pairs of ``df`` as a sorted ``[2, E]`` tensor; ``split`` names
    the split in errors.

    Raises:
        DataFormatError: for an id column that is not of an integer dtype (a float id
            would be truncated to another id).
    """
    if df is None or len(df) == 0:
        return torch.empty(2, 0, dtype=torch.long)
    for col in ("user", "item"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise DataFormatError(
                f"{split}: column '{col}' holds {df[col].dtype} ids, but build_graph takes "
                "integer dense ids (encode the raw ids with encode_ids first)"
            )
    ei = torch.from_numpy(np.stack([df["user"].to_numpy(np.int64), df["item"].to_numpy(np.int64)]))
    # Sort by (user, item) so CSR conversion is a no-op and runs are deterministic.
    key = ei[0] * (int(ei[1].max()) + 1) + ei[1]
    return ei[:, torch.argsort(key)].contiguous()


def build_graph(
    train: pd.DataFrame,
    id_map: IdMap,
    val: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    name: str | None = None,
) -> HeteroData:
    """Build the pyg-cf :class:`HeteroData` from encoded interaction frames.

    Args:
        train: Training interactions with dense ids (see :func:`encode_ids`).
        id_map: The raw-id maps.
        val: Validation positives, or ``None``.
        test: Test positives, or ``None``.
        name: A name stored as ``data.name``.

    A validation or test pair given more than once is kept once: the repeats are dropped
    and counted in a WARNING log line, as :func:`~pyg_cf.data.interactions.drop_duplicates`
    does for the loaders (a repeated training pair is refused).

    Raises:
        DataFormatError: if an id column is not of an integer dtype, if an id is outside
            ``[0, num_users)`` / ``[0, num_items)`` or a training pair is repeated, if a
            held-out pair is also a training pair, or if a test pair is also a validation
            pair.
    """
    nu, ni = id_map.num_users, id_map.num_items
    parts = {"train": train, "val": val, "test": test}
    tensors = {}
    for key, df in parts.items():
        ei = _edge_tensor(df, key)
        if ei.numel():
            if int(ei.min()) < 0 or int(ei[0].max()) >= nu or int(ei[1].max()) >= ni:
                raise DataFormatError(
                    f"{key} ids out of range for {nu} users / {ni} items "
                    "(encode ids with encode_ids first)"
                )
            if key != "train" and ei.size(1) > 1:
                # sorted: a repeated pair sits next to its first copy
                first = torch.ones(ei.size(1), dtype=torch.bool)
                first[1:] = (ei[:, 1:] != ei[:, :-1]).any(0)
                n = int((~first).sum())
                if n:
                    log.warning("%s: dropped %d duplicate interaction(s) of %d", key, n, ei.size(1))
                    ei = ei[:, first].contiguous()
        tensors[key] = ei
    tr = tensors["train"]
    if tr.size(1) > 1:
        same = (tr[:, 1:] == tr[:, :-1]).all(0)
        if bool(same.any()):
            raise DataFormatError(
                f"training set has {int(same.sum())} duplicate pair(s); call drop_duplicates"
            )
    train_keys = tr[0] * ni + tr[1]
    for key in ("val", "test"):
        ei = tensors[key]
        if ei.numel():
            overlap = torch.isin(ei[0] * ni + ei[1], train_keys)
            if bool(overlap.any()):
                raise DataFormatError(
                    f"{int(overlap.sum())} {key} pair(s) also appear in training "
                    f"(first: user {int(ei[0][overlap][0])}, item {int(ei[1][overlap][0])})"
                )
    val, test = tensors["val"], tensors["test"]
    if val.numel() and test.numel():  # a validation positive is masked at test time
        overlap = torch.isin(test[0] * ni + test[1], val[0] * ni + val[1])
        if bool(overlap.any()):
            raise DataFormatError(
                f"{int(overlap.sum())} test pair(s) also appear in validation (first: user "
                f"{int(test[0][overlap][0])}, item {int(test[1][overlap][0])}); the splits "
                "must be disjoint: validation pairs are masked at test time, so such a pair "
                "could never be found"
            )
    data = HeteroData()
    data["user"].num_nodes = nu
    data["item"].num_nodes = ni
    data["user"].raw_id = id_map.users
    data["item"].raw_id = id_map.items
    data[USER_ITEM].edge_index = tr
    data[REV_EDGE].edge_index = tr.flip(0).contiguous()
    data[USER_ITEM].val_edge_index = tensors["val"]
    data[USER_ITEM].test_edge_index = tensors["test"]
    data.name = name or "interactions"
    return data


def _check(data: HeteroData) -> None:
    if not isinstance(data, HeteroData) or USER_ITEM not in data.edge_types:
        raise PygCFError(
            "expected a pyg-cf HeteroData with edge type ('user', 'rates', 'item'); "
            "build it with pyg_cf.data.build_graph or pyg_cf.datasets.load"
        )


def train_edges(data: HeteroData) -> Tensor:
    """The training edges ``[2, E]`` (row 0 users, row 1 items)."""
    _check(data)
    return data[USER_ITEM].edge_index


def held_out_edges(data: HeteroData, split: str) -> Tensor:
    """The held-out positives of ``split`` (``'val'`` or ``'test'``) as ``[2, E]``."""
    _check(data)
    if split not in ("val", "test"):
        raise PygCFError(f"split must be 'val' or 'test', got {split!r}")
    ei = getattr(data[USER_ITEM], f"{split}_edge_index", None)
    if ei is None:
        dev = data[USER_ITEM].edge_index.device
        return torch.empty(2, 0, dtype=torch.long, device=dev)
    return ei


def degrees(data: HeteroData) -> tuple[Tensor, Tensor]:
    """Training degrees ``(|P_u|, |P_i|)`` of all users and items."""
    ei = train_edges(data)
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    return (
        torch.bincount(ei[0], minlength=nu),
        torch.bincount(ei[1], minlength=ni),
    )


def summarize(data: HeteroData) -> str:
    """One line: users, items, interactions per split and density."""
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    ntr = train_edges(data).size(1)
    nva = held_out_edges(data, "val").size(1)
    nte = held_out_edges(data, "test").size(1)
    total = ntr + nva + nte
    dens = total / max(nu * ni, 1)
    return (
        f"{getattr(data, 'name', 'data')}: {nu:,} users, {ni:,} items, {total:,} interactions "
        f"({ntr:,} train / {nva:,} val / {nte:,} test), density {dens:.5f}"
    )


def data_fingerprint(data: HeteroData) -> str:
    """A short hash of the sizes and all split edges; equal data give equal fingerprints."""
    h = hashlib.sha256()
    h.update(f"{data['user'].num_nodes},{data['item'].num_nodes}".encode())
    for ei in (train_edges(data), held_out_edges(data, "val"), held_out_edges(data, "test")):
        h.update(ei.cpu().numpy().tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]
