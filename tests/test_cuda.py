"""The package on a CUDA device: the same code paths as on the CPU, same numbers.

Skipped where no GPU is visible (CI has none); run on a GPU machine with
``python -m pytest -q tests/test_cuda.py``. Random streams differ between devices (a CUDA
``torch.Generator`` draws other numbers than a CPU one), so the checks compare what is
deterministic — propagation, losses on one batch, ranking metrics, checkpoints — and only
ask that training runs and learns where sampling is involved.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from pyg_cf.diagnostics.longtail import long_tail_recall
from pyg_cf.losses import get_loss, list_losses
from pyg_cf.losses.temperature import AdapTau, lambertw, lambertw_scipy
from pyg_cf.metrics import popularity_baseline
from pyg_cf.nn import GraphCF
from pyg_cf.train import TrainConfig, Trainer, seed_everything
from pyg_cf.train.checkpoint import load_checkpoint, load_weights, save_checkpoint
from tests.loader.conftest import random_data

# PYG_CF_TEST_DEVICE=cpu runs the same checks against the CPU (a dry run of this file where
# no GPU is visible)
DEVICE = os.environ.get("PYG_CF_TEST_DEVICE", "cuda")
KIND = torch.device(DEVICE).type
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA device"
)

MODELS = ["mf", "lightgcn", "svdpp-user", "svdpp-item"]


def _cfg(**kw):  # type: ignore[no-untyped-def]
    base = dict(epochs=1, batch_size=64, lr=0.01, progress=False, seed=0, patience=None)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("model", MODELS)
def test_model_forward_and_backward_match_cpu(model):
    data = random_data(seed=3)
    seed_everything(0)
    cpu = GraphCF.from_data(data, model, embedding_dim=16)
    gpu = copy.deepcopy(cpu).to(DEVICE)
    u_c, i_c = cpu()
    u_g, i_g = gpu()
    assert u_g.device.type == KIND and i_g.device.type == KIND
    torch.testing.assert_close(u_g.cpu(), u_c, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(i_g.cpu(), i_c, atol=1e-5, rtol=1e-4)
    ((u_c**2).sum() + (i_c**3).sum()).backward()
    ((u_g**2).sum() + (i_g**3).sum()).backward()
    for (name, p_c), p_g in zip(cpu.named_parameters(), gpu.parameters()):
        assert p_c.grad is not None and p_g.grad is not None, name
        torch.testing.assert_close(p_g.grad.cpu(), p_c.grad, atol=1e-4, rtol=1e-3)


def _assert_rows_and_table_grads_match(
    cpu: GraphCF,
    gpu: GraphCF,
    rows_c: tuple[torch.Tensor, torch.Tensor],
    rows_g: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """The device's rows equal the CPU's, and so do the tables' gradients of one loss."""
    (u_c, i_c), (u_g, i_g) = rows_c, rows_g
    assert u_g.device.type == KIND
    torch.testing.assert_close(u_g.cpu(), u_c, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(i_g.cpu(), i_c, atol=1e-5, rtol=1e-4)
    ((u_c**2).sum() + i_c.sin().sum()).backward()
    ((u_g**2).sum() + i_g.sin().sum()).backward()
    for p_c, p_g in zip(cpu.parameters(), gpu.parameters()):
        assert p_c.grad is not None and p_g.grad is not None
        torch.testing.assert_close(p_g.grad.cpu(), p_c.grad, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("gpu_slices", [None, True])  # a GPU's default: no slices
@pytest.mark.parametrize("kind", ["lightgcn", "svdpp-user", "svdpp-item"])
def test_embed_rows_match_cpu(kind, gpu_slices, monkeypatch):
    """The batch-rows path of a training step (``GraphCF.embed_rows``: layer sums at the
    rows, Horner backward with ``index_add``, the last hop from row slices on the CPU;
    SVD++: a row slice of its product on the CPU, the model call on a GPU unless told to
    slice) gives the CPU's rows and table gradients."""
    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", 1.0)  # the CPU slices
    data = random_data(seed=3)
    seed_everything(0)
    layers = {"num_layers": 3} if kind == "lightgcn" else {}
    cpu = GraphCF.from_data(data, kind, embedding_dim=16, **layers)
    gpu = copy.deepcopy(cpu).to(DEVICE)
    gpu.slice_rows = gpu_slices
    users = torch.randint(cpu.num_users, (50,))
    items = torch.randint(cpu.num_items, (70,))
    u_c, i_c = cpu.embed_rows(users, items)
    u_g, i_g = gpu.embed_rows(users.to(DEVICE), items.to(DEVICE))
    _assert_rows_and_table_grads_match(cpu, gpu, (u_c, i_c), (u_g, i_g))


@pytest.mark.parametrize("kind", ["lightgcn", "svdpp-user", "svdpp-item"])
def test_embed_rows_over_a_sampled_subgraph_match_cpu(kind, monkeypatch):
    """A sampled step's batch rows (``GraphCF.embed_rows`` with the subgraph's arguments:
    the subgraph's cached CSR matrices, zero-weight edges kept on a GPU, left out on the
    CPU) give the CPU's rows and table gradients."""
    from pyg_cf.loader import BipartiteNeighborSampler

    monkeypatch.setattr("pyg_cf.nn.spmm.ROWS_MAX_SHARE", 1.0)
    data = random_data(seed=3)
    seed_everything(0)
    layers = {"num_layers": 3} if kind == "lightgcn" else {}
    cpu = GraphCF.from_data(data, kind, embedding_dim=16, **layers)
    gpu = copy.deepcopy(cpu).to(DEVICE)
    ei = data["user", "rates", "item"].edge_index
    sampler = BipartiteNeighborSampler(
        ei, [3, 3, 3], num_users=cpu.num_users, num_items=cpu.num_items
    )
    seeds_u, seeds_i = torch.arange(0, cpu.num_users, 3), torch.arange(0, cpu.num_items, 4)
    sub = sampler.sample(seeds_u, seeds_i, torch.Generator().manual_seed(0))
    inputs = {
        "edge_index": sub.edge_index,
        "user_nodes": sub.user_id,
        "item_nodes": sub.item_id,
        "edge_weight": (sub.edge_weight, sub.rev_edge_weight),
    }
    users, items = sub.local_users(seeds_u), sub.local_items(seeds_i)
    u_c, i_c = cpu.embed_rows(users, items, **inputs)
    moved = {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else tuple(w.to(DEVICE) for w in v)
             for k, v in inputs.items()}  # fmt: skip
    u_g, i_g = gpu.embed_rows(users.to(DEVICE), items.to(DEVICE), **moved)
    _assert_rows_and_table_grads_match(cpu, gpu, (u_c, i_c), (u_g, i_g))


def test_an_in_batch_step_with_collision_masking_reads_the_host_once_on_a_gpu():
    """The collision mask is built with fixed shapes on a GPU and its count stays on the
    device (read once an epoch): the step's one host read is the loss. On the CPU the
    mask's gather reads its look-up count too, and the last hop's two row slices their
    sizes (free there)."""
    from tests.host_syncs import HostSyncs

    data = random_data(num_items=300, num_edges=3000, seed=4)
    seed_everything(0)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=16)
    tr = Trainer(model, data, get_loss("ssm"), _cfg(batch_size=128, device=DEVICE))
    it = iter(tr.batches())
    tr.train_step(next(it))
    with HostSyncs() as s:
        tr.train_step(next(it))
    expected = ["_local_scalar_dense"] * (1 if KIND == "cuda" else 4)
    assert s.syncs == expected, s.syncs


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_gives_the_cpu_value_on_one_batch(name):
    """One batch drawn on the CPU, moved to CUDA: the loss and its gradients agree."""
    data = random_data(seed=4)
    seed_everything(0)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=16)
    loss = get_loss(name)
    tr = Trainer(model, data, loss, _cfg())
    idx = next(iter(tr.batches()))
    batch, _ = tr.make_batch(idx)
    value_cpu = loss(batch)
    grad_cpu = torch.autograd.grad(value_cpu, batch.user_emb, allow_unused=True)[0]

    moved = {}
    for f in batch.__dataclass_fields__:
        v = getattr(batch, f)
        if isinstance(v, torch.Tensor):
            v = v.detach().to(DEVICE).requires_grad_(v.requires_grad)
        elif hasattr(v, "to"):  # the training-pair index of losses that mask positives
            v = v.to(DEVICE)
        moved[f] = v
    gbatch = type(batch)(**moved)
    gloss = copy.deepcopy(loss).to(DEVICE)
    value_gpu = gloss(gbatch)
    assert value_gpu.device.type == KIND
    assert torch.isfinite(value_gpu)
    torch.testing.assert_close(value_gpu.cpu(), value_cpu.detach(), atol=1e-4, rtol=1e-4)
    if grad_cpu is not None and gbatch.user_emb.requires_grad:
        grad_gpu = torch.autograd.grad(value_gpu, gbatch.user_emb, allow_unused=True)[0]
        assert grad_gpu is not None
        torch.testing.assert_close(grad_gpu.cpu(), grad_cpu, atol=1e-4, rtol=1e-3)


