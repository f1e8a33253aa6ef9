"""Training: the :class:`Trainer`, its settings, callbacks and checkpoints."""

from pyg_cf.train.checkpoint import load_checkpoint, load_weights, read_checkpoint, save_checkpoint
from pyg_cf.train.config import TrainConfig
from pyg_cf.train.memory import retain_freed_memory
from pyg_cf.train.optim import LazyAdam
from pyg_cf.train.trainer import (
    Callback,
    NonFiniteLossError,
    Trainer,
    history_records,
    seed_everything,
)

__all__ = [
    "Callback",
    "LazyAdam",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "history_records",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint",
    "retain_freed_memory",
    "save_checkpoint",
    "seed_everything",
]
