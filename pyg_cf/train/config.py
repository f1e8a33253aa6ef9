"""Training settings."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch

from pyg_cf.errors import ConfigError
from pyg_cf.loader.interaction_loader import SAMPLINGS, check_user_block_size
from pyg_cf.loader.neighbor_sampler import check_fanouts

__all__ = ["TrainConfig"]

log = logging.getLogger(__name__)
_WARNED_NO_PATIENCE: set[int] = set()


def _check_integer(name: str, value: Any) -> None:
    """Counts must be integers (``2.5`` epochs would never reach the final evaluation)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")


def _integers(name: str, value: Any, what: str = "integers") -> tuple[int, ...]:
    """``value`` as a tuple of integers, or a :class:`ConfigError` naming ``name`` (a bare
    number, a string or a non-integer entry such as ``2.5``, which ``int`` would truncate)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{name} must be a sequence of {what}, got {value!r}")
    out = tuple(value)
    if any(isinstance(v, bool) or not isinstance(v, Integral) for v in out):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return tuple(int(v) for v in out)


def _check_bool(name: str, value: Any, optional: bool = False) -> bool | None:
    """Switches must be booleans: a string such as ``"false"`` is truthy and would turn the
    switch on. NumPy booleans are accepted as Python ones."""
    if optional and value is None:
        return None
    if isinstance(value, np.bool_):
        value = bool(value)
    if not isinstance(value, bool):
        none = " or None" if optional else ""
        raise ConfigError(f"{name} must be True or False{none}, got {value!r}")
    return value


def _check_real(name: str, value: Any) -> None:
    """Rates and weights must be numbers (a string would fail later inside a comparison)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")


