import copy

import pytest
import torch

from pyg_cf.errors import ConfigError
from pyg_cf.train.optim import LazyAdam


def _sparse(rows: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    return torch.sparse_coo_tensor(rows[None], values, (n, values.size(1)), check_invariants=True)


@pytest.mark.parametrize("chunk", [4096, 7])  # one chunk; several, the last one short
@pytest.mark.parametrize("rows_kind", ["random", "sorted", "sorted-distinct"])
@pytest.mark.parametrize("coalesced", [True, False])
def test_lazy_adam_matches_sparse_adam(coalesced, rows_kind, chunk, monkeypatch):
    """Repeated rows are summed (random, or sorted with repeats: not taken for distinct);
    distinct sorted ids of an uncoalesced gradient are used as they are."""
    monkeypatch.setattr("pyg_cf.train.optim._CHUNK_ROWS", chunk)
    gen = torch.Generator().manual_seed(0)
    n, d = 50, 4
    init = torch.randn(n, d, generator=gen, dtype=torch.float64)
    a = torch.nn.Parameter(init.clone())
    b = torch.nn.Parameter(init.clone())
    ref = torch.optim.SparseAdam([a], lr=0.01)
    ours = LazyAdam([b], lr=0.01)
    for _ in range(6):
        rows = torch.randint(0, n, (30,), generator=gen)  # duplicates: must be summed
        if rows_kind == "sorted":
            rows = rows.sort().values
        elif rows_kind == "sorted-distinct":
            rows = torch.randperm(n, generator=gen)[:30].sort().values
        vals = torch.randn(30, d, generator=gen, dtype=torch.float64)
        g = _sparse(rows, vals, n)
        a.grad = g.coalesce() if coalesced else g
        b.grad = g.coalesce() if coalesced else g
        ref.step()
        ours.step()
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(ours.state[b][key], ref.state[a][key])
    assert ours.state[b]["step"] == 6


def test_lazy_adam_touches_only_gradient_rows():
    w = torch.nn.Parameter(torch.ones(10, 3))
    opt = LazyAdam([w], lr=0.1)
    w.grad = _sparse(torch.tensor([2, 7]), torch.ones(2, 3), 10)
    opt.step()
    changed = (w.detach() != 1).any(dim=1).nonzero().flatten().tolist()
    assert changed == [2, 7]
    # first Adam step moves each coordinate by lr (m/sqrt(v) = 1 after bias correction)
    torch.testing.assert_close(w.detach()[2], torch.full((3,), 0.9), rtol=0, atol=1e-6)
    assert opt.state[w]["exp_avg"][0].abs().sum() == 0


def test_lazy_adam_dense_gradient_is_adam_with_sparse_adam_eps():
    torch.manual_seed(1)
    x = torch.randn(5, 3, dtype=torch.float64)
    a = torch.nn.Parameter(x.clone())
    b = torch.nn.Parameter(x.clone())
    ref = torch.optim.SparseAdam([a], lr=0.05)
    ours = LazyAdam([b], lr=0.05)
    for _ in range(4):
        g = torch.randn(5, 3, dtype=torch.float64)
        a.grad = g.to_sparse(sparse_dim=1)
        b.grad = g.clone()
        ref.step()
        ours.step()
    torch.testing.assert_close(b, a)


def test_lazy_adam_empty_gradient_and_none():
    w = torch.nn.Parameter(torch.ones(4, 2))
    opt = LazyAdam([w])
    opt.step()  # no grad: nothing happens, no state
    assert len(opt.state) == 0
    w.grad = _sparse(torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), 4)
    opt.step()
    assert torch.equal(w.detach(), torch.ones(4, 2))


def test_lazy_adam_state_loads_into_sparse_adam():
    w = torch.nn.Parameter(torch.randn(6, 2))
    ours = LazyAdam([w], lr=0.01)
    w.grad = _sparse(torch.tensor([1, 3]), torch.randn(2, 2), 6)
    ours.step()
    twin = torch.nn.Parameter(w.detach().clone())
    ref = torch.optim.SparseAdam([twin], lr=0.01)
    ref.load_state_dict(copy.deepcopy(ours.state_dict()))  # as from a file: no shared tensors
    # the loaded state carries on: one more step of each from it moves both alike
    grad = _sparse(torch.tensor([0, 3]), torch.randn(2, 2), 6)
    w.grad, twin.grad = grad, grad.clone()
    ours.step()
    ref.step()
    torch.testing.assert_close(twin, w)
    torch.testing.assert_close(ref.state[twin]["exp_avg_sq"], ours.state[w]["exp_avg_sq"])


_BAD_HYPERPARAMETERS = [
    ({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"),
    ({"lr": -0.1}, "lr must be .* got -0.1"),
    ({"lr": float("inf")}, "lr must be .* got inf"),  # was accepted
    ({"lr": float("nan")}, "lr must be .* got nan"),
    ({"lr": "0.1"}, "lr must be .* got '0.1'"),  # was a bare TypeError
    ({"lr": True}, "lr must be .* got True"),
    ({"betas": (1.0, 0.9)}, r"betas must both be numbers in \[0, 1\), got \(1.0, 0.9\)"),
    ({"betas": (0.9, -0.1)}, r"betas .* got \(0.9, -0.1\)"),
    ({"betas": (0.9, float("nan"))}, r"betas .* got \(0.9, nan\)"),
    ({"betas": (0.9,)}, r"betas must be a pair .* got \(0.9,\)"),  # was an IndexError
    ({"betas": (0.9, 0.99, 0.999)}, "betas must be a pair"),
    ({"betas": 0.9}, "betas must be a pair .* got 0.9"),
    ({"betas": "ab"}, "betas must be a pair .* got 'ab'"),
    ({"betas": (0.9, "0.99")}, "betas must both be numbers"),
    ({"eps": -1.0}, "eps must be a finite number > 0, got -1.0"),
    ({"eps": 0.0}, "eps must be .* got 0.0"),  # as SparseAdam: 0 / 0 where g = 0
    ({"eps": float("inf")}, "eps must be .* got inf"),
]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    _BAD_HYPERPARAMETERS,
    ids=[",".join(f"{k}={v!r}" for k, v in kw.items()) for kw, _ in _BAD_HYPERPARAMETERS],
)
def test_lazy_adam_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LazyAdam([torch.nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_lazy_adam_accepts_lists_and_numpy_numbers():
    np = pytest.importorskip("numpy")
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = LazyAdam([w], lr=np.float32(0.1), betas=[0, np.float64(0.5)], eps=1)
    group = opt.param_groups[0]
    assert group["betas"] == (0.0, 0.5) and group["lr"] == pytest.approx(0.1)
    assert type(group["lr"]) is float and type(group["eps"]) is float


def test_sparse_adam_checkpoint_resumes_in_lazy_adam():
    """Checkpoints written before LazyAdam (SparseAdam state) resume bit for bit."""
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(6, 2, dtype=torch.float64))
    b = torch.nn.Parameter(a.detach().clone())
    ref = torch.optim.SparseAdam([a], lr=0.01)
    grads = [
        _sparse(torch.tensor([1, 3]), torch.randn(2, 2, dtype=torch.float64), 6) for _ in range(3)
    ]
    a.grad = grads[0]
    ref.step()
    b.data.copy_(a.detach())
    ours = LazyAdam([b], lr=0.01)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))  # as read back from a file
    for g in grads[1:]:
        a.grad, b.grad = g, g
        ref.step()
        ours.step()
    torch.testing.assert_close(b, a)
    assert ours.state[b]["step"] == 3