def test_softmax_masking_with_a_cpu_pair_index_moves_it_once():
    """A ``positives`` index built on the CPU and given to the loss: the masked full softmax
    on the device equals the CPU value, and the index is moved once, not at every step."""
    from pyg_cf.data.graph import train_edges
    from pyg_cf.data.pairs import UserItemIndex

    data = random_data(seed=4)
    seed_everything(0)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=16)
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    index = UserItemIndex(train_edges(data), nu, ni)
    loss = get_loss("softmax", mask_positives=True, positives=index)
    tr = Trainer(model, data, loss, _cfg(sampling="user_blocks"))
    batch, _ = tr.make_batch(next(iter(tr.batches())))
    value_cpu = loss(batch)
    fields = batch.__dataclass_fields__
    gbatch = type(batch)(
        **{
            f: getattr(batch, f).detach().to(DEVICE)
            if isinstance(getattr(batch, f), torch.Tensor)
            else getattr(batch, f)
            for f in fields
        }
    )
    gloss = get_loss("softmax", mask_positives=True, positives=index)
    torch.testing.assert_close(gloss(gbatch).cpu(), value_cpu.detach(), atol=1e-4, rtol=1e-4)
    moved = gloss.positives
    assert moved.keys.device.type == KIND
    gloss(gbatch)
    assert gloss.positives is moved


