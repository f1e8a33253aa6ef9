import pandas as pd
import pytest
import torch

from pyg_cf import datasets
from pyg_cf.data import train_edges
from pyg_cf.errors import ConfigError
from pyg_cf.losses import get_loss
from pyg_cf.metrics import popularity_baseline
from pyg_cf.nn import GraphCF
from pyg_cf.train import Callback, NonFiniteLossError, TrainConfig, Trainer, seed_everything


def synthetic(n_users=60, n_items=40, seed=0, ratios=(0.7, 0.1, 0.2)):
    from pyg_cf.data import from_dataframe

    g = torch.Generator().manual_seed(seed)
    # two taste clusters so that learning is possible
    users = torch.randint(n_users, (1500,), generator=g)
    half = n_items // 2
    items = torch.randint(half, (1500,), generator=g) + (users % 2) * half
    df = pd.DataFrame({"user": users.numpy(), "item": items.numpy()})
    return from_dataframe(df, ratios=ratios, seed=0)


@pytest.mark.parametrize("model", ["mf", "lightgcn", "svdpp-user", "svdpp-item"])
@pytest.mark.parametrize("loss", ["ssm", "bpr"])
def test_training_beats_popularity_on_clustered_data(model, loss):
    data = synthetic()
    m = GraphCF.from_data(data, model, embedding_dim=16)
    cfg = TrainConfig(epochs=15, batch_size=128, lr=0.02, patience=None, progress=False)
    hist = Trainer(m, data, get_loss(loss), cfg).fit()
    assert isinstance(hist, pd.DataFrame) and len(hist) == 15
    assert "val_ndcg@20" in hist and "test_recall@20" in hist
    pop = popularity_baseline(data, ks=(20,))
    assert hist["test_recall@20"].iloc[-1] > pop["recall@20"] + 0.05


def test_seeded_runs_are_identical():
    data = synthetic()
    out = []
    for _ in range(2):
        seed_everything(7)
        m = GraphCF.from_data(data, "lightgcn", embedding_dim=8)
        cfg = TrainConfig(epochs=2, batch_size=256, seed=7, progress=False)
        Trainer(m, data, get_loss("ssm"), cfg).fit()
        out.append(m.user_embedding.weight.detach().clone())
    assert torch.equal(out[0], out[1])


def test_early_stopping_restores_best():
    data = synthetic()
    m = GraphCF.from_data(data, "mf", embedding_dim=8)
    cfg = TrainConfig(epochs=40, batch_size=64, lr=0.05, patience=2, progress=False)
    tr = Trainer(m, data, get_loss("bpr"), cfg)
    assert not tr.stopped_early
    hist = tr.fit()
    assert len(hist) < 40 and tr.stopped_early  # this run stops early
    # it stops after exactly `patience` evaluations without a new best (each epoch evaluated)
    best_epoch = int(hist.loc[hist["val_ndcg@20"].idxmax(), "epoch"])
    assert len(hist) == best_epoch + 2
    best = hist["val_ndcg@20"].max()
    assert tr.evaluate("val")["ndcg@20"] == pytest.approx(best)
    # a run that ends its schedule (or its time budget) did not stop early
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, patience=2, progress=False)
    short = Trainer(GraphCF.from_data(data, "mf", embedding_dim=8), data, get_loss("bpr"), cfg)
    short.fit()
    assert not short.stopped_early


def test_min_epochs_defers_early_stopping_without_changing_the_run():
    data = synthetic()

    def run(**kw):
        m = GraphCF.from_data(data, "mf", embedding_dim=8)
        cfg = TrainConfig(epochs=40, batch_size=64, lr=0.05, patience=1, progress=False, **kw)
        return Trainer(m, data, get_loss("bpr"), cfg).fit()

    early = run()
    stopped = len(early)
    assert stopped < 40  # patience 1 stops this run early, so the deferral is observable
    later = run(min_epochs=stopped + 3)
    # patience 1: it stops at the first epoch >= min_epochs whose validation is no new best
    val = later["val_ndcg@20"].tolist()
    want = next(e for e in range(stopped + 3, 41) if val[e - 1] <= max(val[: e - 1]))
    assert len(later) == want
    pd.testing.assert_frame_equal(
        later.iloc[:stopped].drop(columns=["train_s", "elapsed_s", "eval_s"]),
        early.drop(columns=["train_s", "elapsed_s", "eval_s"]),
    )
    with pytest.raises(ConfigError, match="min_epochs"):
        TrainConfig(min_epochs=-1)


def test_nan_loss_stops_with_location():
    data = synthetic()
    m = GraphCF.from_data(data, "mf", embedding_dim=8)
    with torch.no_grad():
        m.user_embedding.weight[:] = float("nan")
    tr = Trainer(m, data, get_loss("bpr"), TrainConfig(epochs=1, progress=False))
    items = m.item_embedding.weight.detach().clone()
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 0"):
        tr.fit()
    # no step was taken with the non-finite loss: the item table is untouched (a step
    # would have written NaN into the batch's item rows)
    assert torch.equal(m.item_embedding.weight.detach(), items)


