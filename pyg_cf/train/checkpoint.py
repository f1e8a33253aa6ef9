r"""Atomic checkpoints that resume a seeded run exactly, loaded without unpickling code.

A checkpoint holds everything a :class:`~pyg_cf.train.Trainer` needs to continue as if it
had never stopped:

* the model and optimizer ``state_dict``, the epoch, the history, the early-stopping
  state (best score, best weights, evaluations without improvement);
* every random state the run draws from: Python's :mod:`random`, NumPy's global state,
  torch's CPU (and, when present, CUDA) generators and the trainer's own generator
  (shuffling, negatives, neighbor sampling);
* the loss's state (``state_dict`` and plain attributes such as a scheduled ``tau``) and
  the state of the callbacks (e.g. the per-user losses of an adaptive temperature), and
  the settings of callbacks without a ``state_dict`` as they were built;
* the data fingerprint (:func:`~pyg_cf.data.data_fingerprint`), the model's settings
  (class, layers, exponents), the loss's class and settings as built, and the
  configuration.

The file is written to a temporary name in the target directory and renamed over the
target (:func:`os.replace`), so a crash leaves either the previous checkpoint or the new
one, never half a file; it gets the mode a plain ``open`` would give (``0o666`` less the
process's umask). It contains only tensors and plain Python containers, and is read
with ``torch.load(weights_only=True)``: loading never unpickles arbitrary objects.

Resuming a seeded CPU run from the checkpoint of epoch :math:`e` gives bit-identical
embeddings and metrics to the uninterrupted run (``tests/train/test_checkpoint.py``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import pickle
import random
import re
import tempfile
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from pyg_cf.data.graph import data_fingerprint
from pyg_cf.errors import ConfigError, PygCFError

if TYPE_CHECKING:
    from pyg_cf.train.trainer import Trainer

__all__ = ["FORMAT", "load_checkpoint", "load_weights", "read_checkpoint", "save_checkpoint"]

log = logging.getLogger(__name__)
_WARNED_DROPPED: set[tuple[str, tuple[str, ...]]] = set()

#: Format tag written into every checkpoint.
FORMAT = "pyg-cf-checkpoint-2"

# Settings that may change between the interrupted and the resumed run without changing
# what is computed (a longer run, a later or earlier early stop, another output folder, ...;
# retain_cpu_memory tunes only the process's allocator, and cuda_graphs launches the same
# kernels on the same numbers: fused Adam ignores `capturable`).
_FREE_SETTINGS = {
    "epochs",
    "min_epochs",
    "patience",
    "checkpoint_dir",
    "progress",
    "time_budget_s",
    "device",
    "extra",
    "retain_cpu_memory",
    "cuda_graphs",
}


def _unscheduled(trainer: Trainer) -> dict[str, Any] | None:
    """The trainer's record of its last epoch's off-schedule evaluation (the state to
    restore if a resume trains on), in types ``weights_only`` loading accepts."""
    undo = getattr(trainer, "unscheduled_eval", None)
    if undo is None:
        return None
    return {
        "best_score": float(undo["best_score"]),
        "best_state": undo["best_state"],
        "best_loss_state": undo["best_loss_state"],
        "bad_evals": int(undo["bad_evals"]),
        "keys": [str(k) for k in undo["keys"]],
    }


# -- plain-data conversion -------------------------------------------------------------------
def _plain(value: Any, depth: int = 0) -> tuple[bool, Any]:
    """``(ok, value)`` with ``value`` made of types that ``weights_only`` loading accepts
    (tensors, numbers, strings, ``None`` and lists/tuples/dicts of them)."""
    if depth > 8:
        return False, None
    if isinstance(value, np.generic):  # first: numpy.float64 is also a Python float
        return True, value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, Tensor):
        return True, value.detach().clone()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return True, torch.from_numpy(value.copy())
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            ok, pv = _plain(v, depth + 1)
            if not ok:
                return False, None
            out.append(pv)
        return True, out if isinstance(value, list) else tuple(out)
    if isinstance(value, dict) and all(isinstance(k, (str, int)) for k in value):
        res = {}
        for k, v in value.items():
            ok, pv = _plain(v, depth + 1)
            if not ok:
                return False, None
            res[k] = pv
        return True, res
    return False, None


def _attributes(obj: Any, private: bool) -> dict[str, Any]:
    """The plain-data attributes of ``obj`` (those :func:`_plain` accepts)."""
    out: dict[str, Any] = {}
    skip = {"training"} if isinstance(obj, torch.nn.Module) else set()
    for k, v in vars(obj).items():
        if k in skip or (k.startswith("_") and (not private or k.startswith("__"))):
            continue
        if isinstance(obj, torch.nn.Module) and k in ("_parameters", "_buffers", "_modules"):
            continue
        if isinstance(obj, torch.nn.Module) and k.startswith("_") and k.endswith("hooks"):
            continue
        ok, pv = _plain(v)
        if ok:
            out[k] = pv
    return out


def _model_settings(model: torch.nn.Module) -> dict[str, Any]:
    """What a model computes beyond its ``state_dict``: its class and propagation settings
    (MF, LightGCN of any depth and SVD++ share the same parameters)."""
    out: dict[str, Any] = {"type": type(model).__name__}
    for name in ("num_layers", "alpha0", "alpha1", "propagate_users", "propagate_items"):
        ok, value = _plain(getattr(model, name, None))
        out[name] = value if ok else None
    weights = getattr(model, "layer_weights", None)
    out["layer_weights"] = weights.tolist() if isinstance(weights, Tensor) else None
    return out


def loss_settings(loss: torch.nn.Module) -> dict[str, Any]:
    """The plain-data attributes of ``loss`` (temperature, negatives, similarity, ...);
    :class:`~pyg_cf.train.Trainer` records them as built, before any schedule runs."""
    return _attributes(loss, private=False)


def _has_tensor(value: Any) -> bool:
    """Whether plain data ``value`` holds a tensor (at any depth)."""
    if isinstance(value, Tensor):
        return True
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_tensor(v) for v in value)
    return False


def callback_settings(cb: Any) -> dict[str, Any] | None:
    """The settings of callback ``cb`` as built: its public plain-data attributes other than
    tensors (a temperature schedule's ``tau``, ``warmup_epochs``, ...).
    :class:`~pyg_cf.train.Trainer` records them before any epoch runs, and a resume compares
    them with the saved ones. ``None`` for a callback with a ``state_dict()``, whose
    ``load_state_dict`` compares its own settings."""
    if hasattr(cb, "state_dict") and callable(cb.state_dict):
        return None
    return {k: v for k, v in _attributes(cb, private=False).items() if not _has_tensor(v)}


def _built_settings(trainer: Trainer, cb: Any) -> dict[str, Any] | None:
    """The settings of ``trainer``'s callback ``cb`` as the trainer recorded them when it was
    built (``None``: not recorded, e.g. a callback appended later: nothing to compare)."""
    for other, settings in getattr(trainer, "_callback_settings", ()):
        if other is cb:
            return settings
    return None


def _same(a: Any, b: Any) -> bool:
    """Equality of plain data (tensors by value)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.shape == b.shape
            and torch.equal(a.cpu(), b.cpu())
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _callback_state(cb: Any) -> dict[str, Any]:
    if hasattr(cb, "state_dict") and callable(cb.state_dict):
        ok, st = _plain(cb.state_dict())
        if not ok:
            raise PygCFError(
                f"{type(cb).__name__}.state_dict() returned objects that cannot be saved "
                "safely (use tensors, numbers, strings and lists/dicts of them)"
            )
        return {"kind": "state_dict", "state": st}
    state = _attributes(cb, private=True)
    dropped = sorted(k for k in vars(cb) if not k.startswith("_") and k not in state)
    key = (type(cb).__name__, tuple(dropped))
    if dropped and key not in _WARNED_DROPPED:  # once per callback type and attributes
        _WARNED_DROPPED.add(key)
        log.warning(
            "checkpoint: %s attribute(s) %s hold objects that cannot be saved safely and are "
            "not in the checkpoint (a resumed run starts them afresh); give the callback a "
            "state_dict() / load_state_dict() to keep them",
            type(cb).__name__,
            dropped,
        )
    return {"kind": "attributes", "state": state}


def _set_callback_state(cb: Any, saved: dict[str, Any], keep: set[str] | None = None) -> None:
    """Restore ``cb`` from its saved entry; attributes named in ``keep`` (settings this
    trainer's callback was built with other values of) keep their current values."""
    if saved["kind"] == "state_dict" and hasattr(cb, "load_state_dict"):
        cb.load_state_dict(saved["state"])
        return
    for k, v in saved["state"].items():
        if keep is None or k not in keep:
            setattr(cb, k, v)


def _callback_changes(
    trainer: Trainer, state: dict[str, Any]
) -> tuple[dict[str, dict[str, tuple[Any, Any]]], list[set[str]], dict[str, list[str]]]:
    """How ``trainer``'s callbacks were built otherwise than the saved run's: ``(changes,
    keep, restored)``. ``changes`` maps a callback (its class, ``#i`` added when the class
    occurs twice) to its changed settings (saved vs this); ``keep`` names, per callback, the
    changed settings that did not change during the saved run (plain settings: this
    callback's values stay); ``restored`` the changed ones that did (run state: restored).
    Checkpoints written before the settings were recorded give nothing to compare."""
    callbacks = trainer.callbacks
    keep: list[set[str]] = [set() for _ in callbacks]
    changes: dict[str, dict[str, tuple[Any, Any]]] = {}
    restored: dict[str, list[str]] = {}
    saved_settings = state.get("callback_settings")
    if not isinstance(saved_settings, list) or len(saved_settings) != len(callbacks):
        return changes, keep, restored
    names = [type(cb).__name__ for cb in callbacks]
    for i, (cb, was, saved) in enumerate(zip(callbacks, saved_settings, state["callbacks"])):
        now = _built_settings(trainer, cb)
        if was is None or now is None or saved["kind"] != "attributes":
            continue
        # only settings both versions have: an attribute a newer callback class added is
        # not in the saved state either
        diff = {
            k: (was[k], now[k]) for k in sorted(set(was) & set(now)) if not _same(was[k], now[k])
        }
        if not diff:
            continue
        name = names[i] if names.count(names[i]) == 1 else f"{names[i]}#{i}"
        changes[name] = diff
        st = saved["state"]
        run_state = sorted(k for k in diff if k in st and not _same(st[k], was[k]))
        keep[i] = set(diff) - set(run_state)
        if run_state:
            restored[name] = run_state
    return changes, keep, restored


# -- random states ---------------------------------------------------------------------------
def _rng_state(trainer: Trainer) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    np_state: Any = np.random.get_state(legacy=True)  # noqa: NPY002 - the global state
    name, keys, pos, has_gauss, np_gauss = np_state
    return {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "generator": trainer.generator.get_state(),
        "generator_device": trainer.generator.device.type,
        **_cuda_rng_state(trainer.device),
    }


def _cuda_rng_state(device: torch.device) -> dict[str, Any]:
    """The CUDA random state a trainer on ``device`` draws from (user dropout on the GPU):
    that one device's, under ``cuda`` (a list of one state) with its index as
    ``cuda_device``; nothing for a CPU trainer. Reading every device's state
    (``get_rng_state_all``) would create a CUDA context on each GPU of the machine — in
    every process of a multi-GPU run."""
    if device.type != "cuda":
        return {"cuda": [], "cuda_device": -1}
    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"cuda": [torch.cuda.get_rng_state(index)], "cuda_device": int(index)}


