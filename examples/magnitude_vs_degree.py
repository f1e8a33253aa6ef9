"""Embedding magnitude vs degree for MF, SVD++ (user and item side) and LightGCN.

Trains the four models of the (alpha0, alpha1) family with the same loss (in-batch sampled
softmax, cosine, tau = 0.1) and the same short budget on Gowalla, then writes

* ``examples/results/diagnostics_slopes.json``: per model the log-log slope of embedding
  norm on training degree (users and items), the least-squares theory fit
  ``a d^(1-2 alpha0) + b d^(2-2 alpha0)`` of the propagated side, Recall@20 / NDCG@20,
  the per-group Recall@20 (eq. 22) and the cosine similarity summary;
* plots under ``examples/results/diagnostics/``: item and user magnitude vs degree (one
  line per model), long-tail bars, similarity histograms, and the theory-vs-simulation
  check on Gowalla's own graph.

Theory (one hop, non-zero mean input): E||q'||^2 ~ a d^(1-2 alpha0) + b d^(2-2 alpha0), so
the norm of a propagated side grows like d^(1 - alpha0) at large degree; MF has no
propagation and no built-in dependence on degree. ``--alpha0`` adds item-side SVD++ runs
with other alpha0 to see "larger alpha0, smaller growth" directly.

    OMP_NUM_THREADS=1 nice -n 5 python examples/magnitude_vs_degree.py --epochs 2
    python examples/magnitude_vs_degree.py --dataset ml-1m --epochs 5 --alpha0 0,1 \
        --out /tmp/ml1m_slopes.json --plots /tmp/ml1m_plots  # keep the Gowalla record
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyg_cf import datasets  # noqa: E402
from pyg_cf.diagnostics import (  # noqa: E402
    fit_theory,
    long_tail_recall,
    magnitude_slopes,
    magnitude_vs_degree,
    monte_carlo_check,
    similarity_histograms,
)
from pyg_cf.losses import get_loss  # noqa: E402
from pyg_cf.nn import GraphCF  # noqa: E402
from pyg_cf.train import TrainConfig, Trainer  # noqa: E402

RESULTS = ROOT / "examples" / "results"

# label -> (GraphCF.from_data name, constructor kwargs)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "MF": ("mf", {}),
    "SVD++ user (a0=0.5)": ("svdpp-user", {"alpha0": 0.5, "alpha1": 0.0}),
    "SVD++ item (a0=0.5)": ("svdpp-item", {"alpha0": 0.5, "alpha1": 0.0}),
    "LightGCN": ("lightgcn", {"num_layers": 3}),
}


def run_model(label: str, name: str, kw: dict[str, Any], data: Any, args: argparse.Namespace):
    torch.manual_seed(args.seed)
    model = GraphCF.from_data(data, name, embedding_dim=args.dim, **kw)
    loss = get_loss("ssm", tau=args.tau, similarity="cos")
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=0,
        patience=None,
        seed=args.seed,
        progress=False,
        max_steps_per_epoch=args.max_steps,
        time_budget_s=args.time_budget,
    )
    t0 = time.perf_counter()
    hist = Trainer(model, data, loss, cfg).fit()
    train_s = time.perf_counter() - t0
    last = hist.iloc[-1]
    df = magnitude_vs_degree(model, data)
    slopes = magnitude_slopes(df)
    binned = magnitude_slopes(df, binned=True)
    out: dict[str, Any] = {
        "model": name,
        "model_kwargs": kw,
        "alpha0": df.attrs["alpha0"] if any(df.attrs["propagated"].values()) else None,
        "alpha1": df.attrs["alpha1"] if any(df.attrs["propagated"].values()) else None,
        "propagated": df.attrs["propagated"],
        "epochs_run": int(last["epoch"]),
        "train_s": round(train_s, 1),
        "recall@20": float(last["test_recall@20"]),
        "ndcg@20": float(last["test_ndcg@20"]),
        "slopes": {
            t: {
                "norm_slope": round(slopes[t].slope, 4),
                "r2": round(slopes[t].r2, 4),
                "binned_norm_slope": round(binned[t].slope, 4),
                "norm_mean": round(float(df[df["node_type"] == t]["norm"].mean()), 4),
            }
            for t in ("user", "item")
        },
        "theory_fit": {},
    }
    for t in ("user", "item"):
        if df.attrs["propagated"][t]:
            g = df[df["node_type"] == t]
            fit = fit_theory(g["degree"], g["sq_norm"], df.attrs["alpha0"])
            out["theory_fit"][t] = {"a": fit.a, "b": fit.b, "rel_rmse": round(fit.rel_rmse, 4)}
    lt = long_tail_recall(model, data, k=20, groups=10)
    out["long_tail_recall@20"] = [round(float(v), 5) for v in lt.table["recall"]]
    sim = similarity_histograms(model, data)
    out["similarity"] = {k: round(v, 4) for k, v in sim.summary().items()}
    return out, df, lt, sim


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="cap on batches per epoch")
    p.add_argument("--time-budget", type=float, default=None, help="seconds per model")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated labels")
    p.add_argument("--alpha0", default="", help="extra item-side SVD++ alpha0 values, e.g. 0,1")
    p.add_argument("--out", default=str(RESULTS / "diagnostics_slopes.json"))
    p.add_argument("--plots", default=str(RESULTS / "diagnostics"))
    args = p.parse_args()
    for flag, value in (("--epochs", args.epochs), ("--max-steps", args.max_steps)):
        if value is not None and value < 1:  # a run with no epoch has no embeddings to read
            p.error(f"argument {flag}: expected an integer >= 1, got {value}")

    if args.dataset.lower() not in datasets.DATASETS:
        p.error(f"--dataset: unknown data set {args.dataset!r}; known: {sorted(datasets.DATASETS)}")
    labels = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in labels if k not in MODELS]
    if unknown:
        p.error(f"--models: unknown label(s) {unknown}; known: {list(MODELS)}")
    models = {k: MODELS[k] for k in labels}
    try:
        alpha0s = [float(v) for v in args.alpha0.split(",") if v.strip()]
    except ValueError:
        p.error(f"--alpha0 must be comma-separated numbers, got {args.alpha0!r}")
    for a0 in alpha0s:
        models[f"SVD++ item (a0={a0:g})"] = ("svdpp-item", {"alpha0": a0, "alpha1": 0.0})
    if not models:
        p.error("no model to run: --models and --alpha0 are both empty")
    data = datasets.load(args.dataset)
    print(f"{args.dataset}: {data['user'].num_nodes} users, {data['item'].num_nodes} items")

    results: dict[str, Any] = {}
    frames, tails, sims = {}, {}, {}
    for label, (name, kw) in models.items():
        res, df, lt, sv = run_model(label, name, kw, data, args)
        results[label], frames[label], tails[label], sims[label] = res, df, lt, sv
        s = res["slopes"]
        print(
            f"{label:22s} item slope {s['item']['norm_slope']:+.3f} "
            f"(binned {s['item']['binned_norm_slope']:+.3f})  user slope "
            f"{s['user']['norm_slope']:+.3f}  recall@20 {res['recall@20']:.4f}  "
            f"ndcg@20 {res['ndcg@20']:.4f}  [{res['train_s']:.0f} s]",
            flush=True,
        )

    # The theory on this data set's own graph: one hop from N(1, 1) entries.
    checks = {
        f"a0={a0},a1={a1}": monte_carlo_check(data, a0, a1, dim=16)
        for a0, a1 in ((0.5, 0.5), (0.5, 0.0), (1.0, 0.0))
    }
    theory = {
        k: {
            "alpha_hat": round(c.attrs["alpha"], 4),
            "x_min": c.attrs["x_min"],
            "max_abs_rel_error_bins_ge_50": round(
                float(c[c["count"] >= 50]["rel_error"].abs().max()), 4
            ),
            "max_abs_rel_error_empirical_bins_ge_50": round(
                float(c[c["count"] >= 50]["rel_error_empirical"].abs().max()), 4
            ),
        }
        for k, c in checks.items()
    }
    payload = {
        "dataset": args.dataset,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "protocol": {
            "loss": "ssm in-batch, cosine",
            "tau": args.tau,
            "dim": args.dim,
            "epochs": args.epochs,
            "max_steps_per_epoch": args.max_steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "slope": "OLS of log norm on log training degree over nodes with degree > 0",
        },
        "environment": {"python": platform.python_version(), "torch": torch.__version__},
        "models": results,
        "theory_check_on_graph": theory,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")

    try:  # the plots need the optional extra
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no plots (pip install 'pyg-cf[plot]')")
        return
    from pyg_cf.diagnostics import plots

    out = Path(args.plots)
    plots.plot_magnitude_vs_degree(frames, "item", path=out / "magnitude_item.png")
    plots.plot_magnitude_vs_degree(frames, "user", path=out / "magnitude_user.png")
    plots.plot_long_tail(tails, path=out / "long_tail.png")
    plots.plot_similarity(sims, path=out / "similarity.png")
    plots.plot_theory_check(checks["a0=0.5,a1=0.5"], path=out / "theory_check.png")
    print(f"plots in {out}")


if __name__ == "__main__":
    main()