def test_the_config_seed_drives_the_batches_and_negatives():
    """Same initial weights, another TrainConfig.seed: other shuffles and negatives, so
    another history; the same seed repeats it."""
    data = synthetic()

    def run(seed):
        torch.manual_seed(0)
        m = GraphCF.from_data(data, "mf", embedding_dim=8)
        cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=seed, progress=False)
        return Trainer(m, data, get_loss("bpr"), cfg).fit()["loss"].tolist()

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_model_for_other_data_is_refused():
    data = synthetic()
    with pytest.raises(ConfigError, match="built for"):
        Trainer(GraphCF.mf(3, 3), data, get_loss("bpr"))


def test_a_cutoff_above_the_item_count_is_refused_before_training():
    data = synthetic()
    ni = data["item"].num_nodes
    model = GraphCF.from_data(data, "mf", embedding_dim=8)
    msg = rf"at most the number of items \({ni}\), got \(20, {ni + 1}\)"
    with pytest.raises(ConfigError, match=msg):
        Trainer(model, data, get_loss("bpr"), TrainConfig(ks=(20, ni + 1), progress=False))
    # the largest valid cut-off is accepted
    Trainer(model, data, get_loss("bpr"), TrainConfig(ks=(ni,), progress=False))


def test_a_loss_or_config_of_the_wrong_kind_is_named():
    data = synthetic()
    model = GraphCF.from_data(data, "mf", embedding_dim=8)
    with pytest.raises(ConfigError, match=r"loss must be a CFLoss .* got MSELoss"):
        Trainer(model, data, torch.nn.MSELoss())
    with pytest.raises(ConfigError, match=r"config must be a TrainConfig .* got dict"):
        Trainer(model, data, get_loss("bpr"), {"epochs": 1})


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_is_named():
    data = synthetic()
    model = GraphCF.from_data(data, "mf", embedding_dim=8)
    with pytest.raises(ConfigError, match="device='cuda' but CUDA is not available"):
        Trainer(model, data, get_loss("bpr"), TrainConfig(device="cuda", progress=False))


def test_sparse_gradients_need_a_model_of_embeddings_only():
    class WithHead(GraphCF):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.head = torch.nn.Linear(8, 8)

    data = synthetic()
    model = WithHead(data["user"].num_nodes, data["item"].num_nodes, 8, 1)
    cfg = TrainConfig(mode="sampled", sparse_grad=True, progress=False)
    with pytest.raises(ConfigError, match="needs a model whose parameters are all embeddings"):
        Trainer(model, data, get_loss("bpr"), cfg)


def test_a_fanout_with_fewer_hops_than_the_model_warns(caplog):
    import logging

    data = synthetic()
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=3)
    cfg = TrainConfig(mode="sampled", num_neighbors=(5, 5), progress=False)
    with caplog.at_level(logging.WARNING, logger="pyg_cf.train.trainer"):
        Trainer(model, data, get_loss("bpr"), cfg)
    assert "num_neighbors has 2 hops but the model propagates 3" in caplog.text


def test_short_real_data_run_beats_popularity_ml1m():
    """CI's short real-data run: LightGCN + in-batch SSM on ML-1M for 150 steps."""
    data = datasets.load("ml-1m")
    m = GraphCF.from_data(data, "lightgcn")
    cfg = TrainConfig(epochs=1, max_steps_per_epoch=150, lr=5e-3, progress=False)
    hist = Trainer(m, data, get_loss("ssm", tau=0.15), cfg).fit()
    pop = popularity_baseline(data, ks=(20,))
    assert hist["test_recall@20"].iloc[-1] > pop["recall@20"] * 1.15


@pytest.mark.parametrize("mode", ["full", "sampled"])
def test_shared_negatives_step_matches_the_materialised_batch(mode):
    """A trainer step with one shared set of negatives gives the loss and L2 penalty of
    the same negatives copied to every row."""
    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=1)
    loss = get_loss("ssm", negatives="sampled", num_negatives=9, shared_negatives=True)
    cfg = TrainConfig(
        epochs=1, batch_size=32, l2_reg=1e-2, mode=mode, num_neighbors=(-1,), progress=False
    )
    tr = Trainer(m, data, loss, cfg)
    batch, reg = tr.make_batch(next(iter(tr.batches())))
    assert batch.neg_emb.shape == (1, 9, 8) and batch.neg_items.shape == (32, 9)
    assert bool((batch.neg_items == batch.neg_items[:1]).all())
    full = type(batch)(**{**batch.__dict__, "neg_emb": batch.neg_emb.expand(32, -1, -1)})
    assert torch.allclose(loss(batch), loss(full))
    u0, p0 = m.layer0(batch.users, batch.pos_items)
    n0 = m.item_embedding(batch.neg_items)
    expect = 1e-2 * (u0.pow(2).sum() + p0.pow(2).sum() + n0.pow(2).sum()) / (2 * 32)
    assert torch.allclose(reg, expect)