@dataclass
class TrainConfig:
    """Settings of :class:`~pyg_cf.train.Trainer`.

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Training interactions per batch.
        lr: Adam learning rate.
        lr_milestones: Epochs (1-based) after which the learning rate is multiplied by
            ``lr_gamma`` (step decay, as :class:`torch.optim.lr_scheduler.MultiStepLR`):
            epoch ``e`` trains with ``lr * lr_gamma ** #{m in lr_milestones : m < e}``.
            Empty (default): a constant rate. The rate is a function of the epoch, so a
            resumed run follows the same schedule.
        lr_gamma: Decay factor at each milestone.
        l2_reg: Weight of the L2 penalty on the batch's layer-0 embeddings,
            :math:`\\lambda (\\|p_u\\|^2 + \\|q_i\\|^2 + \\|q_j\\|^2) / (2B)`.
        l2_layers: ``'input'`` (default): ``l2_reg`` penalises the layer-0 embeddings, as
            LightGCN's code does; ``'all'``: every hop's embeddings of the batch's users,
            positives and negatives, :math:`\\lambda \\sum_{k=0}^{K} (\\|p^{(k)}_u\\|^2 +
            \\|q^{(k)}_i\\|^2 + \\|q^{(k)}_j\\|^2) / (2B)`, as the Adap-τ authors' LightGCN
            does (their penalty is on the stacked ``[B, K+1, d]`` embeddings). Same as
            ``'input'`` for MF.
        eval_every: Evaluate every this many epochs (0: only at the end).
        ks: Cut-offs of the metrics.
        monitor: Validation metric for early stopping and best-weight selection.
        patience: Evaluations without improvement before stopping, at least 1 (``None``:
            never stop). With ``eval_every=0`` the only evaluation is the last epoch's, so
            it has no effect (a warning says so).
        min_epochs: Early stopping never stops before this epoch (the evaluations still
            count): a schedule that changes the loss late (Adap-τ's warm-up) is trained
            into its second phase before a plateau in the first can end the run. At most
            ``epochs`` when ``patience`` is set (early stopping could never act).
        test_similarity: ``'ip'`` or ``'cos'`` at prediction time.
        extra_test_similarities: Also evaluate under these prediction similarities at each
            evaluation, logged as ``val_<sim>_<metric>`` / ``test_<sim>_<metric>`` (for
            example ``val_cos_ndcg@20``); never used for early stopping or selection. One
            training run then reports a model under several test similarities (the
            sampled-softmax paper's Table 4 crosses train and test similarity).
        eval_test: Also report test metrics at each evaluation (never used for selection).
        seed: Seed of shuffling, sampling and dropout (set when ``fit`` starts). The
            parameters are drawn when the model is built, before: call
            :func:`~pyg_cf.train.seed_everything` first for a repeatable run (the CLI
            and ``examples/reproduce.py`` do).
        device: ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
        progress: Show a tqdm bar (``None``: only on a terminal).
        max_steps_per_epoch: Cap on batches per epoch (short smoke runs).
        checkpoint_dir: Save a checkpoint after every evaluation into this directory.
        time_budget_s: Stop after the epoch whose training ends at or past this many
            seconds since :meth:`~pyg_cf.train.Trainer.fit` started (evaluations count
            toward the clock, but the budget is checked only when an epoch's training
            ends, and that epoch is still evaluated). A run can therefore end up to one
            epoch and two evaluations past the budget: when the budget runs out during a
            scheduled evaluation, one more epoch is trained and evaluated.
        mode: ``'full'`` (every step propagates over the whole training graph with a
            cached, pre-normalized adjacency; exact) or ``'sampled'`` (every step
            propagates over the batch's sampled K-hop neighborhood, see
            :class:`~pyg_cf.loader.InteractionLoader`). The model is the same in both.
        num_neighbors: Fan-out per hop in ``'sampled'`` mode (``-1`` = all neighbors, which
            gives the exact full-graph embeddings of the batch); ``None``: 10 per
            propagation hop of the model.
        sampler_backend: ``'torch'`` (vectorised sampler of pyg-cf) or ``'pyg'`` (PyG's
            ``NeighborSampler``; needs pyg-lib or torch-sparse; through torch-sparse alone
            its draw is not uniform, so sampled fan-outs are biased: a warning says so).
        degree_correction: In ``'sampled'`` mode, rescale sampled neighborhoods so that each
            aggregate estimates the full-graph one without bias (one hop at a time: layers
            1 and 2 are unbiased, the third and later are not; see
            :class:`~pyg_cf.loader.BipartiteNeighborSampler`).
        sampling: ``'edge'`` (a shuffled pass over the training interactions) or
            ``'user'`` (each row a uniformly drawn user and one of its interactions, as
            LightGCN's reference code samples for BPR) or ``'user_blocks'`` (every
            interaction once, grouped by user: cheap batches for a full softmax); see
            :class:`~pyg_cf.loader.InteractionLoader`.
        user_block_size: With ``sampling='user_blocks'``, at most this many of a user's
            interactions per block (``None``: whole users); see
            :class:`~pyg_cf.loader.InteractionLoader`.
        sparse_grad: In ``'sampled'`` mode, use sparse embedding gradients and
            :class:`~pyg_cf.train.optim.LazyAdam` (lazy Adam, the update of
            :class:`torch.optim.SparseAdam` in fewer passes: only the rows in the batch's
            subgraph are updated), so that a step costs O(subgraph) instead of
            O(all embeddings) — for very large graphs.
        user_dropout: Dropout probability applied to the batch's user embeddings before
            the loss, in training only (evaluation uses the plain embeddings). The Adap-τ
            authors' MF runs use 0.1; 0 (default) turns it off.
        retain_cpu_memory: Tune glibc's allocator so that large CPU temporaries are reused
            instead of mmapped and page-faulted every step
            (:func:`~pyg_cf.train.memory.retain_freed_memory`; process-wide, the process
            keeps its peak heap). ``None`` (default): on when the device is the CPU and an
            embedding table is at least 32 MiB (glibc's largest mmap threshold), where it
            pays (1.4–1.6x faster sampled steps at 10 M interactions, measured); off for
            smaller graphs.
        cuda_graphs: On a CUDA device in ``'full'`` mode, record the training step
            (forward, loss, backward, Adam) as a CUDA graph at the start of each epoch and
            replay it for every batch (:class:`~pyg_cf.train.cuda_graph.GraphedStep`): the
            same kernels without the launch overhead that bounds small models on a GPU.
            Batches of another shape run eagerly; a step that cannot be captured falls back
            to eager execution with a warning. Python state that the loss reads must not
            change within an epoch (per-epoch schedules are fine).
        extra: Free-form settings of the caller's (a dict; recorded, never read).
    """

    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    l2_reg: float = 0.0
    l2_layers: str = "input"
    eval_every: int = 1
    ks: tuple[int, ...] = (20,)
    monitor: str = "ndcg@20"
    patience: int | None = 10
    min_epochs: int = 0
    test_similarity: str = "ip"
    extra_test_similarities: tuple[str, ...] = ()
    eval_test: bool = True
    seed: int = 0
    device: str = "cpu"
    progress: bool | None = None
    max_steps_per_epoch: int | None = None
    checkpoint_dir: str | os.PathLike[str] | None = None
    time_budget_s: float | None = None
    mode: str = "full"
    num_neighbors: tuple[int, ...] | None = None
    sampler_backend: str = "torch"
    degree_correction: bool = True
    sparse_grad: bool = False
    sampling: str = "edge"
    user_block_size: int | None = None
    user_dropout: float = 0.0
    retain_cpu_memory: bool | None = None
    cuda_graphs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "min_epochs"):
            _check_integer(name, getattr(self, name))
        for name in ("patience", "max_steps_per_epoch"):
            if getattr(self, name) is not None:
                _check_integer(name, getattr(self, name))
        for name in ("eval_test", "degree_correction", "sparse_grad", "cuda_graphs"):
            setattr(self, name, _check_bool(name, getattr(self, name)))
        for name in ("progress", "retain_cpu_memory"):
            setattr(self, name, _check_bool(name, getattr(self, name), optional=True))
        for name in ("lr", "lr_gamma", "l2_reg", "user_dropout"):
            _check_real(name, getattr(self, name))
        if self.time_budget_s is not None:
            _check_real("time_budget_s", self.time_budget_s)
        self.ks = _integers("ks", self.ks, "integer cut-offs")
        if any(k < 1 for k in self.ks):
            raise ConfigError(f"ks must be cut-offs >= 1, got {self.ks}")
        if self.patience is not None and self.patience < 1:
            # 0 would read as "stop at once" but stopped like 1, at the first evaluation
            # without improvement
            raise ConfigError(
                f"patience must be >= 1 (evaluations without improvement) or None (never "
                f"stop), got {self.patience}"
            )
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError(
                f"max_steps_per_epoch must be >= 1 or None (no cap), got {self.max_steps_per_epoch}"
            )
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError(f"time_budget_s must be > 0 or None, got {self.time_budget_s}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, Integral)
            or not 0 <= self.seed < 2**32
        ):  # NumPy's global seed (seed_everything) takes 32 bits
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.checkpoint_dir is not None:
            if isinstance(self.checkpoint_dir, bytes) or not isinstance(
                self.checkpoint_dir, (str, os.PathLike)
            ):
                raise ConfigError(
                    f"checkpoint_dir must be a folder path or None, got {self.checkpoint_dir!r}"
                )
            self.checkpoint_dir = os.fspath(self.checkpoint_dir)
            if not str(self.checkpoint_dir).strip():
                raise ConfigError("checkpoint_dir is empty: name a folder (or None for none)")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"lr must be > 0 and finite, got {self.lr}")
        self.lr_milestones = tuple(sorted(_integers("lr_milestones", self.lr_milestones, "epochs")))
        if any(m < 1 for m in self.lr_milestones):
            raise ConfigError(f"lr_milestones must be epochs >= 1, got {self.lr_milestones}")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        if not 0 <= self.user_dropout < 1:
            raise ConfigError(f"user_dropout must be in [0, 1), got {self.user_dropout}")
        if self.min_epochs < 0:
            raise ConfigError(f"min_epochs must be >= 0, got {self.min_epochs}")
        if self.patience is not None and self.min_epochs > self.epochs:
            raise ConfigError(
                f"min_epochs ({self.min_epochs}) is more than epochs ({self.epochs}): early "
                f"stopping (patience={self.patience}) could never stop the run; lower "
                "min_epochs, or set patience=None"
            )
        if not 0 <= self.l2_reg < math.inf:
            raise ConfigError(f"l2_reg must be >= 0 and finite, got {self.l2_reg}")
        if self.l2_layers not in ("input", "all"):
            raise ConfigError(f"l2_layers must be 'input' or 'all', got {self.l2_layers!r}")
        bad_device = f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
        try:
            kind = torch.device(self.device).type
        except (RuntimeError, TypeError) as e:
            raise ConfigError(bad_device) from e
        if kind not in ("cpu", "cuda"):
            raise ConfigError(bad_device)
        if self.test_similarity not in ("ip", "cos"):
            raise ConfigError(
                f"test_similarity must be 'ip' or 'cos', got {self.test_similarity!r}"
            )
        if isinstance(self.extra_test_similarities, str) or not isinstance(
            self.extra_test_similarities, (tuple, list)
        ):
            raise ConfigError(
                "extra_test_similarities must be a tuple of similarity names such as "
                f"('cos',), got {self.extra_test_similarities!r}"
            )
        self.extra_test_similarities = tuple(self.extra_test_similarities)
        bad = [s for s in self.extra_test_similarities if s not in ("ip", "cos")]
        if bad or self.test_similarity in self.extra_test_similarities:
            raise ConfigError(
                "extra_test_similarities must name 'ip' or 'cos' other than test_similarity "
                f"({self.test_similarity!r}), got {self.extra_test_similarities!r}"
            )
        if len(set(self.extra_test_similarities)) != len(self.extra_test_similarities):
            raise ConfigError(
                f"extra_test_similarities has duplicates: {self.extra_test_similarities!r}"
            )
        if self.eval_every < 0:
            raise ConfigError(f"eval_every must be >= 0, got {self.eval_every}")
        if self.eval_every == 0 and self.patience is not None:
            # a warning, not an error: patience is set by default (10), and eval_every=0
            # with it is the common way to ask for one final evaluation
            if self.patience not in _WARNED_NO_PATIENCE:  # once per value and process
                _WARNED_NO_PATIENCE.add(self.patience)
                log.warning(
                    "eval_every=0 evaluates only the last epoch: patience=%d has no effect "
                    "(pass patience=None to say so)",
                    self.patience,
                )
        if not isinstance(self.monitor, str):
            raise ConfigError(f"monitor must look like 'ndcg@20', got {self.monitor!r}")
        name, _, k = self.monitor.partition("@")
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
        if (
            name not in ("recall", "ndcg", "precision", "hitrate")
            or not (k.isascii() and k.isdigit())
            or int(k) < 1
        ):
            raise ConfigError(f"monitor must look like 'ndcg@20', got {self.monitor!r}")
        self.monitor = f"{name}@{int(k)}"  # 'ndcg@020' is the metric named 'ndcg@20'
        if int(k) not in self.ks:
            self.ks = (*self.ks, int(k))
        if self.mode not in ("full", "sampled"):
            raise ConfigError(f"mode must be 'full' or 'sampled', got {self.mode!r}")
        if self.num_neighbors is not None:
            self.num_neighbors = _integers(
                "num_neighbors", self.num_neighbors, "fan-outs, one per layer"
            )
            check_fanouts(self.num_neighbors)
        if self.sampler_backend not in ("torch", "pyg"):
            raise ConfigError(
                f"sampler_backend must be 'torch' or 'pyg', got {self.sampler_backend!r}"
            )
        if self.sampling not in SAMPLINGS:
            raise ConfigError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        check_user_block_size(self.user_block_size, self.sampling)
        if self.sparse_grad and self.mode != "sampled":
            raise ConfigError("sparse_grad=True needs mode='sampled'")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a dict, got {self.extra!r}")
        if self.cuda_graphs and (kind != "cuda" or self.mode != "full"):
            raise ConfigError(
                "cuda_graphs=True needs a CUDA device and mode='full' (sampled subgraphs "
                f"change shape every batch), got device={self.device!r}, mode={self.mode!r}"
            )

    def lr_at(self, epoch: int) -> float:
        """The learning rate of (1-based) ``epoch`` under the step-decay schedule."""
        return self.lr * self.lr_gamma ** sum(m < epoch for m in self.lr_milestones)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