@pytest.mark.parametrize(
    ("sampling", "mode", "loss", "kwargs"),
    [
        ("edge", "full", "bpr", {}),
        ("user", "full", "bpr", {"reject_positives": True}),  # the LightGCN + BPR cell's
        ("user", "full", "bce", {"num_negatives": 4, "reject_positives": True}),
        ("user_blocks", "full", "softmax", {}),
        ("edge", "full", "ssm", {}),
        ("edge", "full", "ccl", {"num_negatives": 32, "shared_negatives": 4}),
        ("edge", "sampled", "ssm", {}),
        ("edge", "sampled", "bpr", {}),
    ],
)
def test_training_on_cuda_learns(sampling, mode, loss, kwargs):
    data = random_data(seed=0, num_edges=1500)
    seed_everything(0)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=16)
    cfg = _cfg(
        epochs=10, batch_size=128, lr=0.02, device=DEVICE, sampling=sampling, mode=mode,
        num_neighbors=(5, 5, 5), eval_every=10,
    )  # fmt: skip
    tr = Trainer(model, data, get_loss(loss, **kwargs), cfg)
    hist = tr.fit()
    assert next(model.parameters()).device.type == KIND
    pop = popularity_baseline(data, ks=(20,))
    assert hist["test_recall@20"].iloc[-1] > pop["recall@20"] + 0.05