@pytest.mark.parametrize("mode", ["full", "sampled"])
@pytest.mark.parametrize("num_neg", [9, 400])
def test_grouped_negatives_step_matches_the_materialised_batch(mode, num_neg):
    """``shared_negatives=4`` on 30 rows: four sets over blocks of 8, 8, 8 and 6 rows; the
    loss and the L2 penalty equal those of the same negatives copied to every row. With 400
    negatives the 4 sets outnumber the 40 items, so they come from the normalised table."""
    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=1)
    loss = get_loss("ssm", negatives="sampled", num_negatives=num_neg, shared_negatives=4)
    cfg = TrainConfig(
        epochs=1, batch_size=30, l2_reg=1e-2, mode=mode, num_neighbors=(-1,), progress=False
    )
    tr = Trainer(m, data, loss, cfg)
    batch, reg = tr.make_batch(next(iter(tr.batches())))
    assert batch.neg_emb.shape == (4, num_neg, 8) and batch.neg_items.shape == (30, num_neg)
    assert batch.neg_unit == (num_neg == 400)
    if batch.neg_unit:
        assert torch.allclose(batch.neg_emb.norm(dim=-1), torch.ones(4, num_neg))
    for lo, hi in ((0, 8), (8, 16), (16, 24), (24, 30)):
        assert bool((batch.neg_items[lo:hi] == batch.neg_items[lo]).all())
    full = batch.neg_emb.repeat_interleave(8, dim=0)[:30]
    ref = type(batch)(**{**batch.__dict__, "neg_emb": full})
    assert torch.allclose(loss(batch), loss(ref))
    if batch.neg_unit and mode == "full":  # equal to normalising the raw rows in the loss
        raw_rows = m()[1][batch.neg_items]
        plain = type(batch)(**{**batch.__dict__, "neg_emb": raw_rows, "neg_unit": False})
        assert torch.allclose(loss(batch), loss(plain), atol=1e-6)
    u0, p0 = m.layer0(batch.users, batch.pos_items)
    n0 = m.item_embedding(batch.neg_items)
    expect = 1e-2 * (u0.pow(2).sum() + p0.pow(2).sum() + n0.pow(2).sum()) / (2 * 30)
    assert torch.allclose(reg, expect)
    if mode == "sampled":  # the local ids point at the same global items
        n_id = tr.last_batch.subgraph["item"].n_id
        assert torch.equal(n_id[tr.last_batch.neg_index], batch.neg_items)


@pytest.mark.parametrize("mode", ["full", "sampled"])
@pytest.mark.parametrize("shared", [False, 4])
def test_l2_over_all_layers_penalises_every_hop(mode, shared):
    """``l2_layers='all'`` penalises every hop's embeddings of the batch's users, positives
    and negatives (each negative once per row that scores it): with the full neighborhood
    the sampled subgraph's hops equal the full graph's."""
    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=2)
    loss = get_loss("ssm", negatives="sampled", num_negatives=9, shared_negatives=shared)
    kw = dict(epochs=1, batch_size=30, l2_reg=1e-2, mode=mode, num_neighbors=(-1, -1))
    tr = Trainer(m, data, loss, TrainConfig(**kw, l2_layers="all", progress=False))
    batch, reg = tr.make_batch(next(iter(tr.batches())))
    hs_u, hs_i = m.layers()
    assert len(hs_u) == len(hs_i) == 3
    sq = sum(
        h[batch.users].pow(2).sum()
        + g[batch.pos_items].pow(2).sum()
        + g[batch.neg_items].pow(2).sum()
        for h, g in zip(hs_u, hs_i)
    )
    assert torch.allclose(reg, 1e-2 * sq / (2 * 30), rtol=1e-5)
    # and the loss still sees the model's final embeddings (the layer mean), not a hop
    u, i = m()
    assert torch.allclose(batch.user_emb, u[batch.users], atol=1e-5)
    assert torch.allclose(batch.pos_emb, i[batch.pos_items], atol=1e-5)
    # more than layer 0 alone, which 'input' penalises
    tr0 = Trainer(m, data, loss, TrainConfig(**kw, progress=False))
    _, reg0 = tr0.make_batch(next(iter(tr0.batches())))
    u0, p0 = m.layer0(batch.users, batch.pos_items)
    n0 = m.item_embedding(batch.neg_items)
    assert torch.allclose(reg0, 1e-2 * (u0.pow(2).sum() + p0.pow(2).sum() + n0.pow(2).sum()) / 60)
    assert reg > reg0 * 1.01
    reg.backward()  # the penalty reaches layer 0 through the propagation
    assert m.user_embedding.weight.grad.abs().sum() > 0


def test_l2_over_all_layers_is_layer0_for_mf():
    data = synthetic()
    m = GraphCF.from_data(data, "mf", embedding_dim=8)
    loss = get_loss("bpr")
    regs = []
    for layers in ("input", "all"):
        cfg = TrainConfig(epochs=1, batch_size=30, l2_reg=1e-2, l2_layers=layers, seed=3)
        tr = Trainer(m, data, loss, cfg)
        regs.append(tr.make_batch(next(iter(tr.batches())))[1])
    assert torch.allclose(regs[0], regs[1])


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
@pytest.mark.parametrize("mode", ["full", "sampled"])
@pytest.mark.parametrize("shared", [False, 4])
def test_sparse_l2_lookups_give_the_dense_step(kind, mode, shared):
    """The layer-0 penalty's sparse lookups (the CPU default) give the gradients of dense
    ones: the table gradients stay dense (Adam takes them) and equal, as do the losses."""
    data = synthetic()
    loss = get_loss("ssm", negatives="sampled", num_negatives=5, shared_negatives=shared)
    grads = []
    for sparse in (True, False):
        seed_everything(0)
        kw = {} if kind == "mf" else {"num_layers": 2}
        m = GraphCF.from_data(data, kind, embedding_dim=8, **kw)
        cfg = TrainConfig(
            epochs=1, batch_size=30, l2_reg=1e-1, mode=mode, num_neighbors=(-1, -1), seed=3,
            progress=False,
        )  # fmt: skip
        tr = Trainer(m, data, loss, cfg)
        assert tr._sparse_l2  # the CPU default
        tr._sparse_l2 = sparse
        batch, reg = tr.make_batch(next(iter(tr.batches())))
        (loss(batch) + reg).backward()
        g = [p.grad for p in m.parameters()]
        assert all(x is not None and x.layout == torch.strided for x in g)
        grads.append((reg.detach(), g))
    assert torch.allclose(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, atol=1e-7)


