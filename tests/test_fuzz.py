"""Seeded, bounded fuzzing of the readers, loaders, layer and model.

Every call either succeeds with a well-formed result or fails with one of our own errors:
a :class:`~pyg_cf.errors.PygCFError` (or a ``ValueError``/``TypeError``) raised from a
``pyg_cf`` source file — never an ``IndexError``/``RuntimeError`` from deep in torch,
numpy or pandas.
"""

from __future__ import annotations

import linecache
import os
import random
from pathlib import Path

import pandas as pd
import torch

import pyg_cf
from pyg_cf.data import (
    from_edge_list_files,
    from_lightgcn_files,
    read_adjacency_list,
    read_edge_list,
)
from pyg_cf.errors import PygCFError
from pyg_cf.nn import BipartiteNormConv, GraphCF, bipartite_norm

PKG = os.path.dirname(os.path.abspath(pyg_cf.__file__))
N_FILES = 150
N_TENSORS = 150


def raised_by_us(e: BaseException) -> bool:
    """Whether ``e`` is one of our error types raised by a ``raise`` statement of a pyg_cf
    source file (not by a torch/numpy call that happens to be made from our code)."""
    if not isinstance(e, (PygCFError, ValueError, TypeError)):
        return False
    tb = e.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    if not os.path.abspath(filename).startswith(PKG):
        return False
    return linecache.getline(filename, tb.tb_lineno).strip().startswith("raise")


def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or ``None`` when it failed with one of our errors."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        if not raised_by_us(e):
            name = getattr(fn, "__name__", type(fn).__name__)
            raise AssertionError(
                f"{name}{args!r:.200} {kwargs!r:.200} raised a foreign {type(e).__name__}: {e}"
            ) from e
        return None


# -- files -----------------------------------------------------------------------------------
TOKENS = [
    "0", "1", "2", "17", "-3", "007", "1e3", "2.5", "nan", "inf", "-inf", "x", "user", "item",
    "99999999999999999999999", "0x1f", "é", "", "NaN", "1_000", "+4", "∞", "\x00", "\ufeff1",
]  # fmt: skip
SEPS = [" ", "  ", "\t", ",", ";", "|", " ,", ", "]


def random_text(rng: random.Random, sep: str = " ", width: int | None = None) -> str:
    """A few lines of ``width`` (default: 2 to 5) ids separated by ``sep``; about half of
    the files get malformed lines."""
    corrupt = rng.choice([0.0, 0.0, 0.15, 0.5])
    lines = []
    for _ in range(rng.randint(0, 8)):
        kind = rng.random()
        if kind < 0.08:
            lines.append(rng.choice(["", "   "]))
        elif kind >= corrupt:  # well-formed: user item [item ...]
            n = width or rng.randint(2, 5)
            lines.append(sep.join(str(rng.randint(0, 6)) for _ in range(n)))
        else:
            sep = rng.choice(SEPS)
            n = rng.randint(1, 6)
            lines.append(sep.join(rng.choice(TOKENS) for _ in range(n)))
    end = rng.choice(["\n", "\r\n", ""])
    return end.join(lines) + (end if lines and rng.random() < 0.7 else "")


def check_frame(df: pd.DataFrame) -> None:
    assert isinstance(df, pd.DataFrame) and len(df) > 0
    assert {"user", "item"} <= set(df.columns)
    assert not df[["user", "item"]].isna().any().any()


def test_fuzz_readers(tmp_path: Path):
    rng = random.Random(1234)
    ok = failed = 0
    for k in range(N_FILES):
        path = tmp_path / f"f{k}.txt"
        binary = rng.random() < 0.05
        sep = rng.choice([None, ",", "\t", " ", ";"])
        kwargs = {"sep": sep, "header": rng.random() < 0.2, "numeric_ids": rng.random() < 0.8}
        for fn, kw, text in (
            (read_adjacency_list, {"allow_empty": rng.random() < 0.5}, random_text(rng)),
            (read_edge_list, kwargs, random_text(rng, sep or " ", rng.randint(2, 4))),
        ):
            if binary:
                path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
            else:
                path.write_text(text, encoding="utf-8")
            try:
                df = fn(path, **kw)
            except Exception as e:
                assert raised_by_us(e), f"{fn.__name__}({path.read_bytes()!r}, {kw}): {e!r}"
                assert isinstance(e, PygCFError)
                assert path.name in str(e), f"message does not name the file: {e}"
                failed += 1
            else:
                check_frame(df)
                ok += 1
    assert ok > 20 and failed > 20  # the fuzzer exercised both outcomes


