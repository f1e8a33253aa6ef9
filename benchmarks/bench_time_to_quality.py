"""Wall time for LightGCN + sampled softmax to reach Recall@20 >= 0.175 on Gowalla, per
batching mode (full graph vs neighbor-sampled with two fan-out settings).

Settings: LightGCN K=3, d=64, in-batch SSM (tau 0.1, cosine in training, inner product at
test, collisions masked), Adam lr 1e-3, batch 2048, no L2 — the configuration of the
core Gowalla run. After every epoch the model is evaluated all-ranking on the test split;
a mode stops at the first epoch whose Recall@20 reaches the target (a speed measurement,
not model selection: nothing is tuned on the test split). Reported: epochs, training
seconds, evaluation seconds, wall and process CPU seconds to the target, final Recall@20.

    python benchmarks/bench_time_to_quality.py              # Gowalla, ~30+ min on 2 cores
    python benchmarks/bench_time_to_quality.py --quick      # tiny synthetic graph
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, bench_data, setup, table, write_results

from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer, seed_everything


def run_mode(
    data: Any,
    mode: str,
    fanout: tuple[int, ...] | None,
    target: float,
    max_epochs: int,
    max_steps: int | None,
    seed: int,
) -> dict[str, Any]:
    seed_everything(seed)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=64, num_layers=3)
    cfg = TrainConfig(
        epochs=max_epochs,
        batch_size=2048,
        lr=1e-3,
        mode=mode,
        num_neighbors=fanout,
        max_steps_per_epoch=max_steps,
        progress=False,
        seed=seed,
    )
    tr = Trainer(model, data, get_loss("ssm", tau=0.1, similarity="cos"), cfg)
    tr.generator.manual_seed(seed)
    t_train = t_eval = 0.0
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    history = []
    reached = None
    for epoch in range(1, max_epochs + 1):
        tr.epoch = epoch
        t0 = time.perf_counter()
        loss = tr.train_epoch()
        t1 = time.perf_counter()
        res = tr.evaluate("test")
        t2 = time.perf_counter()
        t_train += t1 - t0
        t_eval += t2 - t1
        history.append((epoch, loss, res["recall@20"], t1 - t0, t2 - t1))
        print(
            f"  {mode} {list(fanout) if fanout else ''} epoch {epoch}: loss {loss:.4f} "
            f"Recall@20 {res['recall@20']:.4f} train {t1 - t0:.1f}s eval {t2 - t1:.1f}s",
            flush=True,
        )
        if res["recall@20"] >= target:
            reached = epoch
            break
    return {
        "reached": reached,
        "epochs": len(history),
        "train_s": t_train,
        "eval_s": t_eval,
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "recall": history[-1][2],
        "collisions": int(tr.collisions),
        "history": history,
    }


def main() -> None:
    p = base_parser(__doc__ or "")
    p.add_argument("--target", type=float, default=0.175)
    p.add_argument("--max-epochs", type=int, default=8)
    p.add_argument("--fanouts", default="10,10,10;5,5,5")
    p.add_argument("--modes", default="full,sampled")
    args = p.parse_args()
    modes = args.modes.split(",")
    if not set(modes) <= {"full", "sampled"}:
        p.error(f"--modes must be a comma-separated subset of full,sampled, got {args.modes!r}")
    if args.max_epochs < 1:
        p.error(f"--max-epochs must be >= 1, got {args.max_epochs}")
    try:
        fanouts = [tuple(int(v) for v in f.split(",")) for f in args.fanouts.split(";")]
    except ValueError:
        p.error(f"--fanouts must look like '10,10,10;5,5,5', got {args.fanouts!r}")
    setup(args, cuda=False)  # times the CPU only
    max_steps = None
    data = bench_data(args)
    if args.quick:
        args.max_epochs, max_steps, args.target = 2, 4, 0.0
    settings: list[tuple[str, tuple[int, ...] | None]] = []
    if "full" in modes:
        settings.append(("full", None))
    if "sampled" in modes:
        settings += [("sampled", f) for f in fanouts]
    rows, detail = [], []
    for mode, fan in settings:
        r = run_mode(data, mode, fan, args.target, args.max_epochs, max_steps, args.seed)
        name = "full graph (exact)" if fan is None else f"sampled {list(fan)}"
        rows.append(
            [
                name,
                r["reached"] if r["reached"] else f"not in {r['epochs']}",
                r["train_s"],
                r["eval_s"],
                r["wall_s"],
                r["cpu_s"] / 60,
                r["recall"],
                r["collisions"],
            ]
        )
        for ep, loss, rec, ts, es in r["history"]:
            detail.append([name, ep, loss, rec, ts, es])
    header = [
        "mode",
        f"epochs to Recall@20 >= {args.target}",
        "train s",
        "eval s",
        "wall s",
        "CPU min",
        "final Recall@20",
        "masked in-batch collisions",
    ]
    tab = table(header, rows)
    per_epoch = table(["mode", "epoch", "loss", "Recall@20", "train s", "eval s"], detail)
    print(tab)
    sections = [
        "## Time to quality",
        "",
        f"Graph: {data.name}; LightGCN K=3 d=64, in-batch SSM tau=0.1 (cos), Adam 1e-3, "
        "batch 2048; evaluation after every epoch (all-ranking, test split).",
        "",
        tab,
        "",
        "## Per epoch",
        "",
        per_epoch,
    ]
    note = "quick mode (synthetic graph, target 0): a smoke run" if args.quick else ""
    path = write_results(
        args.name or "bench_time_to_quality", "Time to quality", sections, args.results_dir, note
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