@pytest.mark.parametrize("l2_reg", [0.0, 1e-2])
def test_history_logs_the_mean_l2_penalty_per_step(l2_reg):
    """``l2`` is the mean over an epoch's steps of the penalty each step added to the loss
    (reference codes log loss + penalty; our ``loss`` column excludes it); none without L2."""
    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=2)
    cfg = TrainConfig(epochs=2, batch_size=100, l2_reg=l2_reg, lr=0.05, progress=False)
    tr = Trainer(m, data, get_loss("bpr"), cfg)
    seen: list[tuple[int, float]] = []
    embed = tr.embed_batch

    def recording(cb):  # type: ignore[no-untyped-def]
        batch, reg = embed(cb)
        seen.append((tr.epoch, float(reg.detach())))
        return batch, reg

    tr.embed_batch = recording  # type: ignore[method-assign]
    hist = tr.fit()
    if l2_reg == 0:
        assert "l2" not in hist and tr.last_epoch_l2 is None
        return
    for epoch in (1, 2):
        regs = [r for e, r in seen if e == epoch]
        assert len(regs) == tr._steps() > 1 and min(regs) > 0
        assert hist["l2"].iloc[epoch - 1] == pytest.approx(sum(regs) / len(regs), rel=1e-5)
    assert hist["l2"].iloc[1] != hist["l2"].iloc[0]  # the weights moved between epochs


def test_l2_layers_is_checked():
    with pytest.raises(ConfigError, match="l2_layers"):
        TrainConfig(l2_layers="final")

    class Plain(torch.nn.Module):
        num_users, num_items = 60, 40

    with pytest.raises(ConfigError, match="layers\\(\\) and combine"):
        Trainer(Plain(), synthetic(), get_loss("bpr"), TrainConfig(l2_layers="all"))


def test_user_uniform_sampling_trains():
    data = synthetic()
    m = GraphCF.from_data(data, "mf", embedding_dim=16)
    cfg = TrainConfig(epochs=10, batch_size=128, lr=0.02, sampling="user", progress=False)
    tr = Trainer(m, data, get_loss("bpr"), cfg)
    # uniform users, one interaction each: an epoch draws interactions with repeats (an
    # edge pass holds each exactly once)
    assert tr.loader.sampling == "user"
    ids = torch.cat(list(tr.batches()))
    assert ids.numel() == train_edges(data).size(1)
    assert torch.unique(ids).numel() < ids.numel()
    hist = tr.fit()
    pop = popularity_baseline(data, ks=(20,))
    assert hist["test_recall@20"].iloc[-1] > pop["recall@20"] + 0.05
    with pytest.raises(ConfigError, match="sampling"):
        TrainConfig(sampling="users")


def test_full_softmax_trains_on_user_blocks():
    data = synthetic()
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=16, num_layers=2)
    cfg = TrainConfig(epochs=8, batch_size=128, lr=0.02, sampling="user_blocks", progress=False)
    hist = Trainer(m, data, get_loss("softmax", tau=0.2), cfg).fit()
    pop = popularity_baseline(data, ks=(20,))
    assert hist["test_recall@20"].iloc[-1] > pop["recall@20"] + 0.05


def test_capped_user_blocks_reach_the_loader_and_train():
    data = synthetic()
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=16, num_layers=2)
    cfg = TrainConfig(
        epochs=8, batch_size=128, lr=0.02, sampling="user_blocks", user_block_size=4,
        progress=False,
    )  # fmt: skip
    tr = Trainer(m, data, get_loss("softmax", tau=0.2), cfg)
    assert tr.loader.user_block_size == 4
    # blocks of at most 4 rows per user: more distinct users per batch than whole users give
    whole = Trainer(
        GraphCF.from_data(data, "lightgcn", embedding_dim=16, num_layers=2),
        data,
        get_loss("softmax", tau=0.2),
        TrainConfig(batch_size=128, sampling="user_blocks", progress=False),
    )
    distinct = lambda t: max(  # noqa: E731
        torch.unique(t.train_ei[0, b]).numel() for b in t.batches()
    )
    assert distinct(tr) > distinct(whole)
    hist = tr.fit()
    assert hist["test_recall@20"].iloc[-1] > popularity_baseline(data, ks=(20,))["recall@20"]
    with pytest.raises(ConfigError, match="user_blocks"):
        TrainConfig(user_block_size=4)


