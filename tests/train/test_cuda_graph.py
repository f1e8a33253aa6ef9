"""GraphedStep's control flow on the CPU, with torch.cuda's graph API replaced by fakes.

A real CUDA graph runs nothing at capture and re-runs the recorded kernels on replay; the
fakes mimic that with a recorded Python call (capture runs the step once to build its
outputs, then restores the counter, as recording executes no kernel). The equivalence of
graph replays and eager steps on a GPU is checked in tests/test_cuda.py.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pyg_cf.errors import ConfigError
from pyg_cf.loader.interaction_loader import CFBatch
from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer, seed_everything
from pyg_cf.train import cuda_graph as cg
from tests.loader.conftest import random_data


@dataclass
class Recorder:
    """A training step that counts its real executions and records what it read."""

    fail_capture: bool = False
    runs: int = 0
    capturing: bool = False
    seen: list[list[int]] | None = None

    def __call__(self, cb: CFBatch) -> tuple[Any, torch.Tensor]:
        if self.capturing and self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        if not self.capturing:
            self.runs += 1
            self.seen = (self.seen or []) + [cb.users.tolist()]
        return cb, cb.users.float().sum()


class FakeGraph:
    def __init__(self) -> None:
        self.fn: Any = None

    def replay(self) -> None:
        self.fn()


@pytest.fixture
def fake_cuda(monkeypatch):  # type: ignore[no-untyped-def]
    state: dict[str, Any] = {}

    # what ran on which CUDA device: ("enter"/"exit", device) of torch.cuda.device, the
    # devices streams were made for, the stream each capture used
    state["devices"], state["streams"], state["captured_on"] = [], [], []

    @contextlib.contextmanager
    def device(d: Any):  # type: ignore[no-untyped-def]
        state["devices"].append(("enter", d))
        try:
            yield
        finally:
            state["devices"].append(("exit", d))

    @contextlib.contextmanager
    def graph(g: FakeGraph, stream: Any = None):  # type: ignore[no-untyped-def]
        state["captured_on"].append(stream)
        rec: Recorder = state["rec"]
        rec.capturing = True
        try:
            yield
        finally:
            rec.capturing = False
        static_cb = state["last_static"]
        out = state["out"]

        def replay() -> None:  # re-run on the static inputs, writing the static output
            _, loss = rec(static_cb)
            out[1].copy_(loss)

        g.fn = replay

    class Stream:
        def __init__(self, device: Any = None) -> None:
            self.device = device
            state["streams"].append(device)

        def wait_stream(self, other: Any) -> None:
            assert other.device == self.device, "streams of two devices"

    def current_stream(device: Any = None) -> Stream:
        s = object.__new__(Stream)
        s.device = device
        return s

    monkeypatch.setattr(cg.torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(cg.torch.cuda, "graph", graph)
    monkeypatch.setattr(cg.torch.cuda, "Stream", Stream)
    monkeypatch.setattr(cg.torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(cg.torch.cuda, "current_stream", current_stream)
    monkeypatch.setattr(cg.torch.cuda, "device", device)
    return state


def _runner(
    state: dict[str, Any], rec: Recorder, warmup: int = 2, device: Any = None
) -> cg.GraphedStep:
    state["rec"] = rec
    zeroed: list[int] = []

    def step(cb: CFBatch) -> tuple[Any, torch.Tensor]:
        if device is not None:  # the step runs with the trainer's device current
            assert state["devices"] and state["devices"][-1] == ("enter", torch.device(device))
        out = rec(cb)
        if rec.capturing:  # what the graph's outputs will be
            state["last_static"] = cb
            state["out"] = (out[0], out[1].clone())
            return state["out"]
        return out

    runner = cg.GraphedStep(step, lambda: zeroed.append(1), warmup=warmup, device=device)
    runner.zeroed = zeroed  # type: ignore[attr-defined]
    return runner


def _cb(users: list[int], neg: bool = True) -> CFBatch:
    u = torch.tensor(users)
    return CFBatch(
        edge_ids=torch.arange(len(users)),
        users=u,
        pos_items=u + 100,
        neg_items=(u + 200).view(-1, 1) if neg else None,
    )


def test_warmup_then_capture_then_replay_with_fresh_inputs(fake_cuda):
    rec = Recorder()
    run = _runner(fake_cuda, rec, warmup=2)
    run(_cb([1, 2]))
    run(_cb([3, 4]))
    assert rec.runs == 2 and run.captures == 0  # warm-up steps are ordinary steps
    _, loss = run(_cb([5, 6]))  # captures (runs nothing), then replays once
    assert run.captures == 1 and run.replays == 1 and rec.runs == 3
    assert rec.seen[-1] == [5, 6] and float(loss) == 11
    _, loss = run(_cb([7, 9]))  # the new ids reach the graph through its static inputs
    assert run.captures == 1 and run.replays == 2
    assert rec.seen[-1] == [7, 9] and float(loss) == 16
    assert len(run.zeroed) == 3  # before each warm-up step and before the capture


def test_warmup_capture_and_replay_run_on_the_given_device(fake_cuda):
    """TrainConfig(device='cuda:1') while device 0 is current: the side stream, the capture
    stream and the replay must belong to device 1 (streams and graph capture are per
    device; a capture on device 0's stream records none of device 1's kernels)."""
    rec = Recorder()
    run = _runner(fake_cuda, rec, warmup=1, device="cuda:1")
    cuda1 = torch.device("cuda", 1)
    run(_cb([1, 2]))  # warm-up, on a side stream of device 1
    assert fake_cuda["streams"] == [cuda1]
    assert fake_cuda["devices"] == [("enter", cuda1), ("exit", cuda1)]
    run(_cb([3, 4]))  # capture on a stream of device 1, then replay
    run(_cb([5, 6]))  # replay, on device 1 again
    assert run.captures == 1 and run.replays == 2
    assert fake_cuda["streams"] == [cuda1, cuda1]
    capture_stream = fake_cuda["captured_on"][0]
    assert capture_stream is not None and capture_stream.device == cuda1
    assert fake_cuda["devices"] == [("enter", cuda1), ("exit", cuda1)] * 3
    run.reset()
    run(_cb([7, 8]))  # a new capture reuses the device's capture stream
    assert fake_cuda["captured_on"] == [capture_stream, capture_stream]


def test_the_trainer_passes_its_device_to_the_graphed_step(monkeypatch):
    data = random_data(seed=5, num_edges=300)
    model = GraphCF.from_data(data, "mf", embedding_dim=4)
    tr = Trainer(model, data, get_loss("bpr"), TrainConfig(epochs=1, progress=False))
    # a CUDA trainer cannot be built here: the runner's construction is what is checked
    monkeypatch.setattr(tr.config, "cuda_graphs", True)
    monkeypatch.setattr(tr, "device", torch.device("cuda", 1))
    runner = tr._graphed_step()
    assert runner is not None and runner.device == torch.device("cuda", 1)


def test_other_shapes_run_eagerly_until_reset_records_anew(fake_cuda):
    rec = Recorder()
    run = _runner(fake_cuda, rec, warmup=0)
    run(_cb([1, 2]))
    assert run(_cb([1, 2, 3])) is None  # another batch size (a short last batch)
    assert run(_cb([4, 5], neg=False)) is None  # no negatives: another field set
    assert run.captures == 1 and run.replays == 1
    run(_cb([8, 8]))
    assert run.replays == 2 and rec.seen[-1] == [8, 8]
    run.reset()
    run(_cb([4, 5, 6], neg=False))
    assert run.captures == 2 and run.replays == 3 and rec.seen[-1] == [4, 5, 6]
    assert run(_cb([1, 2])) is None


def test_sampled_mode_batches_are_left_to_the_caller(fake_cuda):
    run = _runner(fake_cuda, Recorder(), warmup=0)
    cb = _cb([1, 2])
    cb.subgraph = object()  # type: ignore[assignment]
    assert run(cb) is None and run.captures == 0


def test_a_failed_capture_falls_back_to_eager_for_good(fake_cuda, caplog):
    rec = Recorder(fail_capture=True)
    run = _runner(fake_cuda, rec, warmup=0)
    with caplog.at_level(logging.WARNING, logger="pyg_cf.train.cuda_graph"):
        assert run(_cb([1, 2])) is None
    assert run.failed and rec.runs == 0
    assert "capture of the training step failed" in caplog.text
    assert "operation not permitted" in caplog.text
    assert run(_cb([1, 2])) is None  # never tried again
    assert len(run.zeroed) == 2  # gradients cleared again after the failed capture


def test_config_accepts_cuda_graphs_only_for_full_graph_cuda_training():
    with pytest.raises(ConfigError, match="cuda_graphs=True needs a CUDA device"):
        TrainConfig(cuda_graphs=True)
    with pytest.raises(ConfigError, match="mode='sampled'"):
        TrainConfig(cuda_graphs=True, device="cuda", mode="sampled")
    assert TrainConfig(cuda_graphs=True, device="cuda").cuda_graphs


# ops that read device data on the host (or return data-dependent shapes): one of them in
# the step makes CUDA-graph capture fail
HOST_SYNC_OPS = {
    "_local_scalar_dense", "nonzero", "unique", "_unique2", "unique_consecutive",
    "masked_select", "repeat_interleave", "bincount", "is_nonzero", "equal",
    "Tensor.tolist", "Tensor.numpy", "Tensor.cpu",
}  # fmt: skip


class _OpRecorder(TorchDispatchMode):
    """Records every aten op, and the host reads that dispatch none on a CPU tensor
    (``tolist``, ``numpy``, ``cpu``, which copy to the host from a GPU)."""

    HOST_READS = ("tolist", "numpy", "cpu")

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self._saved: dict[str, Any] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))

    def __enter__(self):  # type: ignore[no-untyped-def]
        for name in self.HOST_READS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def read(t, *a, _name=name, _original=original, **kw):  # type: ignore[no-untyped-def]
                self.ops.append(f"Tensor.{_name}")
                return _original(t, *a, **kw)

            setattr(torch.Tensor, name, read)
        return super().__enter__()

    def __exit__(self, *exc):  # type: ignore[no-untyped-def]
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)


def _step_ops(model_name: str, loss: str, kwargs: dict[str, Any], sampling: str) -> list[str]:
    data = random_data(seed=5, num_edges=1500)
    seed_everything(0)
    model = GraphCF.from_data(data, model_name, embedding_dim=16)
    cfg = TrainConfig(
        epochs=1, batch_size=128, sampling=sampling, l2_reg=1e-4, user_dropout=0.1,
        progress=False,
    )  # fmt: skip
    tr = Trainer(model, data, get_loss(loss, **kwargs), cfg)
    idx = next(iter(tr.batches()))
    tr._graph_step(tr.collate(idx))  # builds the cached adjacency, Adam's state
    cb = tr.collate(idx)
    with _OpRecorder() as rec:
        tr._graph_step(cb)
    return rec.ops


@pytest.mark.parametrize(
    ("model_name", "loss", "kwargs", "sampling"),
    [
        ("lightgcn", "bpr", {"reject_positives": True}, "user"),  # the reproduction cells'
        ("lightgcn", "bce", {"num_negatives": 4, "reject_positives": True}, "user"),
        ("lightgcn", "bce", {"num_negatives": 4, "learn_bias": True}, "user"),
        ("lightgcn", "ssm", {"similarity": "cos"}, "edge"),
        ("lightgcn", "ccl", {"num_negatives": 32, "shared_negatives": 4}, "edge"),
        ("lightgcn", "mml", {"num_negatives": 32, "shared_negatives": 4}, "edge"),
        ("svdpp-user", "ssm", {}, "edge"),
    ],
)
def test_the_recorded_step_never_syncs_with_the_host(model_name, loss, kwargs, sampling):
    """What a CUDA graph records (forward, loss, L2, backward, Adam) has no op that waits
    for device data on the host; checked op by op on the CPU, so CI guards capturability."""
    ops = _step_ops(model_name, loss, kwargs, sampling)
    assert len(ops) > 50 and "_fused_adam_" in ops  # the whole step was seen
    assert not HOST_SYNC_OPS.intersection(ops)


def test_the_sync_check_sees_host_reads_that_dispatch_no_op():
    t = torch.arange(3)
    with _OpRecorder() as rec:
        t.tolist()
        t.cpu()
    assert rec.ops == ["Tensor.tolist", "Tensor.cpu"]
    assert torch.Tensor.tolist is _TOLIST  # restored


_TOLIST = torch.Tensor.tolist


def test_the_sync_check_sees_the_full_softmax_user_grouping():
    """The full softmax groups a batch's rows by user (data-dependent shapes): not
    capturable, and the check says so (it falls back to eager steps on a GPU)."""
    assert HOST_SYNC_OPS.intersection(_step_ops("lightgcn", "softmax", {}, "user_blocks"))
