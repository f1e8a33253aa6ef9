"""Full-graph steps embed only the batch's rows (Trainer.rows_only): the same training."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pyg_cf.losses import get_loss
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer, seed_everything
from tests.train.test_trainer import synthetic

LOSSES: dict[str, dict[str, Any]] = {
    "bpr": {},
    "ssm": {"tau": 0.2},  # in-batch negatives, cosine
    "ssm-sampled": {"tau": 0.2, "negatives": "sampled", "num_negatives": 3},
    "ssm-shared": {"tau": 0.2, "negatives": "sampled", "num_negatives": 4, "shared_negatives": 2},
    "ssm-ip": {"tau": 0.5, "similarity": "ip", "negatives": "sampled", "num_negatives": 2},
    "bce": {"num_negatives": 2},
    "ccl": {"num_negatives": 3},
}


def train(
    loss_key: str, rows_only: bool, kind: str = "lightgcn", **cfg: Any
) -> tuple[Trainer, int]:
    data = synthetic(n_users=60, n_items=200)
    seed_everything(0)
    layers = {"num_layers": 2} if kind == "lightgcn" else {"alpha0": 1.0, "alpha1": 0.0}
    m = GraphCF.from_data(data, kind, embedding_dim=8, **layers).double()
    name = loss_key.split("-")[0]
    settings = dict(epochs=2, batch_size=32, l2_reg=1e-3, seed=1, progress=False, eval_every=0)
    tr = Trainer(m, data, get_loss(name, **LOSSES[loss_key]), TrainConfig(**{**settings, **cfg}))
    tr.rows_only = rows_only
    calls = 0
    embed_rows = m.embed_rows

    def counted(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        return embed_rows(*args, **kw)

    m.embed_rows = counted  # type: ignore[method-assign]
    for _ in range(2):
        tr.train_epoch()
    return tr, calls


@pytest.mark.parametrize("share", [1.0, 0.0])  # the last hop sliced; whole products
@pytest.mark.parametrize("loss_key", sorted(LOSSES))
def test_rows_only_trains_as_the_full_forward(loss_key, share, monkeypatch):
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", share)
    fast, calls = train(loss_key, True)
    ref, ref_calls = train(loss_key, False)
    assert calls > 0 and ref_calls == 0
    for a, b in zip(fast.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", ["svdpp-user", "svdpp-item"])
@pytest.mark.parametrize("loss_key", ["bpr", "ssm-shared"])
def test_one_sided_rows_only_trains_as_the_full_forward(kind, loss_key, monkeypatch):
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", 1.0)  # slice every batch
    fast, calls = train(loss_key, True, kind)
    ref, ref_calls = train(loss_key, False, kind)
    assert calls > 0 and ref_calls == 0
    for a, b in zip(fast.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_steps_that_need_more_than_the_rows_take_the_forward():
    _, calls = train("bpr", True, l2_layers="all")  # the penalty needs every hop
    assert calls == 0


SAMPLED = {"mode": "sampled", "num_neighbors": (3, 3)}


@pytest.mark.parametrize("share", [1.0, 0.0])  # the last hop sliced; whole products
@pytest.mark.parametrize("loss_key", sorted(LOSSES))
def test_sampled_rows_only_trains_as_the_subgraph_forward(loss_key, share, monkeypatch):
    """A neighbor-sampled step forms the layer sums at the batch's rows of its subgraph."""
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", share)
    fused = []
    real = GraphCF._subgraph_adjacency

    def spy(self: GraphCF, *a: Any, **k: Any) -> Any:
        out = real(self, *a, **k)
        fused.append(out is not None)
        return out

    monkeypatch.setattr(GraphCF, "_subgraph_adjacency", spy)
    fast, calls = train(loss_key, True, **SAMPLED)
    assert calls > 0 and len(fused) == calls and all(fused)
    ref, ref_calls = train(loss_key, False, **SAMPLED)
    assert ref_calls == 0 and len(fused) == calls
    for a, b in zip(fast.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("loss_key", ["bpr", "ssm-shared"])
def test_sampled_rows_only_with_sparse_gradients_trains_as_the_subgraph_forward(loss_key):
    """Both paths hand LazyAdam the same sparse gradients (the subgraph's lookup plus the
    L2 penalty's lookups); LazyAdam's own update is checked in tests/train/test_optim.py."""
    fast, calls = train(loss_key, True, sparse_grad=True, **SAMPLED)
    ref, _ = train(loss_key, False, sparse_grad=True, **SAMPLED)
    assert calls > 0 and type(fast.optimizer).__name__ == "LazyAdam"
    for a, b in zip(fast.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", ["svdpp-user", "svdpp-item"])
def test_sampled_one_sided_rows_only_trains_as_the_subgraph_forward(kind, monkeypatch):
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", 1.0)
    fast, calls = train("ssm-shared", True, kind, **SAMPLED)
    ref, _ = train("ssm-shared", False, kind, **SAMPLED)
    assert calls > 0
    for a, b in zip(fast.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_a_model_whose_embed_rows_takes_no_subgraph_samples_through_forward():
    class Rows(GraphCF):
        def embed_rows(  # type: ignore[override]
            self, users: torch.Tensor, items: torch.Tensor, check: bool = True
        ) -> tuple[torch.Tensor, torch.Tensor]:
            raise AssertionError("a sampled step must not call it without the subgraph")

    data = synthetic(n_users=60, n_items=200)
    m = Rows.lightgcn(data["user"].num_nodes, data["item"].num_nodes, 8, num_layers=2)
    cfg = TrainConfig(batch_size=32, progress=False, **SAMPLED)  # type: ignore[arg-type]
    tr = Trainer(m, data, get_loss("bpr"), cfg)
    assert tr.rows_only
    batch, _ = tr.make_batch(next(iter(tr.batches())))
    assert batch.user_emb.shape == (32, 8)


def test_the_full_softmax_and_wide_negative_sets_take_the_forward():
    _, calls = train("bpr", True)
    assert calls > 0
    # every item scored: the full table is needed
    data = synthetic(n_users=60, n_items=200)
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=2)
    tr = Trainer(m, data, get_loss("softmax"), TrainConfig(batch_size=32, progress=False))
    batch, _ = tr.make_batch(next(iter(tr.batches())))
    assert batch.all_item_emb is not None and batch.all_item_emb.size(0) == m.num_items
    # more negative rows than items: gathering them costs more than the table's sums
    loss = get_loss("ssm", negatives="sampled", num_negatives=10)
    tr = Trainer(m, data, loss, TrainConfig(batch_size=32, progress=False))
    assert tr.rows_only
    seen = []
    tr.model.embed_rows = lambda *a, **k: seen.append(1)  # type: ignore[method-assign]
    batch, _ = tr.make_batch(next(iter(tr.batches())))
    assert not seen and batch.neg_emb is not None and batch.neg_emb.shape[:2] == (32, 10)


def test_a_model_without_embed_rows_trains_through_forward():
    class Plain(torch.nn.Module):
        def __init__(self, inner: GraphCF) -> None:
            super().__init__()
            self.inner = inner
            self.num_users, self.num_items = inner.num_users, inner.num_items

        def set_graph(self, ei: torch.Tensor) -> None:
            self.inner.set_graph(ei)

        def layer0(self, u: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.inner.layer0(u, i)

        def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
            return self.inner()

    data = synthetic(n_users=60, n_items=200)
    m = Plain(GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=2))
    tr = Trainer(m, data, get_loss("bpr"), TrainConfig(batch_size=32, progress=False))  # type: ignore[arg-type]
    assert not tr.rows_only
    batch, _ = tr.make_batch(next(iter(tr.batches())))
    assert batch.user_emb.shape == (32, 8)


@pytest.mark.parametrize("slice_last_hop", [False, True])
@pytest.mark.parametrize("loss_key", ["bpr", "ssm-shared"])
def test_a_rows_only_step_syncs_once(loss_key, slice_last_hop, monkeypatch):
    """The loss read, as on the reference path: the row ids are not checked again. Slicing
    the last hop (the CPU's default, not a GPU's) adds one read of each slice's size."""
    from tests.host_syncs import HostSyncs

    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", 1.0)
    tr, _ = train(loss_key, True)
    tr.model.slice_rows = slice_last_hop
    it = iter(tr.batches())
    with HostSyncs() as s:
        tr.train_step(next(it))
    assert s.syncs == ["_local_scalar_dense"] * (3 if slice_last_hop else 1)