def test_a_loss_parameter_trains_with_the_model_and_is_checkpointed(tmp_path):
    """A learned BCE logit bias is optimised with the embeddings: LightGCN cannot express
    the 1:4 base rate itself, so the bias moves down from 0; checkpoints restore it."""
    from pyg_cf.train import load_checkpoint

    class LastBias(Callback):
        def on_epoch_end(self, trainer, epoch, row):
            self.value = float(trainer.loss.logit_bias)

    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=16, num_layers=2)
    loss = get_loss("bce", num_negatives=4, learn_bias=True)
    cfg = TrainConfig(
        epochs=10, batch_size=128, lr=0.02, patience=None, progress=False,
        checkpoint_dir=str(tmp_path),
    )  # fmt: skip
    last = LastBias()
    tr = Trainer(m, data, loss, cfg, callbacks=[last])
    assert any(p is loss.logit_bias for g in tr.optimizer.param_groups for p in g["params"])
    hist = tr.fit()
    learned = last.value  # the last epoch's (fit() restores the best epoch's)
    assert learned < -0.3
    assert hist["test_recall@20"].iloc[-1] > popularity_baseline(data, ks=(20,))["recall@20"]
    fresh = get_loss("bce", num_negatives=4, learn_bias=True)
    m2 = GraphCF.from_data(data, "lightgcn", embedding_dim=16, num_layers=2)
    load_checkpoint(Trainer(m2, data, fresh, cfg, callbacks=[LastBias()]), tmp_path / "last.pt")
    assert float(fresh.logit_bias) == learned
    with pytest.raises(ConfigError, match="loss without trainable parameters"):
        Trainer(
            GraphCF.from_data(data, "mf", embedding_dim=8), data, fresh,
            TrainConfig(sparse_grad=True, mode="sampled", num_neighbors=[5], progress=False),
        )  # fmt: skip


def test_best_weights_come_back_with_the_loss_state_of_their_epoch(tmp_path):
    """After early stopping, a learned loss parameter (the BCE bias) is restored to its
    value at the best evaluation, with the model's weights, also after a resume."""
    from pyg_cf.train import load_checkpoint

    class Biases(Callback):
        def __init__(self):
            self.seen = {}

        def on_epoch_end(self, trainer, epoch, row):
            self.seen[epoch] = float(trainer.loss.logit_bias)

    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "mf", embedding_dim=8)
    loss = get_loss("bce", num_negatives=4, learn_bias=True)
    rec = Biases()
    cfg = TrainConfig(
        epochs=60, batch_size=64, lr=0.05, patience=2, progress=False,
        checkpoint_dir=str(tmp_path),
    )  # fmt: skip
    hist = Trainer(m, data, loss, cfg, callbacks=[rec]).fit()
    best = int(hist.loc[hist["best"].fillna(False).astype(bool), "epoch"].max())
    assert best < int(hist["epoch"].max())  # it stopped after its best epoch
    assert rec.seen[best] != rec.seen[int(hist["epoch"].max())]
    assert float(loss.logit_bias) == rec.seen[best]
    # a run resumed from the stopped run's checkpoint restores the same epoch's bias
    fresh = get_loss("bce", num_negatives=4, learn_bias=True)
    tr = Trainer(GraphCF.from_data(data, "mf", embedding_dim=8), data, fresh, cfg, [Biases()])
    load_checkpoint(tr, tmp_path / "last.pt")
    tr.fit()
    assert float(fresh.logit_bias) == rec.seen[best]


def test_step_decay_learning_rate():
    cfg = TrainConfig(lr=1e-2, lr_milestones=(4, 2), lr_gamma=0.5)
    assert cfg.lr_milestones == (2, 4)
    assert [cfg.lr_at(e) for e in (1, 2, 3, 4, 5, 9)] == [1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3]
    data = synthetic()
    m = GraphCF.from_data(data, "mf", embedding_dim=8)
    cfg = TrainConfig(
        epochs=4, batch_size=256, lr=1e-2, lr_milestones=(2,), lr_gamma=0.1, progress=False
    )
    seen: list[float] = []

    class LrSeen(Callback):  # the optimizer's own lr during each epoch's steps
        def on_batch_end(self, trainer, *args):
            if len(seen) < trainer.epoch:
                seen.append(trainer.optimizer.param_groups[0]["lr"])

    tr = Trainer(m, data, get_loss("bpr"), cfg, callbacks=[LrSeen()])
    hist = tr.fit()
    assert hist["lr"].tolist() == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])
    assert seen == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    for bad in ({"lr_milestones": (0,)}, {"lr_gamma": 0.0}, {"lr_gamma": 2.0}):
        with pytest.raises(ConfigError, match="lr_"):
            TrainConfig(**bad)


@pytest.mark.parametrize("name", ["ssm", "mml", "bpr"])
def test_per_row_cosine_negatives_come_from_the_normalised_table(name):
    """Cosine losses get per-row negatives gathered from the L2-normalised item table
    (``neg_unit``); loss and gradients equal those of raw rows normalised after gathering."""
    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "mf", embedding_dim=8)
    kw = {"negatives": "sampled"} if name == "ssm" else {}
    loss = get_loss(name, num_negatives=5, similarity="cos", **kw)
    tr = Trainer(m, data, loss, TrainConfig(epochs=1, batch_size=32, progress=False))
    batch, _ = tr.make_batch(next(iter(tr.batches())))
    assert batch.neg_unit and batch.neg_emb.shape == (32, 5, 8)
    torch.testing.assert_close(batch.neg_emb.norm(dim=-1), torch.ones(32, 5))
    raw = type(batch)(
        **{**batch.__dict__, "neg_emb": m.item_embedding(batch.neg_items), "neg_unit": False}
    )
    w = m.item_embedding.weight
    (g_unit,) = torch.autograd.grad(loss(batch), w, retain_graph=True)
    (g_raw,) = torch.autograd.grad(loss(raw), w, retain_graph=True)
    torch.testing.assert_close(g_unit, g_raw)
    ip = get_loss("bpr", num_negatives=5)  # inner products: raw rows, no normalisation
    batch, _ = Trainer(m, data, ip, TrainConfig(epochs=1, batch_size=32)).make_batch(
        torch.arange(32)
    )
    assert not batch.neg_unit


