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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

K = TypeVar("K")

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
    if DEVICE.type == "cuda":
        dev = f"{torch.cuda.get_device_name(DEVICE)} (CUDA {torch.version.cuda}); timed on it"
    else:
        dev = "CPU (timed on it)" + (
            f"; CUDA {torch.cuda.get_device_name()} visible" if torch.cuda.is_available() else ""
        )
    lines = [
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores visible, {mem:.0f} GiB RAM; "
        f"torch threads: {torch.get_num_threads()}",
        f"- device: {dev}",
        f"- python {platform.python_version()}, torch {torch.__version__}, "
        f"torch_geometric {torch_geometric.__version__}, torch-sparse {ts}, "
        f"pyg-lib {'yes' if tgt.WITH_PYG_LIB else 'no'}",
        f"- load average (1/5/15 min) when the results were written: {load()}",
    ]
    quiet = os.environ.get("PYG_CF_BENCH_QUIET_MACHINE") == "1"
    if DEVICE.type == "cpu" and quiet:
        lines.append(
            "- note: no other job ran during measurement (the machine's long runs were "
            "paused with SIGSTOP; PYG_CF_BENCH_QUIET_MACHINE=1)."
        )
    elif DEVICE.type == "cpu":
        lines.append(
            "- note: the machine was shared with other jobs during measurement (2 cores, other "
            "agents' processes and training runs); absolute times are noisy and inflated, "
            "ratios within one run are the meaningful numbers."
        )
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
    """Write ``<results_dir>/<name>.md`` (default ``benchmarks/results``); returns the path.

    A hand-written ``## Notes`` section of the file being replaced (the history of earlier
    runs, interpretation) is carried over after the new tables.
    """
    d = Path(results_dir) if results_dir else RESULTS
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.md"
    cmd = "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    body = [f"# {title}", "", f"Command: `{cmd}`", "", "## Machine", "", *machine(note), ""]
    body += [*sections, ""]
    if path.exists():
        old = path.read_text()
        start = old.find("\n## Notes\n")
        if start >= 0:
            body += [old[start + 1 :].rstrip("\n"), ""]
    path.write_text("\n".join(body))
    return path


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (steps, threads, batch sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny synthetic run (for tests)")
    p.add_argument("--results-dir", default=None, help="where to write <name>.md")
    p.add_argument("--name", default=None, help="results file name (default: the script's)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda[:N]' (where supported)")
    return p


# the device a benchmark times on (``--device``; set by :func:`setup`)
DEVICE = torch.device("cpu")


def sync() -> None:
    """Wait for queued device work (a no-op on the CPU): call before reading a timer."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def setup(args: argparse.Namespace, cuda: bool = True) -> None:
    """Apply the common options; ``cuda=False`` for a benchmark that times the CPU only (a
    ``--device cuda`` is then refused rather than ignored under a results file that would
    say it was timed on the GPU)."""
    global DEVICE
    from pyg_cf.errors import ConfigError
    from pyg_cf.train import TrainConfig

    name = getattr(args, "device", "cpu")
    try:
        TrainConfig(device=name)  # the package's own check of a device name
    except ConfigError as e:
        raise SystemExit(f"--device: {e}") from None
    DEVICE = torch.device(name)
    if DEVICE.type != "cpu" and not cuda:
        raise SystemExit(
            f"--device {name}: {Path(sys.argv[0]).name} times the CPU only "
            "(see benchmarks/README.md)"
        )
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: no CUDA device is visible")
    if args.quick and args.name is None:  # never overwrite measured results with a smoke run
        args.name = Path(sys.argv[0]).stem + "_quick"
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def synthetic_data(num_edges: int, num_users: int, num_items: int, seed: int = 0) -> Any:
    """A pyg-cf data object of a power-law graph from
    :func:`pyg_cf.data.synthetic.power_law_bipartite` (Pareto user degrees of shape 2 scaled to
    ``num_edges`` in total, Pareto(1.5) item popularity), 10 % of it held out as test."""
    from pyg_cf.data.synthetic import power_law_bipartite

    data = power_law_bipartite(
        num_users, num_items, num_edges=num_edges, test_ratio=0.1, seed=seed,
        name=f"powerlaw-{num_edges}",
    )  # fmt: skip
    return data


def bench_data(args: argparse.Namespace) -> Any:
    """The graph a benchmark times on: Gowalla (bundled), or with ``--quick`` a small
    synthetic one (:func:`synthetic_data`, 30 000 interactions; 5000 items, more than a
    batch's ``2 * BATCH`` item rows, so that full-graph steps take the batch-rows path
    ``GraphCF.embed_rows`` as on Gowalla)."""
    if args.quick:
        return synthetic_data(30000, 2000, 5000, seed=args.seed)
    from pyg_cf import datasets

    return datasets.load("gowalla")


def time_interleaved(
    runs: Mapping[K, Callable[[], None]],
    rounds: int,
    steps: int,
    after: Callable[[K], None] | None = None,
) -> dict[K, list[float]]:
    """Seconds per call of each run: one untimed warm-up call each (caches), then
    ``rounds`` rounds in which every run in turn makes ``steps`` timed calls (device work
    synced before and after each), so that drifts of a shared machine hit all alike.
    ``after(key)`` runs after each timed call, outside the timer."""
    for fn in runs.values():
        fn()
    times: dict[K, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, fn in runs.items():
            for _ in range(steps):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                times[key].append(time.perf_counter() - t0)
                if after is not None:
                    after(key)
    return times


# the papers' protocol for the step benchmarks: d, batch, Adam lr, BPR cells' L2
DIM, BATCH, LR, L2 = 64, 2048, 1e-3, 1e-4


def bpr_trainer(
    data: Any,
    model: str,
    seed: int,
    model_kwargs: Mapping[str, Any] | None = None,
    reject_positives: bool = False,
    **config: Any,
) -> Any:
    """A pyg-cf ``Trainer`` of the ``GraphCF`` ``model`` with BPR (one uniform negative)
    under the papers' protocol (``DIM``, ``BATCH``, Adam ``LR``, L2 ``L2``) on the
    benchmark's device, its weights and batches seeded with ``seed``; ``config`` sets other
    ``TrainConfig`` fields or overrides these."""
    from pyg_cf.losses import get_loss
    from pyg_cf.nn import GraphCF
    from pyg_cf.train import TrainConfig, Trainer

    torch.manual_seed(seed)
    m = GraphCF.from_data(data, model, embedding_dim=DIM, **(model_kwargs or {}))
    settings = dict(batch_size=BATCH, lr=LR, l2_reg=L2, progress=False, device=str(DEVICE))
    cfg = TrainConfig(**{**settings, **config})
    tr = Trainer(m, data, get_loss("bpr", reject_positives=reject_positives), cfg)
    tr.generator.manual_seed(seed)
    return tr


def trainer_stepper(tr: Any) -> Callable[[], None]:
    """A closure that runs the next training step of the pyg-cf ``Trainer`` ``tr`` (its
    own step, which reads the loss: one host sync), starting a new epoch when one ends."""
    batches: Any = iter(())

    def step() -> None:
        nonlocal batches
        idx = next(batches, None)
        if idx is None:
            batches = tr.batches()
            idx = next(batches)
        tr.train_step(idx)

    return step
