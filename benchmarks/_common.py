"""Shared helpers of the benchmark scripts: machine description, timing, result tables."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load() -> str:
    try:
        a, b, c = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{a:.2f} / {b:.2f} / {c:.2f}"


def machine(note: str = "") -> list[str]:
    """Lines describing the machine and software, for a results file."""
    import torch_geometric
    import torch_geometric.typing as tgt

    try:
        import torch_sparse

        ts = torch_sparse.__version__
    except ImportError:
        ts = "not installed"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    dev = "CUDA " + torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"
    lines = [
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores visible, {mem:.0f} GiB RAM; "
        f"torch threads: {torch.get_num_threads()}",
        f"- device: {dev}",
        f"- python {platform.python_version()}, torch {torch.__version__}, "
        f"torch_geometric {torch_geometric.__version__}, torch-sparse {ts}, "
        f"pyg-lib {'yes' if tgt.WITH_PYG_LIB else 'no'}",
        f"- load average (1/5/15 min) when the results were written: {load()}",
        "- note: the machine was shared with other jobs during measurement (2 cores, other "
        "agents' processes and training runs); absolute times are noisy and inflated, "
        "ratios within one run are the meaningful numbers.",
    ]
    if note:
        lines.append(f"- {note}")
    return lines


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far (GiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20


def timeit(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeat`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_results(
    name: str, title: str, sections: Sequence[str], results_dir: str | Path | None, note: str = ""
) -> Path:
    """Write ``<results_dir>/<name>.md`` (default ``benchmarks/results``); returns the path."""
    d = Path(results_dir) if results_dir else RESULTS
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.md"
    cmd = "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    body = [f"# {title}", "", f"Command: `{cmd}`", "", "## Machine", "", *machine(note), ""]
    body += [*sections, ""]
    path.write_text("\n".join(body))
    return path


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny synthetic run (for tests)")
    p.add_argument("--results-dir", default=None, help="where to write <name>.md")
    p.add_argument("--name", default=None, help="results file name (default: the script's)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def power_law_interactions(
    num_edges: int, num_users: int, num_items: int, alpha: float = 0.8, seed: int = 0
) -> torch.Tensor:
    """A small local power-law bipartite generator (used while ``pyg_cf.data.synthetic`` is
    absent): user activity and item popularity both Zipf-like with exponent ``alpha``;
    duplicates removed, so slightly fewer than ``num_edges`` pairs come back, sorted."""
    g = torch.Generator().manual_seed(seed)

    def zipf(n: int, size: int) -> torch.Tensor:
        w = torch.arange(1, n + 1, dtype=torch.float64).pow(-alpha)
        cdf = torch.cumsum(w / w.sum(), 0)
        u = torch.rand(size, generator=g, dtype=torch.float64)
        ids = torch.searchsorted(cdf, u).clamp_(max=n - 1)
        perm = torch.randperm(n, generator=g)  # popular ids spread over the id range
        return perm[ids]

    users = zipf(num_users, num_edges)
    items = zipf(num_items, num_edges)
    key = torch.unique(users * num_items + items)
    return torch.stack([key // num_items, key % num_items])


def synthetic_data(num_edges: int, num_users: int, num_items: int, seed: int = 0) -> Any:
    """A pyg-cf data object (no held-out split: a small random test set) of a power-law
    graph from :func:`power_law_interactions` (or ``pyg_cf.data.synthetic`` when present)."""
    from torch_geometric.data import HeteroData

    from pyg_cf.data.graph import REV_EDGE, USER_ITEM

    ei = power_law_interactions(num_edges, num_users, num_items, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    test = torch.rand(ei.size(1), generator=g) < 0.1
    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].num_nodes = num_items
    data[USER_ITEM].edge_index = ei[:, ~test].contiguous()
    if num_edges <= 5_000_000:  # the reverse copy is not needed by the trainer
        data[REV_EDGE].edge_index = ei[:, ~test].flip(0).contiguous()
    data[USER_ITEM].val_edge_index = torch.empty(2, 0, dtype=torch.long)
    data[USER_ITEM].test_edge_index = ei[:, test].contiguous()
    data.name = f"powerlaw-{num_edges}"
    return data