def test_user_dropout_only_in_training():
    data = synthetic()
    seed_everything(3)
    m = GraphCF.from_data(data, "mf", embedding_dim=16)
    cfg = TrainConfig(epochs=1, batch_size=128, user_dropout=0.25, progress=False)
    tr = Trainer(m, data, get_loss("ssm"), cfg)
    idx = next(iter(tr.batches()))
    m.train()
    b1, _ = tr.make_batch(idx)
    u_all, _ = m()
    plain = u_all[b1.users]
    dropped = b1.user_emb
    # about a quarter of the 2048 entries zeroed (sd ≈ 0.01), the others scaled by
    # 1 / (1 - p) (p = 0.25, not 0.5: a hard-coded 0.5 would pass at 0.5)
    zero = dropped == 0
    assert 0.2 < zero.float().mean() < 0.3
    torch.testing.assert_close(dropped[~zero], plain[~zero] * (4 / 3))
    m.eval()
    b2, _ = tr.make_batch(idx)
    torch.testing.assert_close(b2.user_emb, plain)
    # and a seeded run with it still trains
    hist = Trainer(m, data, get_loss("ssm"), TrainConfig(
        epochs=10, batch_size=128, lr=0.02, user_dropout=0.1, patience=None, progress=False
    )).fit()  # fmt: skip
    assert hist["test_recall@20"].iloc[-1] > popularity_baseline(data)["recall@20"] + 0.05


def test_user_dropout_is_validated():
    with pytest.raises(ConfigError, match="user_dropout"):
        TrainConfig(user_dropout=1.0)


def test_extra_test_similarity_is_logged_and_never_selects():
    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "mf", embedding_dim=8)
    cfg = TrainConfig(
        epochs=6,
        batch_size=128,
        lr=0.05,
        patience=None,
        eval_every=2,
        extra_test_similarities=("cos",),
        progress=False,
    )
    tr = Trainer(m, data, get_loss("ssm"), cfg)
    hist = tr.fit()
    evals = hist.dropna(subset=["val_ndcg@20"])
    assert list(evals["epoch"]) == [2, 4, 6]
    for split in ("val", "test"):
        assert evals[f"{split}_cos_ndcg@20"].notna().all()
    # the logged values are the cosine metrics of those weights: the restored best weights
    # (chosen on the inner-product validation NDCG) reproduce their row's cosine entries
    best = evals.loc[evals["val_ndcg@20"].idxmax()]
    assert tr.evaluate("test", "cos")["recall@20"] == pytest.approx(best["test_cos_recall@20"])
    assert tr.evaluate("val")["ndcg@20"] == pytest.approx(best["val_ndcg@20"])
    # the two similarities rank differently here: not a copy of the inner-product entries
    assert not (evals["test_cos_ndcg@20"] == evals["test_ndcg@20"]).all()


def test_extra_test_similarities_share_one_forward_pass():
    data = synthetic()
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=2)
    cfg = TrainConfig(epochs=1, extra_test_similarities=("cos",), progress=False)
    tr = Trainer(m, data, get_loss("ssm"), cfg)
    calls = []
    m.register_forward_hook(lambda *_: calls.append(1))
    main, row = tr._evaluate_logged("test")
    assert len(calls) == 1  # both similarities ranked from the same final embeddings
    assert row["test_recall@20"] == main["recall@20"]
    assert row["test_cos_recall@20"] == pytest.approx(tr.evaluate("test", "cos")["recall@20"])
    assert tr.evaluate("test", embeddings=tr.final_embeddings()) == tr.evaluate("test")
    u, i = tr.final_embeddings()
    for bad in ((u[:-1], i), (u, i[:, :4]), (i, u)):
        with pytest.raises(ConfigError, match="embeddings must be"):
            tr.evaluate("test", embeddings=bad)


@pytest.mark.parametrize("extra", [("ip",), ("dot",), ("cos", "cos"), None, 5, "cos"])
def test_extra_test_similarities_are_validated(extra):
    # None and 5 were raw TypeErrors, "cos" was reported as ('c', 'o', 's')
    with pytest.raises(ConfigError, match="extra_test_similarities"):
        TrainConfig(test_similarity="ip", extra_test_similarities=extra)
    if isinstance(extra, str):
        with pytest.raises(ConfigError, match=r"got 'cos'"):
            TrainConfig(test_similarity="ip", extra_test_similarities=extra)


@pytest.mark.parametrize("device", ["gpu", "mps", "cuda:x", ""])
def test_an_unknown_device_is_named(device):
    with pytest.raises(
        ConfigError, match=f"device must be 'cpu', 'cuda' or 'cuda:N', got '{device}'"
    ):
        TrainConfig(device=device)
    assert TrainConfig(device="cuda:1").device == "cuda:1"  # checked when a Trainer uses it


