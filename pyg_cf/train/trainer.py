"""The training loop: full-graph propagation, any registered loss, all-ranking evaluation."""

from __future__ import annotations

import copy
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from pyg_cf.data.graph import degrees, held_out_edges, train_edges
from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError, PygCFError
from pyg_cf.losses.base import CFLoss, LossBatch
from pyg_cf.losses.negatives import NegativeSampler
from pyg_cf.metrics.ranking import evaluate
from pyg_cf.nn.models import GraphCF
from pyg_cf.train.config import TrainConfig

__all__ = ["Callback", "NonFiniteLossError", "Trainer", "seed_everything"]

log = logging.getLogger(__name__)


class NonFiniteLossError(PygCFError):
    """The loss became NaN or infinite."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds third-party code using the global state
    torch.manual_seed(seed)


class Callback:
    """Hooks called by :class:`Trainer`; override what you need."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (1-based)."""

    def on_batch_end(self, trainer: Trainer, batch: LossBatch, loss: Tensor) -> None:
        """After each optimizer step."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        """After the epoch's evaluation; ``row`` is the history row (may be extended)."""


class Trainer:
    """Trains a :class:`~pyg_cf.nn.GraphCF` (or any module with the same ``forward``
    contract) with a registered loss and evaluates it all-ranking.

    Selection is on the validation split when ``data`` has one (early stopping on
    ``config.monitor``, best weights restored at the end). Without a validation split the
    run lasts ``config.epochs`` epochs and the final weights are kept: the test split is
    reported, never used to choose.

    Args:
        model: The model.
        data: A pyg-cf data object.
        loss: A :class:`~pyg_cf.losses.CFLoss` (e.g. ``get_loss("ssm", tau=0.1)``).
        config: A :class:`TrainConfig`.
        callbacks: Extra :class:`Callback` objects (e.g. temperature schedules).
    """

    def __init__(
        self,
        model: GraphCF,
        data: HeteroData,
        loss: CFLoss,
        config: TrainConfig | None = None,
        callbacks: list[Callback] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        if not isinstance(loss, CFLoss):
            raise ConfigError(f"loss must be a CFLoss (use get_loss), got {type(loss).__name__}")
        nu, ni = data["user"].num_nodes, data["item"].num_nodes
        if (model.num_users, model.num_items) != (nu, ni):
            raise ConfigError(
                f"model is built for {model.num_users} users / "
                f"{model.num_items} items but the data has {nu} / {ni}"
            )
        self.device = torch.device(self.config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device='cuda' but CUDA is not available")
        self.data = data
        self.model = model.to(self.device)
        self.loss = loss.to(self.device)
        self.callbacks = list(callbacks or [])
        self.train_ei = train_edges(data).to(self.device)
        self.model.set_graph(self.train_ei)
        self.num_users, self.num_items = nu, ni
        self.has_val = held_out_edges(data, "val").numel() > 0
        self.seen = UserItemIndex(self.train_ei, nu, ni)
        _, item_deg = degrees(data)
        self.sampler = NegativeSampler(
            ni,
            item_deg.to(self.device),
            kind=getattr(loss, "sampler", "uniform"),
            beta=getattr(loss, "pop_beta", 1.0),
            positives=self.seen if getattr(loss, "reject_positives", False) else None,
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.generator = torch.Generator(device=self.device)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.best_score = -math.inf
        self.best_state: dict[str, Tensor] | None = None
        self.bad_evals = 0
        self.collisions = 0

    # -- batches ---------------------------------------------------------------------------
    def batches(self) -> Iterator[Tensor]:
        """Shuffled index batches over the training edges."""
        e = self.train_ei.size(1)
        perm = torch.randperm(e, device=self.device, generator=self.generator)
        steps = math.ceil(e / self.config.batch_size)
        if self.config.max_steps_per_epoch is not None:
            steps = min(steps, self.config.max_steps_per_epoch)
        for s in range(steps):
            yield perm[s * self.config.batch_size : (s + 1) * self.config.batch_size]

    def make_batch(self, idx: Tensor) -> tuple[LossBatch, Tensor]:
        """Embeddings and negatives of one batch, and the L2 penalty."""
        users, pos = self.train_ei[0, idx], self.train_ei[1, idx]
        u_all, i_all = self.model()
        neg = neg_logp = neg_emb = None
        if self.loss.negatives == "sampled":
            neg, neg_logp = self.sampler.sample(users, self.loss.num_negatives, self.generator)
            neg_emb = i_all[neg]
        coll = None
        if self.loss.negatives == "in-batch" and getattr(self.loss, "mask_collisions", False):
            coll = self.seen.in_batch_collisions(users, pos)
            self.collisions += int(coll.sum())
        batch = LossBatch(
            users=users,
            pos_items=pos,
            user_emb=u_all[users],
            pos_emb=i_all[pos],
            neg_items=neg,
            neg_emb=neg_emb,
            neg_log_prob=neg_logp,
            all_item_emb=i_all if self.loss.negatives == "all" else None,
            in_batch_collision=coll,
        )
        reg = torch.zeros((), device=self.device)
        if self.config.l2_reg > 0:
            u0, p0 = self.model.layer0(users, pos)
            reg = u0.pow(2).sum() + p0.pow(2).sum()
            if neg is not None:
                reg = reg + self.model.item_embedding(neg).pow(2).sum()
            reg = self.config.l2_reg * reg / (2 * users.numel())
        return batch, reg

    # -- loop ------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        """One pass over the training edges; returns the mean loss."""
        self.model.train()
        total, n = 0.0, 0
        show = self.config.progress if self.config.progress is not None else sys.stderr.isatty()
        it = self.batches()
        bar = tqdm(
            it, total=self._steps(), desc=f"epoch {self.epoch}", disable=not show, leave=False
        )
        for step, idx in enumerate(bar):
            batch, reg = self.make_batch(idx)
            loss = self.loss(batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss is {value} at epoch {self.epoch}, batch {step}; the weights of the "
                    "last evaluation are kept (lower the learning rate or check the inputs)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            (loss + reg).backward()
            self.optimizer.step()
            for cb in self.callbacks:
                cb.on_batch_end(self, batch, loss)
            total += value
            n += 1
            if show and step % 20 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        return total / max(n, 1)

    def _steps(self) -> int:
        s = math.ceil(self.train_ei.size(1) / self.config.batch_size)
        if self.config.max_steps_per_epoch is not None:
            s = min(s, self.config.max_steps_per_epoch)
        return s

    @torch.no_grad()
    def evaluate(self, split: str = "test") -> dict[str, float]:
        """All-ranking metrics on ``split`` with the current weights."""
        self.model.eval()
        u, i = self.model()
        return evaluate(
            u, i, self.data, split, ks=self.config.ks, similarity=self.config.test_similarity
        )

    def fit(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> pd.DataFrame:
        """Train until ``epochs``, early stopping or the time budget; returns the history
        (one row per epoch: loss, time, and metrics at evaluation epochs)."""
        cfg = self.config
        if self.epoch == 0:
            seed_everything(cfg.seed)
            self.generator.manual_seed(cfg.seed)
        t_start = time.perf_counter() - (self.history[-1]["elapsed_s"] if self.history else 0.0)
        while self.epoch < cfg.epochs:
            self.epoch += 1
            for cb in self.callbacks:
                cb.on_epoch_start(self, self.epoch)
            t0 = time.perf_counter()
            loss = self.train_epoch()
            row: dict[str, Any] = {
                "epoch": self.epoch,
                "loss": loss,
                "train_s": time.perf_counter() - t0,
            }
            tau = getattr(self.loss, "tau", None)
            if isinstance(tau, float):
                row["tau"] = tau
            last = self.epoch == cfg.epochs or (
                cfg.time_budget_s is not None and time.perf_counter() - t_start >= cfg.time_budget_s
            )
            stop = False
            if (cfg.eval_every and self.epoch % cfg.eval_every == 0) or last:
                t1 = time.perf_counter()
                if self.has_val:
                    val = self.evaluate("val")
                    row.update({f"val_{k}": v for k, v in val.items()})
                    score = val[cfg.monitor]
                    if score > self.best_score:
                        self.best_score, self.bad_evals = score, 0
                        self.best_state = copy.deepcopy(self.model.state_dict())
                        row["best"] = True
                    else:
                        self.bad_evals += 1
                        stop = cfg.patience is not None and self.bad_evals >= cfg.patience
                if cfg.eval_test or not self.has_val:
                    row.update({f"test_{k}": v for k, v in self.evaluate("test").items()})
                row["eval_s"] = time.perf_counter() - t1
            row["elapsed_s"] = time.perf_counter() - t_start
            for cb in self.callbacks:
                cb.on_epoch_end(self, self.epoch, row)
            self.history.append(row)
            log.info(
                " ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )
            if on_epoch is not None:
                on_epoch(row)
            if cfg.checkpoint_dir is not None and "eval_s" in row:
                from pyg_cf.train.checkpoint import save_checkpoint

                save_checkpoint(self, f"{cfg.checkpoint_dir}/last.pt")
            if stop or last:
                break
        if self.has_val and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return pd.DataFrame(self.history)
