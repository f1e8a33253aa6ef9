"""Command line: ``python -m pyg_cf train --dataset gowalla --model lightgcn --loss ssm``.

The model flags, the ``--loss-arg`` parsing and the refusal of model flags a model does not
use are shared with ``python -m pyg_cf.train.distributed`` (see
:func:`pyg_cf.train.distributed.build_parser`), so that both command lines read the same
arguments the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main"]


def _patience(text: str) -> int | None:
    """``--patience``: an integer, or ``none`` (never stop early)."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def fan_outs(text: str) -> tuple[int, ...]:
    """``--num-neighbors`` (here and in :mod:`pyg_cf.train.distributed`): comma-separated
    integers (``10,10,10``; ``-1`` = all)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 10,10,10, got {text!r}"
        ) from None


#: the ``--model`` choices (the names :meth:`pyg_cf.nn.GraphCF.from_data` builds)
_MODELS = ("mf", "svdpp-user", "svdpp-item", "lightgcn")


def _loss_names() -> list[str]:
    from pyg_cf.losses import list_losses  # imported with the package already

    return list_losses()


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--model`` and the model flags (checked by :func:`_model_kwargs`)."""
    p.add_argument(
        "--model", default="lightgcn", choices=list(_MODELS), help="default: %(default)s"
    )
    p.add_argument(
        "--layers", type=int, default=None, help="LightGCN layers (default 3; lightgcn only)"
    )
    p.add_argument(
        "--alpha0", type=float, default=None, help="SVD++ target exponent (svdpp-* only)"
    )
    p.add_argument(
        "--alpha1", type=float, default=None, help="SVD++ source exponent (svdpp-* only)"
    )


