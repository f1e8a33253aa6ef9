import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.distributed as dist

from pyg_cf.data import from_dataframe
from pyg_cf.errors import ConfigError
from pyg_cf.losses import LossBatch, get_loss
from pyg_cf.losses.base import negative_scores, negative_sets
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer, load_checkpoint, seed_everything
from pyg_cf.train.distributed import (
    DistributedTrainer,
    init_distributed,
    run,
    shard_rows,
    slice_loss_batch,
)
from tests.conftest import ROOT, data_dir


def clustered(n_users=40, n_items=30, n=900, seed=0):
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(n_users, (n,), generator=g)
    half = n_items // 2
    items = torch.randint(half, (n,), generator=g) + (users % 2) * half
    return from_dataframe(pd.DataFrame({"user": users.numpy(), "item": items.numpy()}), seed=0)


def test_shards_partition_the_batch():
    n, w = 11, 3
    parts = [shard_rows(n, r, w) for r in range(w)]
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    assert [p.numel() for p in parts] == [4, 4, 3]


def test_slice_loss_batch():
    b, d, m = 6, 4, 2
    batch = LossBatch(
        users=torch.arange(b),
        pos_items=torch.arange(b) + 10,
        user_emb=torch.randn(b, d),
        pos_emb=torch.randn(b, d),
        neg_items=torch.randint(5, (b, m)),
        neg_emb=torch.randn(b, m, d),
        all_item_emb=torch.randn(b, d),  # same length as the batch on purpose
        in_batch_collision=torch.rand(b, b) > 0.5,
    )
    rows = torch.tensor([1, 4])
    s = slice_loss_batch(batch, rows)
    assert s.users.tolist() == [1, 4] and s.neg_emb.shape == (2, m, d)
    assert torch.equal(s.in_batch_collision, batch.in_batch_collision[rows][:, rows])
    assert s.all_item_emb is batch.all_item_emb


@pytest.mark.parametrize(("b", "g", "w"), [(10, 2, 2), (12, 4, 2), (16, 4, 2), (11, 3, 3)])
def test_shards_score_each_row_against_its_own_set_of_shared_negatives(b, g, w):
    # G sets laid over blocks of rows: a shard r, r + W, ... used to keep all G sets and
    # lay them out again over its own rows, scoring some rows against another block's set
    # (10 rows, 2 sets) or failing (12 rows, 4 sets: "4 sets ... do not tile")
    m, d = 3, 4
    n_sets, _ = negative_sets(b, g)
    batch = LossBatch(
        users=torch.arange(b),
        pos_items=torch.arange(b),
        user_emb=torch.randn(b, d),
        pos_emb=torch.randn(b, d),
        neg_emb=torch.randn(n_sets, m, d),
    )
    want = negative_scores(batch.user_emb, batch.neg_emb)
    for r in range(w):
        rows = shard_rows(b, r, w)
        for shard in ((r, w), None):
            s = slice_loss_batch(batch, rows, shard)
            torch.testing.assert_close(negative_scores(s.user_emb, s.neg_emb), want[rows])
    if (b, g, w) == (16, 4, 2):  # W divides the block of 4 rows: the sets are kept as they are
        assert slice_loss_batch(batch, shard_rows(b, 0, w), (0, w)).neg_emb is batch.neg_emb


def test_needs_an_initialised_process_group():
    data = clustered()
    with pytest.raises(ConfigError, match="torchrun"):
        DistributedTrainer(GraphCF.from_data(data, "mf", embedding_dim=4), data, get_loss("bpr"))


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()