def test_evaluation_matches_cpu():
    data = random_data(seed=5, num_edges=1200)
    seed_everything(0)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=16)
    tr = Trainer(model, data, get_loss("bpr"), _cfg(epochs=3))
    tr.fit()
    cpu = {s: tr.evaluate("test", s) for s in ("ip", "cos")}
    gpu_tr = Trainer(copy.deepcopy(model), data, get_loss("bpr"), _cfg(device=DEVICE))
    for s in ("ip", "cos"):
        assert gpu_tr.evaluate("test", s) == pytest.approx(cpu[s], abs=1e-6)
    tail_cpu = long_tail_recall(model, data, k=20, groups=4)
    tail_gpu = long_tail_recall(gpu_tr.model, data, k=20, groups=4)
    assert tail_gpu.recall == pytest.approx(tail_cpu.recall, abs=1e-6)


def _small_lightgcn(data, loss: str, **cfg):  # type: ignore[no-untyped-def]
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=8)
    return Trainer(model, data, get_loss(loss), _cfg(**cfg))


def test_checkpoint_moves_between_cuda_and_cpu(tmp_path):
    data = random_data(seed=6)
    seed_everything(0)
    gpu = _small_lightgcn(data, "ssm", epochs=2, device=DEVICE)
    gpu.fit()
    path = tmp_path / "last.pt"
    save_checkpoint(gpu, path)
    cpu = _small_lightgcn(data, "ssm")
    assert load_checkpoint(cpu, path) == 2
    # a checkpoint holds the last epoch's weights (the run resumes from them), which fit()
    # keeps aside when it restores the best ones; load_weights(which="best") reads those
    last = gpu._last_state["model"] if gpu._last_state is not None else gpu.model.state_dict()
    for name, p_c in cpu.model.state_dict().items():
        assert p_c.device.type == "cpu"
        torch.testing.assert_close(p_c, last[name].detach().cpu())
    best = _small_lightgcn(data, "ssm")
    load_weights(best, path, which="best")
    for p_g, p_b in zip(gpu.model.parameters(), best.model.parameters()):
        torch.testing.assert_close(p_b, p_g.detach().cpu())
    back = _small_lightgcn(data, "ssm", epochs=3, device=DEVICE)
    assert load_checkpoint(back, path) == 2
    assert len(back.fit()) == 3  # resumes on CUDA: one more epoch


def test_resume_with_user_dropout_repeats_the_uninterrupted_run(tmp_path):
    """User dropout on the GPU draws from the trainer device's CUDA generator, which the
    checkpoint saves (that device's only) and a resume restores: the resumed run's dropout
    masks, and so its weights, are the uninterrupted run's (up to the order of atomic adds)."""
    data = random_data(seed=8, num_edges=1200)

    def trainer(epochs: int, ckpt):  # type: ignore[no-untyped-def]
        model = GraphCF.from_data(data, "mf", embedding_dim=16)
        cfg = _cfg(epochs=epochs, device=DEVICE, user_dropout=0.3, checkpoint_dir=ckpt)
        return Trainer(model, data, get_loss("ssm"), cfg)

    seed_everything(0)
    full = trainer(4, None)
    full.fit()
    seed_everything(0)
    trainer(2, str(tmp_path)).fit()
    seed_everything(123)  # disturb every random state the resumed run could inherit
    resumed = trainer(4, str(tmp_path / "more"))
    assert load_checkpoint(resumed, tmp_path / "last.pt") == 2
    resumed.fit()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_lambertw_on_cuda_matches_scipy():
    x = torch.linspace(-0.3678, 20.0, 1001, device=DEVICE, dtype=torch.float64)
    w = lambertw(x)
    assert w.device.type == KIND
    torch.testing.assert_close(w.cpu(), lambertw_scipy(x).cpu(), atol=1e-9, rtol=1e-9)