def test_fuzz_loaders(tmp_path: Path):
    rng = random.Random(99)
    built = 0
    for k in range(N_FILES // 3):
        d = tmp_path / f"d{k}"
        d.mkdir()
        (d / "train.txt").write_text(random_text(rng))
        (d / "test.txt").write_text(random_text(rng))
        data = call(from_lightgcn_files, d, val_ratio=rng.choice([0.0, 0.3]))
        data2 = call(
            from_edge_list_files,
            d / "train.txt",
            d / "test.txt",
            cold_start=rng.choice(["keep", "drop", "error"]),
        )
        for g in (data, data2):
            if g is not None:
                built += 1
                ei = g["user", "rates", "item"].edge_index
                assert ei.dtype == torch.long and ei.size(0) == 2
                if ei.numel():
                    assert int(ei[0].max()) < g["user"].num_nodes
                    assert int(ei[1].max()) < g["item"].num_nodes
    assert built > 5


# -- tensors ---------------------------------------------------------------------------------
def random_tensor(rng: random.Random, gen: torch.Generator) -> object:
    kind = rng.random()
    shape = [rng.choice([0, 1, 2, 3, 5]) for _ in range(rng.choice([0, 1, 1, 2, 2, 3]))]
    if kind < 0.35:
        return torch.randint(-3, 12, shape, generator=gen)
    if kind < 0.5:
        return torch.randn(shape, generator=gen)
    if kind < 0.6:
        return torch.full(shape, float(rng.choice(["nan", "inf"])))
    if kind < 0.7:
        return torch.randint(0, 2, shape, generator=gen).bool()
    if kind < 0.8:
        return [rng.randint(-2, 9) for _ in range(rng.randint(0, 4))]
    if kind < 0.9:
        return rng.choice([None, 3, -1, 2.5, "a", (1, 2)])
    return torch.randint(0, 5, (2, rng.randint(0, 6)), generator=gen)


def test_fuzz_layer():
    rng = random.Random(7)
    gen = torch.Generator().manual_seed(7)
    ei = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 1, 2, 3]])
    for cached in (False, True):
        conv = BipartiteNormConv(cached=cached)
        for _ in range(N_TENSORS):
            a, b, x = (random_tensor(rng, gen) for _ in range(3))
            size = rng.choice([None, (4, 4), (5, 4), (-1, 2), (2,), "ab"])
            call(conv, x, a)
            call(conv, (x, b), a, size=size)
            call(conv, (x, None), ei, b)
            call(conv, torch.randn(5, 3), ei, b, size=size)
            call(bipartite_norm, a, (rng.randint(0, 5), rng.randint(0, 5)), 0.5, 0.5)
            call(bipartite_norm, ei, (4, 4), 0.5, 0.5, deg_src=b)


def test_fuzz_model():
    rng = random.Random(7)
    gen = torch.Generator().manual_seed(7)
    ei = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 1, 2, 3]])
    model = GraphCF.lightgcn(4, 5, 3, num_layers=2, edge_index=ei)
    for _ in range(N_TENSORS):
        a, b = random_tensor(rng, gen), random_tensor(rng, gen)
        k = rng.choice([0, 1, 3, 5, 6, -2, 2.5])
        sim = rng.choice(["ip", "cos", "dot"])
        call(model.score, a, b, similarity=sim)
        call(model.score, a, similarity=sim)
        call(model.recommend, a, k=k, similarity=sim)
        call(model, edge_index=a)
        call(model, edge_index=a, user_nodes=b)
        call(model, edge_index=ei, user_nodes=a, item_nodes=b)
        call(model.set_graph, a)
        model.set_graph(ei)


def test_fuzz_constructors():
    rng = random.Random(3)
    values = [0, -1, 1, 2.5, "3", None, float("nan"), -(10**12), (1, 2)]
    for _ in range(N_TENSORS // 3):
        call(GraphCF, rng.choice(values), rng.choice(values), rng.choice(values))
        call(GraphCF, 4, 5, 2, rng.choice(values), rng.choice(values), rng.choice(values))
        call(BipartiteNormConv, rng.choice(values), rng.choice(values))