def _cfg(**kw):
    base = dict(epochs=3, batch_size=64, lr=0.02, seed=1, patience=None, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_one_rank_equals_plain_trainer(one_process_group):
    data = clustered()
    out = []
    for cls in (Trainer, DistributedTrainer):
        seed_everything(0)
        m = GraphCF.from_data(data, "lightgcn", embedding_dim=8)
        cfg = _cfg(extra_test_similarities=("cos",))
        hist = cls(m, data, get_loss("bpr"), cfg).fit()
        out.append((m.embeddings()[0], hist))
    assert torch.equal(out[0][0], out[1][0])
    for key in ("loss", "val_ndcg@20", "test_recall@20", "val_cos_ndcg@20", "test_cos_recall@20"):
        assert out[0][1][key].tolist() == pytest.approx(out[1][1][key].tolist(), abs=1e-6)


def test_evaluating_again_sorts_no_pairs_again(one_process_group, monkeypatch):
    """Each evaluation used to copy the held-out and training pairs and cut this rank's
    share anew, so their sorted indexes (cached per source tensor) were rebuilt every time;
    now a second evaluation builds none, and gives the same metrics."""
    from pyg_cf.data import pairs

    data = clustered()
    tr = DistributedTrainer(GraphCF.from_data(data, "mf", embedding_dim=4), data,
                            get_loss("bpr"), _cfg())  # fmt: skip
    first = {s: tr.evaluate(s) for s in ("val", "test")}
    built = []
    init = pairs.UserItemIndex.__init__

    def spy(self, *args, **kwargs):
        built.append(args[0].shape)
        init(self, *args, **kwargs)

    monkeypatch.setattr(pairs.UserItemIndex, "__init__", spy)
    again = {s: tr.evaluate(s) for s in ("val", "test")}
    assert again == first
    assert built == []
    data["user", "rates", "item"].test_edge_index = (
        data["user", "rates", "item"].test_edge_index[:, :-1].clone()
    )  # new held-out pairs: a new share and index
    tr.evaluate("test")
    assert len(built) == 1


def test_one_rank_trains_a_loss_parameter_like_the_plain_trainer(one_process_group):
    data = clustered()
    learned = []
    for cls in (Trainer, DistributedTrainer):
        seed_everything(0)
        loss = get_loss("bce", learn_bias=True)
        cls(GraphCF.from_data(data, "lightgcn", embedding_dim=8), data, loss, _cfg()).fit()
        learned.append(float(loss.logit_bias))
    assert learned[0] != 0.0 and learned[1] == pytest.approx(learned[0], abs=1e-6)


def test_sampled_mode_resumes_exactly(one_process_group, tmp_path):
    data = clustered()
    cfg = dict(mode="sampled", num_neighbors=(4, 2), checkpoint_dir=str(tmp_path))

    def make(epochs):
        seed_everything(0)
        m = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=2)
        return DistributedTrainer(m, data, get_loss("bpr"), _cfg(epochs=epochs, **cfg))

    full = make(3)
    full.fit()
    part = make(2)
    part.fit()
    resumed = make(3)
    assert load_checkpoint(resumed, tmp_path / "last.pt") == 2
    resumed.fit()
    assert torch.equal(full.model.embeddings()[0], resumed.model.embeddings()[0])


def test_sampled_mode_restarts_the_global_generator_from_the_shared_stream(one_process_group):
    """Ranks draw unequal amounts from torch's global generator (user dropout on shards of
    unequal size) and a checkpoint keeps one rank's state: each step's global state must
    follow from the shared generator alone, whatever the rank drew before."""
    data = clustered()
    seed_everything(0)
    m = GraphCF.from_data(data, "lightgcn", embedding_dim=8, num_layers=2)
    cfg = _cfg(mode="sampled", num_neighbors=(4, 2), user_dropout=0.3)
    tr = DistributedTrainer(m, data, get_loss("bpr"), cfg)
    idx = next(iter(tr.batches()))
    states = []
    for disturb in (1, 2):
        tr.generator.manual_seed(7)
        torch.manual_seed(disturb)  # another history of global draws
        tr.collate(idx)
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1])


def test_refuses_time_budget(one_process_group):
    data = clustered()
    m = GraphCF.from_data(data, "mf", embedding_dim=4)
    with pytest.raises(ConfigError, match="time_budget_s"):
        DistributedTrainer(m, data, get_loss("bpr"), _cfg(time_budget_s=5.0))


