r"""Training steps replayed as CUDA graphs.

A full-graph step of a small model is launch-bound on a GPU: LightGCN on Gowalla runs a few
hundred small kernels per step (propagation, gathers, loss, backward, Adam), and on an H200
the eager step (3.4 ms) is mostly the CPU issuing them (``benchmarks/results/
bench_train_step_gpu.md``). :class:`GraphedStep` records the step once as a CUDA graph —
forward propagation, loss, L2 penalty, backward pass and optimizer step — and replays it for
every batch of the same shape, with the batch's ids copied into the graph's static input
tensors first. The work is the same kernels on the same numbers; only the launching changes.

Rules the step follows (those of :func:`torch.cuda.graph`):

* What the graph captures is re-run as recorded: Python state read in the forward pass (the
  loss's temperature, the learning rate) is frozen at capture. The trainer therefore
  captures anew at the start of every epoch, after the epoch's callbacks and learning-rate
  schedule have run; state that changes *within* an epoch must live in tensors.
* Batches of another shape (the short last batch of an ``'edge'`` epoch) and batches with
  fields the graph was not recorded with run eagerly.
* The first capture follows a few eager warm-up steps on a side stream (lazy library
  initialisation must not happen during capture); those are ordinary training steps.
* If capture fails (an operation that synchronises with the host, say), the step falls back
  to eager execution for the rest of the run, with a warning: never a wrong result.

The sampler draws the batch (users, positives, negatives with rejection of positives) outside
the graph: rejection sampling loops on the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from pyg_cf.loader.interaction_loader import CFBatch
    from pyg_cf.losses.base import LossBatch

__all__ = ["GraphedStep", "graph_inputs"]

log = logging.getLogger(__name__)

# the CFBatch fields a captured step reads (the others are host-side bookkeeping or belong
# to sampled mode, which a graph cannot replay: its subgraphs change shape every batch)
_INPUTS = ("users", "pos_items", "neg_items", "neg_log_prob", "in_batch_collision")


def graph_inputs(cb: CFBatch) -> dict[str, Tensor | None] | None:
    """The tensors of ``cb`` that a captured step reads, or ``None`` when ``cb`` cannot be
    replayed (a sampled-mode batch with its subgraph)."""
    if cb.subgraph is not None:
        return None
    return {name: getattr(cb, name) for name in _INPUTS}


def _signature(inputs: dict[str, Tensor | None]) -> tuple[Any, ...]:
    return tuple(
        None if t is None else (tuple(t.shape), t.dtype, t.device) for t in inputs.values()
    )


class GraphedStep:
    r"""One training step captured as a CUDA graph and replayed per batch.

    Args:
        step: ``step(cb) -> (batch, loss, l2)``: the forward pass, loss, backward pass and
            optimizer step of one :class:`~pyg_cf.loader.CFBatch` (gradients must be
            written, not accumulated: the caller zeroes them with ``set_to_none=True``
            before the step and the step's backward allocates them, inside the graph).
        zero_grad: Sets the gradients to ``None`` (called before capture).
        warmup: Eager steps on a side stream before the first capture.
        device: The CUDA device the step runs on (the trainer's). Warm-up, capture and
            replay run with it as the current device and on streams of it, whatever the
            current device is (``None``: the current device).
    """

    def __init__(
        self,
        step: Callable[[CFBatch], tuple[LossBatch, Tensor, Tensor]],
        zero_grad: Callable[[], None],
        warmup: int = 3,
        device: torch.device | str | int | None = None,
    ) -> None:
        self.step = step
        self.device = None if device is None else torch.device(device)
        self.zero_grad = zero_grad
        self.warmup_left = int(warmup)
        self.failed = False
        self.replays = 0
        self.captures = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._signature: tuple[Any, ...] | None = None
        self._static: dict[str, Tensor | None] = {}
        self._out: tuple[LossBatch, Tensor, Tensor] | None = None
        # the capture stream, of self.device (torch.cuda.graph's default one is shared by
        # all graphs and belongs to the device that was current when it was first made)
        self._stream: torch.cuda.Stream | None = None

    def _on_device(self) -> contextlib.AbstractContextManager[Any]:
        """``self.device`` as the current CUDA device: streams, capture and replay are per
        device, and the step's tensors live on this one."""
        if self.device is None:
            return contextlib.nullcontext()
        return torch.cuda.device(self.device)

    def reset(self) -> None:
        """Drop the recorded graph: the next batch is recorded anew (the trainer resets at
        every epoch start, after Python state that the step reads may have changed)."""
        self._graph, self._signature, self._out, self._static = None, None, None, {}

    def __call__(self, cb: CFBatch) -> tuple[LossBatch, Tensor, Tensor] | None:
        """Run the step on ``cb`` as a graph replay and return ``(batch, loss, l2)`` — the
        graph's static outputs, overwritten by the next replay. The first batch after
        :meth:`reset` is recorded; later batches replay it if they have its shapes. During
        warm-up the step runs eagerly here and its outputs are returned. ``None``: ``cb``
        must run eagerly (the caller runs it): another shape than the recording's, a
        sampled-mode batch, or capture has failed."""
        if self.failed:
            return None
        inputs = graph_inputs(cb)
        if inputs is None:
            return None
        with self._on_device():
            if self.warmup_left > 0:
                self.warmup_left -= 1
                side = torch.cuda.Stream(device=self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    self.zero_grad()
                    out = self.step(cb)
                torch.cuda.current_stream(self.device).wait_stream(side)
                return out
            sig = _signature(inputs)
            if self._graph is None:
                if not self._capture(cb, inputs, sig):
                    return None
            elif sig != self._signature:  # another shape (a short last batch): eagerly
                return None
            for name, t in inputs.items():
                static = self._static[name]
                if t is not None and static is not None:
                    static.copy_(t)
            assert self._graph is not None and self._out is not None
            self._graph.replay()
            self.replays += 1
            return self._out

    def _capture(self, cb: CFBatch, inputs: dict[str, Tensor | None], sig: Any) -> bool:
        self.reset()
        static = {k: None if t is None else t.clone() for k, t in inputs.items()}
        static_cb = dataclasses.replace(cb, **static)  # type: ignore[arg-type]
        graph = torch.cuda.CUDAGraph()
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=self.device)
        self.zero_grad()
        try:
            with torch.cuda.graph(graph, stream=self._stream):
                out = self.step(static_cb)
        except Exception as e:  # any capture failure means: run eagerly
            self.failed = True
            self.zero_grad()
            log.warning(
                "CUDA graph capture of the training step failed (%s: %s); training "
                "continues eagerly",
                type(e).__name__,
                e,
            )
            return False
        self._graph, self._signature, self._static, self._out = graph, sig, static, out
        self.captures += 1
        return True