def test_adaptau_schedule_on_cuda():
    data = random_data(seed=7, num_edges=1200)
    seed_everything(0)
    model = GraphCF.from_data(data, "mf", embedding_dim=16)
    sched = AdapTau(warmup_epochs=1)
    cfg = _cfg(epochs=3, batch_size=128, device=DEVICE, eval_every=3)
    tr = Trainer(model, data, get_loss("ssm", similarity="cos"), cfg, callbacks=[sched])
    hist = tr.fit()
    assert sched.user_tau is not None and sched.user_tau.device.type == KIND
    assert torch.isfinite(sched.user_tau).all() and (sched.user_tau > 0).all()
    assert len(hist) == 3


# CUDA graph replay of the training step (TrainConfig.cuda_graphs): the same steps as eager
# execution — same sampled batches, same kernels — so the same weights up to atomic-add
# rounding. 'edge' epochs end with a short batch, which runs eagerly between replays.
GRAPH_CASES = [
    ("lightgcn", "bpr", {"reject_positives": True}, "user", 0.0),  # the BPR cell's recipe
    ("lightgcn", "bce", {"num_negatives": 4, "reject_positives": True}, "user", 0.0),
    ("lightgcn", "ssm", {"similarity": "cos"}, "edge", 0.0),
    ("lightgcn", "ccl", {"num_negatives": 32, "shared_negatives": 4}, "edge", 0.0),
    ("mf", "ssm", {}, "edge", 0.1),  # user dropout: RNG inside the graph
]