@pytest.mark.skipif(data_dir("ml-1m") is None, reason="ML-1M not present")
@pytest.mark.parametrize(
    "loss",
    [
        ["bpr"],
        ["ssm", "--loss-arg", "negatives=sampled", "--loss-arg", "num_negatives=16"],
        ["ssm"],  # in-batch, collisions masked
        ["bsl", "--loss-arg", "form=multi"],  # in-batch, every positive of the batch
    ],
)
def test_two_gloo_processes_match_single_process_on_ml1m(tmp_path, loss):
    """torchrun, 2 CPU processes (gloo), LightGCN on ML-1M, a few steps of an odd global
    batch (unequal shards): same embeddings, metrics and logged loss as one process (the
    ranks' losses are weighted by their shares: a plain average was off by ~1e-4 with
    SSM on sampled negatives). In-batch SSM and BSL too: each rank scores its rows against
    every positive of the global batch (``DistributedTrainer.whole_batch_rows``); they used
    to see only the rank's rows."""
    args = [
        "--dataset", "ml-1m", "--model", "lightgcn", "--layers", "2", "--dim", "16",
        "--loss", *loss, "--batch-size", "63", "--lr", "5e-3", "--max-steps", "8",
        "--l2", "1e-4", "--seed", "3",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "pyg_cf.train.distributed", *args,
        "--output", str(tmp_path / "ddp.json"), "--save-embeddings", str(tmp_path / "ddp.pt"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert ddp["world_size"] == 2

    single = run([*args, "--save-embeddings", str(tmp_path / "one.pt")])
    assert single["world_size"] == 1
    e1, e2 = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "ddp.pt")
    for side in ("user", "item"):
        torch.testing.assert_close(e2[side], e1[side], rtol=1e-4, atol=1e-5)
    for key, value in single["final"].items():
        assert ddp["final"][key] == pytest.approx(value, abs=1e-5), key
    for column in ("loss", "l2"):
        assert ddp["history"][0][column] == pytest.approx(single["history"][0][column], rel=1e-6)


def test_final_metrics_describe_the_saved_best_validation_model(tmp_path, monkeypatch):
    # "final" used to be the last epoch's history row, while fit() restores the best
    # validation weights and --save-embeddings writes those
    from pyg_cf import datasets
    from pyg_cf.data.synthetic import power_law_bipartite
    from pyg_cf.metrics import evaluate

    data = power_law_bipartite(60, 40, val_ratio=0.15, test_ratio=0.2, seed=1)
    monkeypatch.setattr(datasets, "load", lambda *a, **k: data)
    out = tmp_path / "emb.pt"
    summary = run(
        ["--model", "mf", "--dim", "8", "--epochs", "12", "--lr", "0.5", "--batch-size", "64",
         "--save-embeddings", str(out)]
    )  # fmt: skip
    hist = pd.DataFrame(summary["history"])
    best = hist.loc[hist["val_ndcg@20"].idxmax()]
    assert int(best["epoch"]) < 12  # the case at hand: best validation before the last epoch
    emb = torch.load(out)
    saved = evaluate(emb["user"], emb["item"], data, "test", ks=(20,))
    assert summary["final"]["test_recall@20"] == pytest.approx(saved["recall@20"], abs=1e-6)
    assert summary["final"]["val_ndcg@20"] == pytest.approx(float(best["val_ndcg@20"]), abs=1e-6)


class _Stop(Exception):
    """Raised by the Trainer spy of :func:`_cli_loss`: the run ends before training."""


def _cli_loss(monkeypatch, entry, argv):
    """The loss ``entry`` (a CLI's ``main``) hands to its Trainer, on tiny synthetic data
    and without training."""
    from pyg_cf import datasets
    from pyg_cf.data.synthetic import power_law_bipartite

    seen = []

    def spy(self, model, data, loss, config=None, callbacks=None):
        seen.append(loss)
        raise _Stop

    monkeypatch.setattr(
        datasets,
        "load",
        lambda *a, **k: power_law_bipartite(30, 40, num_edges=300, test_ratio=0.2, seed=0),
    )
    monkeypatch.setattr(Trainer, "__init__", spy)
    with pytest.raises(_Stop):
        entry(argv)
    (loss,) = seen
    return loss


# docs/quickstart.rst writes negatives=sampled, docs/scaling.md negatives='"sampled"'
@pytest.mark.parametrize("value", ["sampled", '"sampled"'])
def test_cli_reads_a_loss_arg_like_the_main_cli(monkeypatch, value):
    # a value that is not JSON used to fail with a raw JSONDecodeError traceback here,
    # while the main CLI takes it as a string
    from pyg_cf import __main__ as cli
    from pyg_cf.train.distributed import main

    args = ["--model", "mf", "--loss", "ssm", "--loss-arg", f"negatives={value}"]
    args += ["--loss-arg", "num_negatives=8"]
    ours = _cli_loss(monkeypatch, main, args)
    theirs = _cli_loss(monkeypatch, cli.main, ["train", *args, "--quiet"])
    for loss in (ours, theirs):
        assert (loss.negatives, loss.num_negatives) == ("sampled", 8)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--model", "mf", "--layers", "2"], "--layers only applies to --model lightgcn"),
        (["--alpha0", "0"], "--alpha0 only applies to --model svdpp-user or svdpp-item"),
        (["--loss", "nope"], "unknown loss 'nope'"),
        (["--loss-arg", "tau"], "--loss-arg expects KEY=VALUE, got 'tau'"),
        (["--loss", "ssm", "--loss-arg", "tau=abc"], "argument tau='abc' must be a number"),
    ],
)
def test_cli_errors_are_one_line_and_come_before_the_data(monkeypatch, capsys, extra, message):
    # a PygCFError used to end in a traceback, after loading the data; --layers with
    # --model mf was ignored silently
    from pyg_cf import datasets
    from pyg_cf.train.distributed import main

    def load(*args, **kwargs):
        raise AssertionError("the data set was loaded before the settings were checked")

    monkeypatch.setattr(datasets, "load", load)
    assert main(extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_cli_refuses_an_unknown_model_like_the_main_cli(capsys):
    from pyg_cf.train.distributed import main

    with pytest.raises(SystemExit) as e:
        main(["--model", "foo"])
    assert e.value.code == 2
    assert "argument --model: invalid choice: 'foo'" in capsys.readouterr().err


def test_cli_model_flags_reach_the_model(monkeypatch):
    seen = []
    build = GraphCF.from_data.__func__

    def spy(cls, data, model="lightgcn", **kw):
        seen.append((model, {k: v for k, v in kw.items() if k != "embedding_dim"}))
        return build(cls, data, model, **kw)

    monkeypatch.setattr(GraphCF, "from_data", classmethod(spy))
    from pyg_cf.train.distributed import main

    for argv in ([], ["--layers", "2"], ["--model", "svdpp-item", "--alpha0", "0"]):
        _cli_loss(monkeypatch, main, argv)
    assert seen == [
        ("lightgcn", {"num_layers": 3}),
        ("lightgcn", {"num_layers": 2}),
        ("svdpp-item", {"alpha0": 0.0}),
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the check is for machines without CUDA")
def test_nccl_without_cuda_is_a_clear_error(monkeypatch):
    """It raised an AttributeError from torch.cuda.set_device that never named the backend."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="backend 'nccl' needs CUDA"):
        init_distributed(backend="nccl")


def test_a_loss_subclass_with_its_own_forward_keeps_it(one_process_group):
    """An SSM subclass whose forward adds a term inherits row_mean but not the right to
    be replaced by the mean of per_row: the distributed step calls its forward, as one
    process does (the same embeddings on a one-rank group)."""
    from pyg_cf.losses.softmax import SampledSoftmaxLoss

    class WithTerm(SampledSoftmaxLoss):
        def forward(self, batch):  # type: ignore[no-untyped-def]
            return super().forward(batch) + 10 * (batch.user_emb - batch.pos_emb).pow(2).mean()

    data = clustered()
    out = []
    for cls in (Trainer, DistributedTrainer):
        seed_everything(0)
        m = GraphCF.from_data(data, "lightgcn", embedding_dim=8)
        tr = cls(m, data, WithTerm(), _cfg(epochs=2))
        if cls is DistributedTrainer:
            assert not tr.whole_batch_rows
        tr.fit()
        out.append(m.embeddings()[0])
    torch.testing.assert_close(out[1], out[0], rtol=1e-6, atol=1e-7)
