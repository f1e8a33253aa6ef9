"""The trainer's batching modes (``TrainConfig.mode``): same model, same loss."""

import pytest
import torch

from pyg_cf.data.graph import REV_EDGE, USER_ITEM
from pyg_cf.errors import ConfigError
from pyg_cf.losses import get_loss
from pyg_cf.losses.base import CFLoss
from pyg_cf.metrics import popularity_baseline
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer, seed_everything
from pyg_cf.train.optim import LazyAdam
from tests.loader.conftest import random_data


@pytest.mark.parametrize(
    "loss,kind,alpha0", [("bpr", "lightgcn", None), ("ssm", "lightgcn", None),
                         ("bpr", "svdpp-user", None), ("ssm", "svdpp-item", None),
                         ("bpr", "svdpp-user", 1.0), ("ssm", "svdpp-item", 0.0)],
)  # fmt: skip
def test_sampled_step_with_full_fanout_equals_full_step(loss, kind, alpha0):
    """With fan-out -1 for every hop, one sampled-mode step is the full-graph step (for a
    one-sided SVD++ over the receiving side's neighborhood only), also with degree
    exponents other than 0.5 (the subgraph's weights use the model's own)."""
    data = random_data(seed=1)
    out = []
    extra = {} if alpha0 is None else {"alpha0": alpha0}
    for mode in ("full", "sampled"):
        seed_everything(0)
        model = GraphCF.from_data(data, kind, embedding_dim=8, **extra)
        cfg = TrainConfig(
            epochs=1, batch_size=64, lr=0.01, mode=mode, num_neighbors=(-1,) * model.num_layers,
            max_steps_per_epoch=3, progress=False, seed=0,
        )  # fmt: skip
        tr = Trainer(model, data, get_loss(loss), cfg)
        if mode == "sampled":  # TrainConfig(degree_correction=True), the default, reaches it
            assert tr.loader.sampler.degree_correction
        tr.generator.manual_seed(0)
        losses = []
        for idx in list(tr.batches()):
            batch, reg = tr.make_batch(idx)
            if mode == "sampled" and kind != "lightgcn":  # one side draws, the other not
                sub = tr.last_batch.subgraph
                drawn = sub[USER_ITEM].edge_weight != 0  # drawn by items
                drawn_rev = sub[REV_EDGE].edge_weight != 0  # drawn by users
                assert (drawn.any() and not drawn_rev.any()) == (kind == "svdpp-item")
                assert (drawn_rev.any() and not drawn.any()) == (kind == "svdpp-user")
            value = tr.loss(batch)
            tr.optimizer.zero_grad()
            (value + reg).backward()
            tr.optimizer.step()
            losses.append(float(value.detach()))
        out.append((losses, model.user_embedding.weight.detach().clone()))
    assert out[0][0] == pytest.approx(out[1][0], abs=1e-5)
    assert torch.allclose(out[0][1], out[1][1], atol=1e-5)


@pytest.mark.parametrize("model", ["lightgcn", "mf", "svdpp-user"])
def test_sampled_training_beats_popularity(model):
    data = random_data(seed=0, num_edges=1500)
    m = GraphCF.from_data(data, model, embedding_dim=16)
    cfg = TrainConfig(
        epochs=12, batch_size=128, lr=0.02, patience=None, progress=False, mode="sampled",
        num_neighbors=(5, 5, 5),
    )  # fmt: skip
    tr = Trainer(m, data, get_loss("bpr"), cfg)
    hist = tr.fit()
    pop = popularity_baseline(data, ks=(20,))
    assert hist["test_recall@20"].iloc[-1] > pop["recall@20"] + 0.05
    assert tr.last_batch is not None and tr.last_batch.subgraph is not None


def test_sampled_mode_is_seeded_and_counts_collisions():
    data = random_data(seed=2)
    weights, coll = [], []
    for _ in range(2):
        seed_everything(3)
        m = GraphCF.from_data(data, "lightgcn", embedding_dim=8)
        cfg = TrainConfig(epochs=2, batch_size=64, seed=3, progress=False, mode="sampled")
        tr = Trainer(m, data, get_loss("ssm"), cfg)
        hist = tr.fit()
        weights.append(m.item_embedding.weight.detach().clone())
        coll.append(tr.collisions)
        assert hist["in_batch_collisions"].sum() == tr.collisions
    assert torch.equal(weights[0], weights[1])
    assert coll[0] == coll[1] > 0


def test_sparse_gradients_update_only_the_subgraph():
    data = random_data(seed=3, num_users=200, num_items=150, num_edges=1200)
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=8)
    cfg = TrainConfig(
        epochs=1, batch_size=16, max_steps_per_epoch=1, progress=False, mode="sampled",
        num_neighbors=(1, 1, 1), sparse_grad=True,
    )  # fmt: skip
    tr = Trainer(m, data, get_loss("bpr"), cfg)
    before = m.user_embedding.weight.detach().clone()
    tr.train_epoch()
    changed = (m.user_embedding.weight.detach() != before).any(1)
    sub = tr.last_batch.subgraph
    assert isinstance(tr.optimizer, LazyAdam)
    assert changed.any()
    nu = m.num_users
    assert not changed[~torch.isin(torch.arange(nu), sub["user"].n_id)].any()
    assert sub["user"].n_id.numel() < nu  # the test is not vacuous


def test_mode_validation():
    with pytest.raises(ConfigError, match="mode"):
        TrainConfig(mode="minibatch")
    with pytest.raises(ConfigError, match="num_neighbors"):
        TrainConfig(mode="sampled", num_neighbors=(-3,))
    with pytest.raises(ConfigError, match="sparse_grad"):
        TrainConfig(sparse_grad=True)
    data = random_data(seed=4)
    m = GraphCF.from_data(data, "mf", embedding_dim=4)

    class AllItems(CFLoss):
        negatives = "all"

        def forward(self, batch):
            return batch.user_emb.sum()

    with pytest.raises(ConfigError, match="mode='full'"):
        Trainer(m, data, AllItems(), TrainConfig(mode="sampled", progress=False))


@pytest.mark.parametrize("correction", [True, False])
def test_the_degree_correction_setting_reaches_the_sampler(correction):
    data = random_data(seed=1)
    cfg = TrainConfig(mode="sampled", num_neighbors=(3, 3), degree_correction=correction,
                      progress=False)  # fmt: skip
    tr = Trainer(GraphCF.from_data(data, "lightgcn", embedding_dim=4, num_layers=2), data,
                 get_loss("bpr"), cfg)  # fmt: skip
    assert tr.loader.sampler.degree_correction is correction
