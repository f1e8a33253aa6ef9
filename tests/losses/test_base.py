"""Helpers of :mod:`pyg_cf.losses.base`: argument and shape checks, the row log-sum-exp."""

import math
import re

import pytest
import torch

from pyg_cf.errors import ConfigError
from pyg_cf.losses.base import check_number, pair_negatives, row_logsumexp

D = torch.float64


def test_pair_negatives_makes_one_negative_per_row_a_column():
    pos, neg = torch.arange(3.0), torch.tensor([0.0, 0.0, 5.0])
    assert pair_negatives(pos, neg).shape == (3, 1)
    assert torch.equal(pair_negatives(pos, neg)[:, 0], neg)
    many = torch.randn(3, 4)
    assert pair_negatives(pos, many) is many  # [B, M]: as given
    shared = torch.randn(1, 4)
    assert pair_negatives(pos, shared) is shared  # [1, M]: one set for every row
    # one row without a batch axis, and [B, T] rows with [B, T, M] negatives, as before
    assert pair_negatives(torch.tensor(1.0), torch.randn(4)).shape == (4,)
    assert pair_negatives(torch.randn(3, 2), torch.randn(3, 2, 4)).shape == (3, 2, 4)


@pytest.mark.parametrize(
    "pos_shape,neg_shape",
    [
        ((3, 1), (3,)),  # would broadcast to [B, B]
        ((3,), (5,)),  # [M] negatives of no row: the rows would share their sum
        ((3,), (5, 4)),  # another batch
        ((3,), (3, 4, 2)),
        ((3,), ()),
    ],
)
def test_pair_negatives_refuses_shapes_that_mix_rows(pos_shape, neg_shape):
    message = f"neg_score of shape {neg_shape} does not fit pos_score of shape {pos_shape}"
    with pytest.raises(ConfigError, match=re.escape(message)):
        pair_negatives(torch.zeros(pos_shape), torch.zeros(neg_shape))


@pytest.mark.parametrize(
    "value,kwargs,message",
    [
        (math.inf, {"low": 0.0}, "tau must be > 0 and a finite number, got inf"),
        (0.0, {"low": 0.0}, "tau must be > 0 and a finite number, got 0.0"),
        (math.nan, {"low": 0.0, "strict": False}, "tau must be >= 0 and a finite number, got nan"),
        (-1, {"low": 0.0, "strict": False}, "tau must be >= 0 and a finite number, got -1"),
        (math.nan, {}, "tau must be a finite number, got nan"),
        ("x", {}, "tau must be a finite number, got 'x'"),
    ],
)
def test_check_number_names_the_argument_and_the_value(value, kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_number(value, "tau", **kwargs)


def test_check_number_returns_the_float():
    assert check_number(0, "w", low=0.0, strict=False) == 0.0
    assert check_number(-2, "margin") == -2.0
    assert isinstance(check_number(3, "w"), float)


def test_row_logsumexp_double_backward_fails_instead_of_dropping_the_term():
    x = torch.randn(3, 5, dtype=D, requires_grad=True)

    def total(lse):  # summed with a term that has a second derivative of its own
        return lse(x).sum() + (x**3).sum()

    # the gradient had a graph (that of x**3) without the log-sum-exp's term: the second
    # derivative silently lacked it
    with pytest.raises(RuntimeError, match=r"row_logsumexp .* is differentiable once only"):
        torch.autograd.grad(total(row_logsumexp), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiable once only"):  # alone, too
        torch.autograd.grad(row_logsumexp(x).sum(), x, create_graph=True)
    # an ordinary backward is as before: one product with the saved softmax
    (g,) = torch.autograd.grad(total(row_logsumexp), x)
    (want,) = torch.autograd.grad(total(lambda t: torch.logsumexp(t, dim=1)), x)
    assert g.grad_fn is None and torch.allclose(g, want)