@pytest.mark.skipif(KIND != "cuda", reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize(("model_name", "loss", "kwargs", "sampling", "dropout"), GRAPH_CASES)
def test_cuda_graph_steps_match_eager_steps(model_name, loss, kwargs, sampling, dropout):
    _graph_steps_match_eager(
        random_data(seed=5, num_edges=1500), model_name, loss, kwargs, sampling, dropout
    )


@pytest.mark.skipif(KIND != "cuda", reason="CUDA graphs need a CUDA device")
def test_cuda_graph_steps_on_the_batch_rows_path_match_eager_steps():
    """With more items than a batch gathers, full-graph steps take ``GraphCF.embed_rows``
    (``Trainer.rows_only``); captured, they replay as eager steps do."""
    data = random_data(num_items=600, num_edges=3000, seed=5)
    assert 2 * 128 <= data["item"].num_nodes
    _graph_steps_match_eager(data, "lightgcn", "bpr", {"reject_positives": True}, "user", 0.0)


def _graph_steps_match_eager(data, model_name, loss, kwargs, sampling, dropout):  # type: ignore[no-untyped-def]
    def run(graphs: bool):  # type: ignore[no-untyped-def]
        seed_everything(0)
        model = GraphCF.from_data(data, model_name, embedding_dim=16)
        cfg = _cfg(
            epochs=3, batch_size=128, device=DEVICE, sampling=sampling, l2_reg=1e-4,
            eval_every=3, cuda_graphs=graphs, user_dropout=dropout,
        )  # fmt: skip
        tr = Trainer(model, data, get_loss(loss, **kwargs), cfg)
        return tr, tr.fit()

    eager, h_eager = run(False)
    graph, h_graph = run(True)
    g = graph._graphed
    assert g is not None and not g.failed, "capture failed: see the logged warning"
    assert g.captures == 3 and g.replays > 0  # one capture per epoch
    if dropout:  # the dropout masks come from the graph's RNG offsets: same law, not bits
        assert h_graph["loss"].iloc[-1] < h_graph["loss"].iloc[0]
        return
    for column in ("loss", "l2"):  # the L2 penalty is read from the graph's outputs too
        torch.testing.assert_close(
            torch.tensor(h_graph[column].to_list()),
            torch.tensor(h_eager[column].to_list()),
            rtol=1e-4,
            atol=1e-5,
        )
    for p_e, p_g in zip(eager.model.parameters(), graph.model.parameters()):
        torch.testing.assert_close(p_g, p_e, rtol=1e-3, atol=1e-4)
    assert h_graph["test_recall@20"].iloc[-1] == pytest.approx(
        h_eager["test_recall@20"].iloc[-1], abs=0.02
    )


@pytest.mark.skipif(KIND != "cuda", reason="CUDA graphs need a CUDA device")
def test_cuda_graphs_resume_from_an_eager_checkpoint(tmp_path):
    """A checkpoint of an eager run (non-capturable Adam state) continues under graphs."""
    data = random_data(seed=6)
    seed_everything(0)
    first = _small_lightgcn(data, "bpr", epochs=1, device=DEVICE, sampling="user")
    first.fit()
    save_checkpoint(first, tmp_path / "last.pt")
    second = _small_lightgcn(
        data, "bpr", epochs=3, device=DEVICE, sampling="user", cuda_graphs=True
    )
    assert load_checkpoint(second, tmp_path / "last.pt") == 1
    hist = second.fit()
    assert len(hist) == 3 and second._graphed is not None
    assert not second._graphed.failed and second._graphed.replays > 0


@pytest.mark.skipif(KIND != "cuda", reason="CUDA graphs need a CUDA device")
def test_cuda_graphs_on_a_device_other_than_the_current_one():
    """TrainConfig(device='cuda:N'), current device 0: warm-up, capture and replay run on
    device N's streams (on one GPU, N = 0: the explicit index is still honoured)."""
    data = random_data(seed=5, num_edges=1500)
    dev = f"cuda:{torch.cuda.device_count() - 1}"
    torch.cuda.set_device(0)

    def run(graphs: bool):  # type: ignore[no-untyped-def]
        seed_everything(0)
        model = GraphCF.from_data(data, "lightgcn", embedding_dim=16)
        cfg = _cfg(
            epochs=2, batch_size=128, device=dev, sampling="user", l2_reg=1e-4,
            eval_every=2, cuda_graphs=graphs,
        )  # fmt: skip
        tr = Trainer(model, data, get_loss("bpr", reject_positives=True), cfg)
        return tr, tr.fit()

    eager, h_eager = run(False)
    graph, h_graph = run(True)
    assert torch.cuda.current_device() == 0
    g = graph._graphed
    assert g is not None and not g.failed and g.captures == 2 and g.replays > 0
    assert g.device == torch.device(dev)
    torch.testing.assert_close(
        torch.tensor(h_graph["loss"].to_list()), torch.tensor(h_eager["loss"].to_list()),
        rtol=1e-4, atol=1e-5,
    )  # fmt: skip
    for p_e, p_g in zip(eager.model.parameters(), graph.model.parameters()):
        assert p_g.device == torch.device(dev)
        torch.testing.assert_close(p_g, p_e, rtol=1e-3, atol=1e-4)


def test_evaluation_reuses_the_device_indexes_of_host_pairs(monkeypatch):
    """Data on the CPU, embeddings on the GPU: the pairs are copied and sorted once."""
    from pyg_cf.data.pairs import UserItemIndex
    from pyg_cf.metrics import evaluate

    data = random_data(seed=5, num_edges=1200)
    u = torch.randn(data["user"].num_nodes, 8, device=DEVICE)
    i = torch.randn(data["item"].num_nodes, 8, device=DEVICE)
    built = [0]
    init = UserItemIndex.__init__

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built[0] += 1
        init(self, *args, **kwargs)

    monkeypatch.setattr(UserItemIndex, "__init__", counting)
    first = evaluate(u, i, data, "test")
    built[0] = 0
    assert evaluate(u, i, data, "test") == first and built[0] == 0
    assert evaluate(u.cpu(), i.cpu(), data, "test") == pytest.approx(first, abs=1e-6)