def _set_rng_state(trainer: Trainer, rng: dict[str, Any]) -> None:
    py = rng["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = rng["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(rng["torch"].cpu())
    # a CPU generator's state cannot seed a CUDA one and vice versa (other algorithms);
    # checkpoints from before the device was recorded hold a CPU state when their size says so
    saved_on = rng.get("generator_device") or (
        "cpu" if rng["generator"].numel() == torch.Generator().get_state().numel() else "cuda"
    )
    if saved_on == trainer.generator.device.type:
        trainer.generator.set_state(rng["generator"].cpu())
    else:
        seed = int(torch.randint(2**62, (1,)).item())  # from the restored global stream
        trainer.generator.manual_seed(seed)
        log.warning(
            "checkpoint's sampling generator was on %s, this trainer's is on %s: its state "
            "cannot move between them, so sampling continues from a fresh seed derived "
            "from the restored global random state (weights, optimizer and history are "
            "restored exactly; the batch order after this epoch differs from an "
            "uninterrupted %s run)",
            saved_on,
            trainer.generator.device.type,
            saved_on,
        )
    if "cuda_device" in rng:  # one device's state, restored onto this trainer's device
        if rng["cuda"] and trainer.device.type == "cuda":
            index = trainer.device.index
            torch.cuda.set_rng_state(
                rng["cuda"][0].cpu(), index if index is not None else torch.cuda.current_device()
            )
        elif trainer.config.user_dropout > 0:  # the only CUDA randomness a trainer uses
            log.warning(
                "checkpoint was written by a trainer on %s, this one is on %s: CUDA "
                "randomness (user dropout on the GPU) is not restored",
                "cuda" if rng["cuda"] else "cpu",
                trainer.device.type,
            )
    elif rng["cuda"] and torch.cuda.is_available():  # older checkpoints: every device's
        if len(rng["cuda"]) != torch.cuda.device_count():
            log.warning(
                "checkpoint has CUDA random states of %d devices, this machine has %d: "
                "CUDA randomness is not restored",
                len(rng["cuda"]),
                torch.cuda.device_count(),
            )
        else:
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


def _is_writer(trainer: Trainer) -> bool:
    """Whether this process writes ``trainer``'s checkpoints: always outside
    :mod:`torch.distributed`; under it, rank 0 of the trainer's process group
    (``trainer.group``; the world for a trainer without one), and no process outside it
    (``get_rank`` gives -1 there)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return True
    return dist.get_rank(getattr(trainer, "group", None)) == 0


def _umask() -> int:
    """The process's file mode creation mask, read from ``/proc`` where it is shown (setting
    the mask to read it back would change it for a moment for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- public API ------------------------------------------------------------------------------
def save_checkpoint(trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """Write the trainer's complete state to ``path`` atomically.

    The file is first written to a temporary file in the same directory, flushed to disk,
    then renamed over ``path``; an interrupted save leaves the previous checkpoint intact.
    Under :mod:`torch.distributed` only rank 0 of the trainer's process group writes (all
    its ranks hold the same state). After :meth:`~pyg_cf.train.Trainer.fit` has restored the
    best weights, the last epoch's weights (which it keeps aside) are saved as the model's,
    so that the file resumes the run, as the one ``fit()`` wrote after its last epoch does.

    Args:
        trainer: The trainer to save.
        path: The checkpoint file (its directory is created if needed).
    """
    path = os.fspath(path)
    if not _is_writer(trainer):
        trainer._checkpoint = os.path.abspath(path)  # the group's writer writes it
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    model = trainer.model
    # after fit() restored the best weights: the last epoch's, which a resume continues from
    last = getattr(trainer, "_last_state", None)
    ok, history = _plain(trainer.history)
    if not ok:  # keep each row's storable values, converted; name what is left out
        history, dropped = [], set()
        for row in trainer.history:
            kept = {}
            for k, v in row.items():
                ok_v, pv = _plain(v)
                if ok_v:
                    kept[k] = pv
                else:
                    dropped.add(str(k))
            history.append(kept)
        log.warning(
            "checkpoint %s: history column(s) %s hold values that cannot be stored safely "
            "(not numbers, strings, tensors or lists/dicts of them); left out",
            path,
            sorted(dropped),
        )
    state: dict[str, Any] = {
        "format": FORMAT,
        "torch_version": str(torch.__version__),
        "model": model.state_dict() if last is None else last["model"],
        "model_sizes": [
            int(getattr(model, "num_users", -1)),
            int(getattr(model, "num_items", -1)),
        ],
        "model_settings": _model_settings(model),
        "loss_type": type(trainer.loss).__name__,
        "loss_settings": getattr(trainer, "loss_settings", None),
        "optimizer": trainer.optimizer.state_dict(),
        "epoch": int(trainer.epoch),
        "history": history,
        "best_score": float(trainer.best_score),
        "best_state": trainer.best_state,
        "best_loss_state": getattr(trainer, "best_loss_state", None),
        "bad_evals": int(trainer.bad_evals),
        "unscheduled_eval": _unscheduled(trainer),
        "collisions": int(getattr(trainer, "collisions", 0)),
        "fingerprint": data_fingerprint(trainer.data),
        "config": json.dumps(trainer.config.to_dict(), default=repr, sort_keys=True),
        "rng": _rng_state(trainer),
        "loss": {
            "state_dict": trainer.loss.state_dict() if last is None else last["loss"],
            "attributes": _attributes(trainer.loss, private=False),
        },
        "callbacks": [
            {"type": type(cb).__name__, **_callback_state(cb)} for cb in trainer.callbacks
        ],
        # optional (older checkpoints lack it): the settings as built, compared on resume
        "callback_settings": [_built_settings(trainer, cb) for cb in trainer.callbacks],
    }
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".last-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    try:  # make the rename itself durable (POSIX); harmless where unsupported
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    trainer._checkpoint = os.path.abspath(path)
    log.debug("checkpoint of epoch %d written to %s", trainer.epoch, path)


# lines of torch's weights_only messages that say nothing about the file (among them the
# advice to load with weights_only=False: unsafe, and no help for a damaged file)
_TORCH_ADVICE = (
    "Weights only load failed",
    "weights_only",
    "Please file an issue",
    "Check the documentation",
    "WeightsUnpickler error:",
)


def _unreadable(path: str, e: Exception) -> PygCFError:
    """The error for a checkpoint ``torch.load(weights_only=True)`` failed on: a refusal of
    an object that is not plain data (a global: a class or function) is named as such;
    anything else is a damaged file (truncated, empty, not written by ``torch.save``)."""
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if isinstance(e, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        refused = [ln for ln in lines if re.search(r"\bglobal\b", ln, re.IGNORECASE)]
        if refused:
            why = refused[0].removeprefix("WeightsUnpickler error:").strip()
            why = why.split(". Please use", 1)[0]  # not the advice to allowlist it
            return PygCFError(
                f"checkpoint {path} could not be read safely (weights_only=True refuses "
                f"anything but tensors and plain containers): {why}"
            )
    detail = [ln for ln in lines if not any(a in ln for a in _TORCH_ADVICE)]
    if detail:
        why = f"{type(e).__name__}: {detail[0].split('. ', 1)[0]}"
    elif os.path.getsize(path) == 0:
        why = "the file is empty"
    else:
        why = type(e).__name__
    return PygCFError(
        f"checkpoint {path} is corrupt or truncated, or was not written by torch.save ({why})"
    )


def read_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with
    ``torch.load(weights_only=True)`` (no arbitrary unpickling) and check its format.

    Raises:
        PygCFError: if the file is missing, holds objects that cannot be read safely
            (classes or functions: named), is corrupt or truncated, or is not a pyg-cf
            checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PygCFError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # any failure is reported as ours
        raise _unreadable(path, e) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise PygCFError(f"{path} is not a pyg-cf checkpoint (format {fmt!r}, expected {FORMAT})")
    return state


def _check_fits(trainer: Trainer, state: dict[str, Any], path: str) -> None:
    fp = data_fingerprint(trainer.data)
    if state["fingerprint"] != fp:
        raise PygCFError(
            f"checkpoint {path} was written for other data (fingerprint "
            f"{state['fingerprint']}, this data {fp}); refusing to load it"
        )
    sizes = [
        int(getattr(trainer.model, "num_users", -1)),
        int(getattr(trainer.model, "num_items", -1)),
    ]
    if list(state["model_sizes"]) != sizes:
        raise PygCFError(
            f"checkpoint {path} holds a model for {state['model_sizes'][0]} users / "
            f"{state['model_sizes'][1]} items, this model has {sizes[0]} / {sizes[1]}"
        )


def _cpu_copy(obj: Any) -> Any:
    """A copy of a (nested) state dict with its tensors cloned to the CPU (no second copy
    of a model in GPU memory)."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def _load_error(e: Exception) -> str:
    """The lines of a ``load_state_dict`` error that say what did not fit (``size mismatch
    for ...``, missing or unexpected keys), not just torch's heading."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    detail = [ln for ln in lines[1:] if ln.startswith(("size mismatch", "Missing", "Unexpected"))]
    shown = detail[:3] + ([f"... ({len(detail) - 3} more)"] if len(detail) > 3 else [])
    return "; ".join(shown) if shown else (lines[0] if lines else type(e).__name__)


def load_weights(
    trainer: Trainer, path: str | os.PathLike[str], which: Literal["last", "best"] = "last"
) -> int:
    """Warm start: copy only the model weights of the checkpoint at ``path`` into
    ``trainer.model``; the optimizer, loss, callbacks, history and epoch counter stay as
    built, so training starts at epoch 1 with the trainer's own settings (e.g. another
    loss, more negatives or a lower learning rate after a first run).

    Args:
        trainer: The trainer whose model gets the weights.
        path: The checkpoint file.
        which: ``'last'`` (default): the weights of the epoch the checkpoint was written
            after (after an early stop, ``patience`` evaluations past the best one);
            ``'best'``: the selected weights stored in the same file, those of the best
            validation evaluation so far (what :meth:`~pyg_cf.train.Trainer.fit` restores
            at its end). Only the model's weights are copied, not the loss's.

    Returns:
        The epoch the loaded weights are from: the checkpoint's last epoch, or for
        ``'best'`` the selected epoch (the last history row marked ``best``).

    Raises:
        PygCFError: as :func:`load_checkpoint` for unreadable files, other data or other
            model sizes; for ``'best'``, if the checkpoint holds no best weights (a run
            without a validation split selects none).
    """
    if which not in ("last", "best"):
        raise ConfigError(f"which must be 'last' or 'best', got {which!r}")
    path = os.fspath(path)
    state = read_checkpoint(path, map_location=trainer.device)
    _check_fits(trainer, state, path)
    weights, epoch = state["model"], int(state["epoch"])
    if which == "best":
        weights = state.get("best_state")
        if weights is None:
            raise PygCFError(
                f"checkpoint {path} holds no best weights (its run selected none: the data "
                "had no validation split); load its last weights with which='last'"
            )
        marked = [r.get("epoch") for r in state["history"] if r.get("best") is True]
        epoch = int(marked[-1]) if marked and marked[-1] is not None else epoch
    try:
        trainer.model.load_state_dict(weights)
    except (RuntimeError, ValueError, KeyError) as e:
        raise PygCFError(f"checkpoint {path} does not fit this model: {_load_error(e)}") from None
    # the model holds other weights now: a later fit() must not put back the last epoch's
    trainer._last_state = None
    return epoch


def load_checkpoint(trainer: Trainer, path: str | os.PathLike[str], strict: bool = False) -> int:
    """Restore ``trainer`` from ``path`` so that :meth:`Trainer.fit` continues the run.

    Build the trainer exactly as for the original run (same model, loss, callbacks and
    settings; ``epochs`` may be larger), call this, then ``fit()``.

    Args:
        trainer: A freshly built trainer for the same data.
        path: The checkpoint file.
        strict: Refuse a trainer whose :class:`TrainConfig` differs from the saved one in
            a setting that changes the run (anything but ``epochs``, ``min_epochs``,
            ``patience``, ``time_budget_s``, ``checkpoint_dir``, ``progress``, ``device``,
            ``extra``, ``retain_cpu_memory`` and ``cuda_graphs``), or whose callbacks
            (those without a ``state_dict``) were built with other settings (e.g. another
            ``warmup_epochs``). By default such a change is logged as a warning naming it
            and the run goes on with the new settings (e.g. a later ``eval_every``), which
            will then not equal an uninterrupted run; a callback's run state (attributes
            that changed during the saved run) is restored either way.

    Returns:
        The epoch the checkpoint was written after.

    Raises:
        PygCFError: if the file is missing, not a pyg-cf checkpoint, unsafe to load,
            written for other data (fingerprint mismatch), for a model of other sizes or
            settings (class, layers, exponents) or with a loss of another class or other
            settings (as built, e.g. another ``tau`` or number of negatives), or, with
            ``strict``, with other training or callback settings. Nothing in ``trainer``
            is changed then.
    """
    path = os.fspath(path)
    state = read_checkpoint(path, map_location=trainer.device)
    _check_fits(trainer, state, path)
    saved_cfg = json.loads(state["config"])
    now = json.loads(json.dumps(trainer.config.to_dict(), default=repr, sort_keys=True))
    changed = {
        k: (saved_cfg[k], now.get(k))
        for k in sorted(saved_cfg)
        if k not in _FREE_SETTINGS and saved_cfg[k] != now.get(k)
    }
    if changed and strict:
        raise PygCFError(
            f"checkpoint {path} was written with other training settings (saved vs this: "
            f"{changed}); resume with the same settings, or pass strict=False to go on with "
            "the new ones"
        )
    # older checkpoints lack these entries: nothing to compare then
    saved_model, model = state.get("model_settings"), _model_settings(trainer.model)
    if saved_model is not None and saved_model != model:
        diff = {k: (saved_model.get(k), v) for k, v in model.items() if saved_model.get(k) != v}
        raise PygCFError(
            f"checkpoint {path} was written for another model (saved vs this: {diff}); "
            "resume with the same model, or warm start with load_weights"
        )
    saved_loss, loss = state.get("loss_type"), type(trainer.loss).__name__
    if saved_loss is not None and saved_loss != loss:
        raise PygCFError(
            f"checkpoint {path} was written with loss {saved_loss}, this trainer has {loss}; "
            "resume with the same loss, or warm start with load_weights"
        )
    # the loss as built (the loader and negative sampler were made from it); the saved
    # attributes restored below would silently replace other settings
    saved_settings, settings = state.get("loss_settings"), getattr(trainer, "loss_settings", None)
    if saved_settings is not None and settings is not None and not _same(saved_settings, settings):
        keys = sorted(set(saved_settings) | set(settings))
        diff = {
            k: (saved_settings.get(k), settings.get(k))
            for k in keys
            if not _same(saved_settings.get(k), settings.get(k))
        }
        raise PygCFError(
            f"checkpoint {path} was written with other loss settings (saved vs this: {diff}); "
            "resume with the same loss, or warm start with load_weights"
        )
    saved_cbs = state["callbacks"]
    names = [type(cb).__name__ for cb in trainer.callbacks]
    if [c["type"] for c in saved_cbs] != names:
        raise PygCFError(
            f"checkpoint {path} was written with callbacks {[c['type'] for c in saved_cbs]}, "
            f"this trainer has {names}"
        )
    cb_changes, cb_keep, cb_restored = _callback_changes(trainer, state)
    if cb_changes and strict:
        raise PygCFError(
            f"checkpoint {path} was written with other callback settings (saved vs this: "
            f"{cb_changes}); resume with the same callbacks, or pass strict=False to go on "
            "with this trainer's settings"
        )
    # the last check (whether the weights fit) loads them: undo it if it fails half-way
    model_before = _cpu_copy(trainer.model.state_dict())
    opt_before = _cpu_copy(trainer.optimizer.state_dict())
    try:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        trainer.model.load_state_dict(model_before)
        trainer.optimizer.load_state_dict(opt_before)
        raise PygCFError(
            f"checkpoint {path} does not fit this model/optimizer (was it built with other "
            f"settings?): {_load_error(e)}"
        ) from None
    del model_before, opt_before
    if changed:
        log.warning(
            "resuming %s with changed settings %s: the run will not equal an uninterrupted one",
            path,
            changed,
        )
    if cb_changes:
        log.warning(
            "resuming %s with changed callback settings (saved vs this: %s): this trainer's "
            "settings are kept%s; the run will not equal an uninterrupted one",
            path,
            cb_changes,
            f" (run state restored from the checkpoint: {cb_restored})" if cb_restored else "",
        )
    trainer.epoch = int(state["epoch"])
    trainer.history = [dict(r) for r in state["history"]]
    trainer.best_score = (
        float(state["best_score"]) if state["best_score"] is not None else -math.inf
    )
    trainer.best_state = state["best_state"]
    # checkpoints before 2026-12-05 kept only the model's best state: the loss then keeps
    # its last values after fit(), as it did when they were written
    trainer.best_loss_state = state.get("best_loss_state")
    trainer.bad_evals = int(state["bad_evals"])
    # checkpoints before 2026-12-07 did not record it: such a resume keeps the last epoch's
    # off-schedule evaluation (if any) in its early-stopping state, as they always did
    undo = state.get("unscheduled_eval")
    if undo is not None:
        undo = dict(undo)
        undo["best_score"] = float(undo["best_score"])
        undo["bad_evals"] = int(undo["bad_evals"])
        undo["keys"] = list(undo["keys"])
    trainer.unscheduled_eval = undo
    trainer.collisions = int(state.get("collisions", 0))
    loss_state = state["loss"]
    trainer.loss.load_state_dict(loss_state["state_dict"])
    for k, v in loss_state["attributes"].items():
        setattr(trainer.loss, k, v)
    for cb, saved, keep in zip(trainer.callbacks, saved_cbs, cb_keep):
        _set_callback_state(cb, saved, keep)
    _set_rng_state(trainer, state["rng"])
    # the model holds the checkpoint's last weights: nothing for a later fit() to put back
    trainer._last_state = None
    trainer._checkpoint = os.path.abspath(path)
    log.info("resumed from %s after epoch %d", path, trainer.epoch)
    return trainer.epoch
