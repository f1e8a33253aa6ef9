"""Shared fixtures: tiny hand-checkable graphs and the bundled real data."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from pyg_cf.data import from_splits

ROOT = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path | None:
    """Directory of a bundled real data set, or ``None`` when absent."""
    for base in (ROOT / "datasets", ROOT.parent / "shared" / "data"):
        if (base / name).is_dir():
            return base / name
    return None


@pytest.fixture
def tiny_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """4 users, 5 items (item 4 never trained on), with val and test."""
    train = pd.DataFrame({"user": [0, 0, 1, 1, 1, 2, 3, 3], "item": [0, 1, 1, 2, 3, 0, 2, 3]})
    val = pd.DataFrame({"user": [0, 2], "item": [2, 3]})
    test = pd.DataFrame({"user": [0, 1, 2, 3], "item": [3, 0, 1, 4]})
    return train, val, test


@pytest.fixture
def tiny_data(tiny_frames):  # type: ignore[no-untyped-def]
    train, val, test = tiny_frames
    return from_splits(train, val, test, name="tiny", keep_dense=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    if os.environ.get("PYG_CF_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow; set PYG_CF_RUN_SLOW=1 or use -m slow")
    if "slow" in (config.getoption("-m") or ""):
        return
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