@pytest.mark.parametrize("seed", ["abc", -1, 1.5, True, 2**32])
def test_a_bad_seed_is_a_config_error(seed):
    # 2**32 passed the config and failed in fit() inside NumPy's seeding
    with pytest.raises(ConfigError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        TrainConfig(seed=seed)
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1


@pytest.mark.parametrize("folder", ["", "  ", 5, True, b"runs"])
def test_a_checkpoint_dir_that_is_no_folder_is_refused(folder):
    """'' saved to /last.pt; 5 and True made folders named '5' and 'True'."""
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        TrainConfig(checkpoint_dir=folder)


def test_a_path_checkpoint_dir_is_kept_as_its_string(tmp_path):
    assert TrainConfig(checkpoint_dir=tmp_path).checkpoint_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"ks": (0, 20)}, "ks must be cut-offs >= 1"),
        ({"monitor": "ndcg@0"}, "monitor must look like"),
        ({"patience": -1}, "patience must be >= 1"),
        ({"patience": 0}, "patience must be >= 1"),  # stopped like 1
        ({"max_steps_per_epoch": 0}, "max_steps_per_epoch must be >= 1"),
        ({"max_steps_per_epoch": -1}, "max_steps_per_epoch must be >= 1"),
        ({"time_budget_s": -1.0}, "time_budget_s must be > 0"),
        ({"l2_reg": float("nan")}, "l2_reg must be >= 0 and finite"),
        ({"lr": float("inf")}, "lr must be > 0 and finite"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"eval_every": 1.5}, "eval_every must be an integer"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"lr": "abc"}, "lr must be a number"),
        ({"l2_reg": "1e-4"}, "l2_reg must be a number"),
        ({"user_dropout": None}, "user_dropout must be a number"),
        ({"time_budget_s": "60"}, "time_budget_s must be a number"),
        ({"ks": ("a",)}, "ks must be integer cut-offs"),
        ({"ks": (2.5,)}, "ks must be integer cut-offs"),  # was truncated to 2
        ({"ks": 20}, "ks must be a sequence of integer cut-offs, got 20"),
        # these escaped as TypeError / ValueError / AttributeError naming no field
        ({"num_neighbors": 5}, "num_neighbors must be a sequence of fan-outs"),
        ({"lr_milestones": 3}, "lr_milestones must be a sequence of epochs"),
        ({"lr_milestones": ("a",)}, "lr_milestones must be epochs, got"),
        ({"monitor": 5}, "monitor must look like 'ndcg@20', got 5"),
        # a string is truthy: "false" switched the option on
        ({"eval_test": "no"}, "eval_test must be True or False, got 'no'"),
        ({"degree_correction": "false"}, "degree_correction must be True or False"),
        ({"retain_cpu_memory": "no"}, r"retain_cpu_memory must be True or False or None"),
        ({"progress": 0}, r"progress must be True or False or None, got 0"),
        ({"cuda_graphs": 1}, "cuda_graphs must be True or False, got 1"),
        # a hop without draws; a fan-out truncated to 2
        ({"mode": "sampled", "num_neighbors": (10, 0)}, r"-1 \(all neighbors\) or an integer"),
        ({"mode": "sampled", "num_neighbors": (2.7,)}, "num_neighbors must be fan-outs"),
    ],
)
def test_bad_settings_fail_at_construction(kw, match):
    """Settings that would fail only after a first epoch of training (a cut-off of 0),
    train nothing silently (a step cap of 0: loss 0.0), crash inside the loader or never
    reach the final evaluation (2.5 epochs) are refused up front."""
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


@pytest.mark.parametrize("shared", [False, True, 4])
@pytest.mark.parametrize("cos", [False, True])
def test_gather_items_is_two_plain_gathers(shared, cos):
    """Positives and negatives gathered in one index_select give the rows and the table
    gradient of separate gathers (negatives from the normalised table when ``unit``)."""
    from pyg_cf.train.trainer import _gather_items

    g = torch.Generator().manual_seed(0)
    table = torch.randn(12, 4, generator=g, requires_grad=True)
    pos = torch.randint(12, (10,), generator=g)
    neg = torch.randint(12, (10, 3), generator=g)
    if shared:  # every row of a block holds its set, as the loader draws them
        rows = 10 if shared is True else 3
        neg = neg[::rows].repeat_interleave(rows, 0)[:10]
    p, n, unit = _gather_items(table, pos, neg, shared, cos)
    w = torch.randn(*n.shape, generator=g)
    (p.pow(2).sum() + (w * n).sum()).backward()
    grad, table.grad = table.grad, None
    sets = neg if not shared else neg[:: (10 if shared is True else 3)]
    assert unit == (cos and (not shared or sets.numel() > 12))
    src = torch.nn.functional.normalize(table, dim=-1) if unit else table
    ref_p, ref_n = table[pos], src[sets]
    assert torch.equal(p, ref_p) and torch.allclose(n, ref_n)
    (ref_p.pow(2).sum() + (w * ref_n).sum()).backward()
    assert torch.allclose(grad, table.grad, atol=1e-6)
    p2, n2, unit2 = _gather_items(table, pos, None, shared, cos)
    assert torch.equal(p2, ref_p) and n2 is None and not unit2


