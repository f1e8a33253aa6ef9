"""Atomic checkpoints that resume a seeded run exactly, loaded without unpickling code."""

from __future__ import annotations

import os
import random
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pyg_cf.data.graph import data_fingerprint
from pyg_cf.errors import PygCFError

if TYPE_CHECKING:
    from pyg_cf.train.trainer import Trainer

__all__ = ["load_checkpoint", "save_checkpoint"]


def _np_state() -> dict[str, Any]:
    # The legacy global state is what third-party code seeded with np.random.seed uses.
    st: Any = np.random.get_state(legacy=True)  # noqa: NPY002
    name, keys, pos, has_gauss, gauss = st
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
        "pos": pos,
        "has_gauss": has_gauss,
        "gauss": gauss,
    }


def save_checkpoint(trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """Write model, optimizer, epoch, history, RNG states, data fingerprint and config to
    ``path`` atomically (a temporary file renamed over the target)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    state = {
        "format": "pyg-cf-checkpoint-1",
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "epoch": trainer.epoch,
        "history": trainer.history,
        "best_score": trainer.best_score,
        "best_state": trainer.best_state,
        "bad_evals": trainer.bad_evals,
        "fingerprint": data_fingerprint(trainer.data),
        "config": {k: v for k, v in trainer.config.to_dict().items() if k != "extra"},
        "rng": {
            "python": repr(random.getstate()),
            "numpy": _np_state(),
            "torch": torch.get_rng_state(),
            "generator": trainer.generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "loss_state": {
            k: v
            for k, v in vars(trainer.loss).items()
            if isinstance(v, (int, float, str, bool)) and not k.startswith("_")
        },
    }
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """Restore ``trainer`` from ``path`` so that :meth:`Trainer.fit` continues the run.

    Raises:
        PygCFError: if the file is missing, not a pyg-cf checkpoint, or was written for
            other data (fingerprint mismatch).
    """
    import ast

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PygCFError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=trainer.device, weights_only=True)
    except Exception as e:
        raise PygCFError(f"checkpoint {path} could not be read safely: {e}") from None
    if not isinstance(state, dict) or state.get("format") != "pyg-cf-checkpoint-1":
        raise PygCFError(f"{path} is not a pyg-cf checkpoint")
    fp = data_fingerprint(trainer.data)
    if state["fingerprint"] != fp:
        raise PygCFError(
            f"checkpoint {path} was written for other data (fingerprint "
            f"{state['fingerprint']}, this data {fp})"
        )
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.epoch = int(state["epoch"])
    trainer.history = list(state["history"])
    trainer.best_score = float(state["best_score"])
    trainer.best_state = state["best_state"]
    trainer.bad_evals = int(state["bad_evals"])
    for k, v in state.get("loss_state", {}).items():
        setattr(trainer.loss, k, v)
    rng = state["rng"]
    random.setstate(ast.literal_eval(rng["python"]))
    n = rng["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(rng["torch"].cpu())
    trainer.generator.set_state(rng["generator"].cpu())
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
