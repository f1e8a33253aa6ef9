"""Named real data sets: ``load("gowalla" | "ml-1m" | "citeulike")``.

Files are looked up in ``root`` if given, else in ``$PYG_CF_DATA`` when it is set, else in
the ``datasets/`` folder of a source checkout, else in ``../shared/data`` beside it. Nothing
is ever downloaded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from torch_geometric.data import HeteroData

from pyg_cf.data.graph import held_out_edges, summarize, train_edges
from pyg_cf.data.loaders import from_edge_list_files, from_lightgcn_files
from pyg_cf.errors import ConfigError, DataFormatError

__all__ = ["DATASETS", "DatasetInfo", "find_root", "load"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """What a named data set is and the sizes verified on load."""

    name: str
    fmt: str  # "lightgcn" or "edgelist"
    files: tuple[str, ...]
    num_users: int
    num_items: int
    num_train: int
    num_test: int
    num_val: int = 0  # interactions of a shipped validation file (0: none shipped)


DATASETS: dict[str, DatasetInfo] = {
    "gowalla": DatasetInfo(
        "gowalla", "lightgcn", ("train.txt", "test.txt"), 29_858, 40_981, 810_128, 217_242
    ),
    "ml-1m": DatasetInfo(
        "ml-1m", "lightgcn", ("train.txt", "test.txt"), 6_022, 3_043, 796_244, 99_455
    ),
    "citeulike": DatasetInfo(
        "citeulike",
        "edgelist",
        ("train.txt", "valid.txt", "test.txt"),
        5_551,
        16_980,
        151_895,  # 151,918 lines, 23 duplicates dropped
        39_882,  # 39,883 lines, 1 duplicate dropped
        18_727,  # valid.txt as loaded (duplicates and training pairs dropped)
    ),
}


def _candidates(name: str) -> list[Path]:
    here = Path(__file__).resolve().parent.parent
    out = [here / "datasets" / name, here.parent / "shared" / "data" / name]
    env = os.environ.get("PYG_CF_DATA")
    if env:
        out.insert(0, Path(env) / name)
    return out


def find_root(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the files of data set ``name``."""
    info = _info(name)
    cands = [Path(root)] if root is not None else _candidates(info.name)
    for c in cands:
        if all((c / f).is_file() for f in info.files):
            return c
    raise DataFormatError(
        f"data set {name!r} not found; looked for {', '.join(info.files)} in: "
        + ", ".join(str(c) for c in cands)
    )


def _info(name: str) -> DatasetInfo:
    key = name.lower()
    if key not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[key]


def load(
    name: str,
    root: str | os.PathLike[str] | None = None,
    val_ratio: float = 0.0,
    seed: int = 0,
    verify: bool = True,
) -> HeteroData:
    """Load a named data set as a pyg-cf :class:`HeteroData`.

    Args:
        name: ``'gowalla'``, ``'ml-1m'`` or ``'citeulike'``.
        root: Directory with the data set's files (default: search the bundled copies).
        val_ratio: For the LightGCN-style sets, carve this fraction of each user's training
            interactions into a validation split (seeded). CiteULike ships its own.
        seed: Seed of that carve.
        verify: Check the published sizes (users, items, train and test interactions, and
            validation interactions where the data set ships a validation file).

    Nothing is printed; the one-line summary of :func:`~pyg_cf.data.summarize` is logged
    at DEBUG level (``python -m pyg_cf train`` prints it).

    Example:
        >>> from pyg_cf.data import summarize
        >>> data = load("gowalla")  # doctest: +SKIP
        >>> print(summarize(data))  # doctest: +SKIP
        gowalla: 29,858 users, 40,981 items, 1,027,370 interactions (810,128 train / ...
    """
    info = _info(name)
    path = find_root(info.name, root)
    if info.fmt == "lightgcn":
        data = from_lightgcn_files(path, val_ratio=val_ratio, seed=seed, name=info.name)
    else:
        if val_ratio:
            log.warning(
                "%s ships its own validation split (valid.txt); val_ratio=%s is not used",
                info.name,
                val_ratio,
            )
        data = from_edge_list_files(
            path / "train.txt",
            test_path=path / "test.txt",
            val_path=path / "valid.txt",
            name=info.name,
        )
    if verify:
        ntr = train_edges(data).size(1) + (
            held_out_edges(data, "val").size(1) if info.fmt == "lightgcn" else 0
        )
        got: tuple[int, ...] = (
            data["user"].num_nodes,
            data["item"].num_nodes,
            ntr,
            held_out_edges(data, "test").size(1),
        )
        want: tuple[int, ...] = (info.num_users, info.num_items, info.num_train, info.num_test)
        fields = "users, items, train, test"
        if info.num_val:
            got += (held_out_edges(data, "val").size(1),)
            want += (info.num_val,)
            fields += ", val"
        if got != want:
            raise DataFormatError(
                f"{info.name} in {path}: expected ({fields}) = {want}, "
                f"found {got}; the files differ from the published release"
            )
    log.debug(summarize(data))  # at DEBUG: the caller decides whether to show it
    return data