def test_a_monitor_with_a_zero_padded_cutoff_names_the_logged_metric():
    """'ndcg@020' was accepted (and 20 added to ks) but looked up as 'ndcg@020' after the
    first epoch: a KeyError an epoch into the run."""
    cfg = TrainConfig(monitor="ndcg@020", ks=(10,), progress=False)
    assert cfg.monitor == "ndcg@20" and cfg.ks == (10, 20)
    data = synthetic()
    model = GraphCF.from_data(data, "mf", embedding_dim=8)
    cfg = TrainConfig(epochs=1, monitor="recall@05", ks=(5,), progress=False)
    hist = Trainer(model, data, get_loss("bpr"), cfg).fit()
    assert "val_recall@5" in hist.columns


@pytest.mark.parametrize(
    ("dtype", "weights"), [(torch.float64, torch.float64), (torch.float32, torch.float32)]
)
def test_sampled_subgraph_weights_follow_a_float64_model(tiny_data, dtype, weights):
    """A float64 model's subgraphs carry float64 edge weights (float32 ones made full
    fan-outs differ from the full graph by ~1e-8 instead of rounding)."""
    model = GraphCF.from_data(tiny_data, "lightgcn", embedding_dim=4).to(dtype)
    cfg = TrainConfig(
        mode="sampled",
        num_neighbors=(-1, -1, -1),
        batch_size=4,
        ks=(2,),
        monitor="ndcg@2",
        progress=False,
    )
    tr = Trainer(model, tiny_data, get_loss("bpr"), cfg)
    assert tr.loader.sampler is not None and tr.loader.sampler.dtype == weights
    cb = tr.collate(next(iter(tr.batches())))
    assert all(w.dtype == weights for w in cb.model_inputs()["edge_weight"])


def test_a_sparse_gradient_trainer_leaves_the_models_embeddings_as_found():
    """``sparse_grad=True`` set ``nn.Embedding.sparse`` on the caller's model for good: a
    later dense trainer on the same model then failed in Adam ("does not support sparse
    gradients"). The flags are now set for the step's lookups only."""
    data = synthetic()
    seed_everything(0)
    m = GraphCF.from_data(data, "mf", embedding_dim=8)
    m.item_embedding.sparse = True  # a caller's own setting is put back too
    base = dict(
        epochs=1, batch_size=128, mode="sampled", num_neighbors=(3,), patience=None,
        progress=False,
    )  # fmt: skip
    sparse = Trainer(m, data, get_loss("bpr"), TrainConfig(sparse_grad=True, **base))
    batch, reg = sparse.make_batch(next(iter(sparse.batches())))
    (sparse.loss(batch) + reg).backward()
    assert m.user_embedding.weight.grad.is_sparse and m.item_embedding.weight.grad.is_sparse
    m.zero_grad(set_to_none=True)
    sparse.fit()
    assert (m.user_embedding.sparse, m.item_embedding.sparse) == (False, True)
    m.item_embedding.sparse = False
    hist = Trainer(m, data, get_loss("bpr"), TrainConfig(**base)).fit()  # failed in Adam
    assert len(hist) == 1 and not m.user_embedding.weight.grad.is_sparse


def test_a_second_fit_continues_as_a_resume_from_the_last_checkpoint(tmp_path):
    """``fit()`` ends with the best weights in the model; a second ``fit()`` with more
    epochs trained on from them with the last epoch's optimizer moments and random state,
    a run that was neither the uninterrupted one nor its resume. It now continues from the
    last epoch's weights, exactly as ``load_checkpoint`` of the last checkpoint does; a
    checkpoint saved by hand after ``fit()`` holds those weights too."""
    import dataclasses

    from pyg_cf.train import load_checkpoint, save_checkpoint
    from pyg_cf.train.checkpoint import read_checkpoint

    data = synthetic()

    def make(epochs, ckpt=None):
        torch.manual_seed(0)
        model = GraphCF.from_data(data, "lightgcn", embedding_dim=8)
        cfg = TrainConfig(
            epochs=epochs, batch_size=64, lr=0.3, l2_reg=1e-4, seed=3, patience=None,
            progress=False, checkpoint_dir=ckpt,
        )  # fmt: skip
        return Trainer(model, data, get_loss("bpr"), cfg)

    def metrics(hist):
        return hist[[c for c in hist.columns if not c.endswith("_s")]]

    again = make(3)
    first = again.fit()
    best = first.loc[first["best"].eq(True), "epoch"].tolist()
    assert best[-1] < 3  # the best weights are not the last ones: fit() swapped them in
    save_checkpoint(again, tmp_path / "by_hand.pt")
    again.config = dataclasses.replace(again.config, epochs=6)
    continued = again.fit()

    make(3, str(tmp_path)).fit()  # the same first 3 epochs, with their checkpoint
    resumed = make(6)
    assert load_checkpoint(resumed, tmp_path / "last.pt") == 3
    hist = resumed.fit()
    pd.testing.assert_frame_equal(metrics(continued), metrics(hist))
    assert len(continued) == 6
    for a, b in zip(again.model.embeddings(), resumed.model.embeddings()):
        assert torch.equal(a, b)
    by_hand = read_checkpoint(tmp_path / "by_hand.pt")["model"]
    written = read_checkpoint(tmp_path / "last.pt")["model"]  # after epoch 3, by fit()
    assert all(torch.equal(by_hand[k], written[k]) for k in written)