def _add_loss_arg(p: argparse.ArgumentParser) -> None:
    """``--loss-arg KEY=VALUE`` (read by :func:`_key_values`)."""
    p.add_argument(
        "--loss-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra loss argument, the value read as JSON when it parses, else as a string "
        "(negatives=sampled); repeatable",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pyg_cf``."""
    p = argparse.ArgumentParser(
        prog="python -m pyg_cf", description="Graph collaborative filtering on PyG."
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and evaluate a model")
    t.add_argument(
        "--dataset", default="ml-1m", help="gowalla | ml-1m | citeulike (default: %(default)s)"
    )
    t.add_argument("--root", default=None, help="directory with the data set's files")
    t.add_argument(
        "--val-ratio",
        type=float,
        default=0.0,
        help="carve this fraction of each user's training items as validation",
    )
    _add_model_arguments(t)
    t.add_argument("--dim", type=int, default=64, help="embedding size (default: %(default)s)")
    t.add_argument(
        "--init-std",
        type=float,
        default=None,
        help="draw the embedding tables from N(0, STD^2) instead of Xavier-uniform",
    )
    t.add_argument(
        "--loss",
        default="ssm",
        help="a registered loss: "
        + ", ".join(_loss_names())
        + " (default: %(default)s; settings with --tau, --train-sim, --loss-arg)",
    )
    t.add_argument("--tau", type=float, default=None, help="softmax temperature")
    t.add_argument(
        "--train-sim", default=None, choices=["ip", "cos"], help="similarity inside the loss"
    )
    t.add_argument(
        "--test-sim", default="ip", choices=["ip", "cos"], help="similarity at prediction time"
    )
    t.add_argument(
        "--also-test-sim",
        action="append",
        default=[],
        choices=["ip", "cos"],
        help="also log metrics under this prediction similarity (never used for selection)",
    )
    _add_loss_arg(t)
    t.add_argument(
        "--temperature",
        default="fixed",
        choices=["fixed", "adap-tau0", "adap-tau"],
        help="temperature schedule of softmax-family losses (Adap-tau, WWW 2023)",
    )
    t.add_argument(
        "--temperature-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="schedule argument (JSON value), e.g. divisor=0.25, base=0.9; repeatable",
    )
    t.add_argument(
        "--epochs", type=int, default=10, help="most epochs to train (default: %(default)s)"
    )
    t.add_argument(
        "--batch-size", type=int, default=2048, help="rows per step (default: %(default)s)"
    )
    t.add_argument(
        "--lr", type=float, default=1e-3, help="Adam learning rate (default: %(default)s)"
    )
    t.add_argument(
        "--lr-milestones",
        type=int,
        nargs="*",
        default=[],
        help="epochs after which the learning rate is multiplied by --lr-gamma",
    )
    t.add_argument(
        "--lr-gamma",
        type=float,
        default=0.1,
        help="factor of each --lr-milestones step (default: %(default)s)",
    )
    t.add_argument("--l2", type=float, default=0.0, help="L2 weight (see --l2-layers)")
    t.add_argument(
        "--l2-layers",
        default="input",
        choices=["input", "all"],
        help="which embeddings --l2 penalises: layer 0 (LightGCN's code) or every hop's "
        "(the Adap-tau authors' LightGCN)",
    )
    t.add_argument(
        "--sampling",
        default="edge",
        choices=["edge", "user", "user_blocks"],
        help="rows of an epoch: a pass over interactions, uniform users (LightGCN code), or "
        "the pass grouped by user (user_blocks: far cheaper batches for --loss softmax)",
    )
    t.add_argument(
        "--user-block-size",
        type=int,
        default=None,
        help="with --sampling user_blocks: at most this many of a user's interactions per "
        "block, blocks shuffled apart (more direct updates per user; default: whole users)",
    )
    t.add_argument(
        "--mode",
        default="full",
        choices=["full", "sampled"],
        help="propagate every step over the whole training graph (exact) or over the "
        "batch's sampled K-hop neighborhood (see --num-neighbors; default: %(default)s)",
    )
    t.add_argument(
        "--num-neighbors",
        type=fan_outs,
        default=None,
        metavar="F1,F2,...",
        help="with --mode sampled: fan-out per hop, e.g. 10,10,10 (-1: all neighbors; "
        "default: 10 per layer)",
    )
    t.add_argument(
        "--sparse-grad",
        action="store_true",
        help="with --mode sampled: sparse embedding gradients and lazy Adam (a step touches "
        "only its subgraph's rows; for graphs of millions of nodes)",
    )
    t.add_argument(
        "--user-dropout",
        type=float,
        default=0.0,
        help="dropout on the batch's user embeddings in training (Adap-tau authors' MF: 0.1)",
    )
    t.add_argument(
        "--eval-every",
        type=int,
        default=1,
        help="epochs between evaluations (and checkpoints; default: %(default)s)",
    )
    t.add_argument(
        "--patience",
        type=_patience,
        default=10,
        help="evaluations without improvement before stopping; 'none': never stop early",
    )
    t.add_argument(
        "--min-epochs", type=int, default=0, help="early stopping never stops before this epoch"
    )
    t.add_argument("--max-steps", type=int, default=None, help="batches per epoch cap")
    t.add_argument("--time-budget", type=float, default=None, help="seconds")
    t.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the model's initialisation and training, and also of the --val-ratio "
        "validation carve (another seed carves another validation split)",
    )
    t.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    t.add_argument("--output", default=None, help="write history and summary JSON here")
    t.add_argument(
        "--checkpoint-dir",
        default=None,
        help="save DIR/last.pt after every evaluation (exact resume with --resume)",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint-dir/last.pt when it exists (same arguments; "
        "--epochs may be raised)",
    )
    t.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT",
        help="warm start: the model weights of a pyg-cf checkpoint, everything else (loss, "
        "optimizer, schedule, epochs) from these arguments; ignored when --resume finds a "
        "checkpoint to continue",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    t.add_argument(
        "--verbose",
        action="store_true",
        help="also log each epoch's full history row (every metric; --output keeps them too)",
    )
    return p


def _key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as keyword arguments, each value read as JSON when it parses,
    else kept as the string (``negatives=sampled`` and ``negatives='"sampled"'`` agree);
    :class:`~pyg_cf.errors.ConfigError` for an item without ``=``."""
    from pyg_cf.errors import ConfigError

    kw: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            kw[key] = json.loads(value)
        except json.JSONDecodeError:
            kw[key] = value
    return kw


def _loss_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The loss's keyword arguments from ``--tau``, ``--train-sim`` and ``--loss-arg``;
    a :class:`~pyg_cf.errors.ConfigError` where a flag and a ``--loss-arg`` disagree."""
    from pyg_cf.errors import ConfigError

    kw: dict[str, Any] = {}
    if args.tau is not None:
        kw["tau"] = args.tau
    if args.train_sim is not None:
        kw["similarity"] = args.train_sim
    extra = _key_values(args.loss_arg, "--loss-arg")
    for key, flag in (("tau", "--tau"), ("similarity", "--train-sim")):
        if key in kw and key in extra and extra[key] != kw[key]:
            raise ConfigError(
                f"{flag} {kw[key]} and --loss-arg {key}={extra[key]} disagree: give one"
            )
    kw.update(extra)
    return kw


def _check_model_flags(args: argparse.Namespace) -> None:
    """Refuse (:class:`~pyg_cf.errors.ConfigError`) model flags that ``--model`` does not
    use: silently ignored, they would make a run look like another."""
    from pyg_cf.errors import ConfigError

    if args.layers is not None and args.model != "lightgcn":
        raise ConfigError(f"--layers only applies to --model lightgcn, got --model {args.model}")
    for flag in ("alpha0", "alpha1"):
        if getattr(args, flag) is not None and not args.model.startswith("svdpp"):
            raise ConfigError(
                f"--{flag} only applies to --model svdpp-user or svdpp-item, "
                f"got --model {args.model}"
            )


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :meth:`~pyg_cf.nn.GraphCF.from_data` that the model flags
    give, after :func:`_check_model_flags`; ``args.layers`` is set to the 3 LightGCN
    layers used when ``--layers`` was left out (recorded as used)."""
    _check_model_flags(args)
    kw: dict[str, Any] = {}
    if args.model == "lightgcn":
        if args.layers is None:
            args.layers = 3
        kw["num_layers"] = args.layers
    if args.model.startswith("svdpp"):
        for flag in ("alpha0", "alpha1"):
            if getattr(args, flag) is not None:
                kw[flag] = getattr(args, flag)
    return kw


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ``train`` command; returns the summary written to ``--output``."""
    from pyg_cf import datasets
    from pyg_cf.data.graph import summarize
    from pyg_cf.errors import ConfigError
    from pyg_cf.losses import get_loss
    from pyg_cf.losses.temperature import get_temperature_schedule
    from pyg_cf.metrics import popularity_baseline
    from pyg_cf.nn import GraphCF
    from pyg_cf.train import Callback, TrainConfig, Trainer, history_records, seed_everything

    mkw: dict[str, Any] = {"embedding_dim": args.dim}
    if args.init_std is not None:
        mkw["init_std"] = args.init_std
    mkw.update(_model_kwargs(args))
    # the settings that need no data first: a wrong one fails before a minute of loading
    for flag, given in (
        ("--num-neighbors", args.num_neighbors),
        ("--sparse-grad", args.sparse_grad),
    ):
        if given not in (None, False) and args.mode != "sampled":
            raise ConfigError(f"{flag} needs --mode sampled")
    loss = get_loss(args.loss, **_loss_kwargs(args))
    cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_milestones=tuple(args.lr_milestones),
        lr_gamma=args.lr_gamma,
        l2_reg=args.l2,
        l2_layers=args.l2_layers,
        sampling=args.sampling,
        user_block_size=args.user_block_size,
        mode=args.mode,
        num_neighbors=args.num_neighbors,
        sparse_grad=args.sparse_grad,
        user_dropout=args.user_dropout,
        eval_every=args.eval_every,
        patience=args.patience,
        min_epochs=args.min_epochs,
        test_similarity=args.test_sim,
        extra_test_similarities=tuple(args.also_test_sim),
        seed=args.seed,
        device=args.device,
        max_steps_per_epoch=args.max_steps,
        time_budget_s=args.time_budget,
        checkpoint_dir=args.checkpoint_dir,
        progress=None if not args.quiet else False,
    )
    if args.resume and args.checkpoint_dir is None:
        raise ConfigError("--resume needs --checkpoint-dir")
    callbacks: list[Callback] = []
    if args.temperature != "fixed" or args.temperature_arg:
        tkw = _key_values(args.temperature_arg, "--temperature-arg")
        callbacks.append(get_temperature_schedule(args.temperature, **tkw))
    data = datasets.load(args.dataset, root=args.root, val_ratio=args.val_ratio, seed=args.seed)
    print(summarize(data))
    seed_everything(args.seed)
    model = GraphCF.from_data(data, args.model, **mkw)
    pop = popularity_baseline(data, "test", ks=cfg.ks)
    print(f"popularity baseline: Recall@20 {pop['recall@20']:.4f}  NDCG@20 {pop['ndcg@20']:.4f}")

    def report(row: dict[str, Any]) -> None:
        parts = [f"epoch {row['epoch']:3d}", f"loss {row['loss']:.4f}", f"{row['train_s']:.1f}s"]
        if "l2" in row:  # the L2 penalty, which the loss excludes
            parts.insert(2, f"l2 {row['l2']:.5f}")
        if "tau0" in row:
            parts.append(f"tau0 {row['tau0']:.4f}")
        for split in ("val", "test"):
            if f"{split}_recall@20" in row:
                parts.append(
                    f"{split} Recall@20 {row[f'{split}_recall@20']:.4f} "
                    f"NDCG@20 {row[f'{split}_ndcg@20']:.4f}"
                )
        print("  ".join(parts), flush=True)

    trainer = Trainer(model, data, loss, cfg, callbacks=callbacks)
    last = os.path.join(args.checkpoint_dir or "", "last.pt")
    if args.resume and os.path.exists(last):
        from pyg_cf.train.checkpoint import load_checkpoint

        epoch = load_checkpoint(trainer, last)
        print(f"resumed from {last} after epoch {epoch}")
    elif args.init_from:
        from pyg_cf.train.checkpoint import load_weights

        epoch = load_weights(trainer, args.init_from)
        print(f"initialised the model from {args.init_from} (written after epoch {epoch})")
    t0 = time.perf_counter()
    hist = trainer.fit(on_epoch=report)
    final = trainer.evaluate("test")
    wall = time.perf_counter() - t0
    if len(hist) and "elapsed_s" in hist:  # all epochs, also those before a resume
        wall = max(wall, float(hist["elapsed_s"].iloc[-1]))
    print(
        f"final test: Recall@20 {final['recall@20']:.4f}  NDCG@20 {final['ndcg@20']:.4f}  "
        f"({len(hist)} epochs, {wall:.0f}s)"
    )
    summary = {
        "args": vars(args),
        "test": final,
        "popularity": pop,
        "wall_s": wall,
        "epochs": len(hist),
        "history": history_records(hist),
    }
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(summary, f, indent=1, default=float)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pyg_cf`` and the ``pyg-cf`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose exclude each other")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # the trainer logs each epoch's history row at INFO; the command prints its own line
    trainer_log = logging.getLogger("pyg_cf.train.trainer")
    level = trainer_log.level
    trainer_log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    from pyg_cf.errors import PygCFError

    try:
        if args.command == "train":
            train_command(args)
    except PygCFError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:  # a caller's own logging (main() called in a notebook or a test) is left as found
        trainer_log.setLevel(level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
