import math

import pytest
import torch
import torch.nn.functional as F

from pyg_cf.errors import ConfigError
from pyg_cf.losses import LossBatch, get_loss
from pyg_cf.losses.alignment import DirectAULoss, uniformity

D = torch.float64


def unit(v):
    n = math.sqrt(sum(float(x) ** 2 for x in v))
    return [float(x) / n for x in v]


def sqdist(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


def ref_uniformity(x):
    z = [unit(v) for v in x]
    vals = [
        math.exp(-2 * sqdist(z[i], z[j])) for i in range(len(z)) for j in range(len(z)) if i != j
    ]
    return math.log(sum(vals) / len(vals))


def ref_directau(u, p, gamma):
    align = sum(sqdist(unit(a), unit(b)) for a, b in zip(u, p)) / len(u)
    return align + gamma * (ref_uniformity(u) + ref_uniformity(p)) / 2


def make(B=5, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, d, generator=g, dtype=D), torch.randn(B, d, generator=g, dtype=D)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 5.0])
def test_directau_matches_reference(gamma):
    u, p = make()
    loss = get_loss("directau", gamma=gamma)
    assert loss.negatives == "none"
    value = loss(LossBatch(torch.arange(5), torch.arange(5), u, p))
    assert float(value) == pytest.approx(ref_directau(u, p, gamma), rel=1e-10)


def test_uniformity_with_repeated_rows_has_finite_gradients():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=D, requires_grad=True)
    value = uniformity(x)
    assert float(value.detach()) == pytest.approx(ref_uniformity(x.detach()), rel=1e-10)
    value.backward()
    assert torch.isfinite(x.grad).all()


def test_gradcheck():
    u, p = make(B=4)
    loss = get_loss("directau", gamma=2.0)
    leaves = (u.clone().requires_grad_(), p.clone().requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, b: loss(LossBatch(torch.arange(4), torch.arange(4), a, b)), leaves
    )


def test_finite_for_huge_embeddings():
    u = torch.tensor([[1e4, 0.0], [0.0, 1e4], [-1e4, 1e4]], requires_grad=True)
    p = torch.tensor([[-1e4, 0.0], [0.0, 1e4], [1e4, 1e4]], requires_grad=True)
    value = get_loss("directau")(LossBatch(torch.arange(3), torch.arange(3), u, p))
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(u.grad).all() and torch.isfinite(p.grad).all()


def test_a_batch_of_one_pair_is_its_alignment():
    """An epoch's last batch can hold one pair (drop_last=False): no uniformity term then,
    instead of an error mid-epoch."""
    u, p = make(B=1)
    u.requires_grad_()
    value = get_loss("directau", gamma=5.0)(LossBatch(torch.arange(1), torch.arange(1), u, p))
    align = (F.normalize(u.detach(), dim=-1) - F.normalize(p, dim=-1)).pow(2).sum()
    assert float(value) == pytest.approx(float(align), rel=1e-10)
    value.backward()
    assert torch.isfinite(u.grad).all()


def test_validation():
    with pytest.raises(ConfigError, match="'cos'"):
        get_loss("directau", similarity="ip")
    # NaN passed ``gamma < 0`` and made every loss NaN
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match=f"gamma must be >= 0 and a finite number, got {bad}"):
            get_loss("directau", gamma=bad)
    assert get_loss("directau", gamma=0.0).gamma == 0.0
    with pytest.raises(ConfigError, match="at least 2"):
        uniformity(torch.ones(1, 3))
    assert DirectAULoss.paper and ".. math::" in (DirectAULoss.__doc__ or "")
