import math

import torch

from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.losses import NegativeSampler


def test_shared_negatives_are_the_same_for_every_row():
    s = NegativeSampler(50)
    items, logp = s.sample(torch.arange(6), 8, torch.Generator().manual_seed(0), shared=True)
    assert items.shape == (6, 8) and logp.shape == (6, 8)
    assert (items == items[0]).all()
    assert torch.allclose(logp, torch.full((6, 8), -math.log(50)))


def test_per_row_negatives_reject_positives_and_popularity_logq():
    ei = torch.tensor([[0, 0, 1], [0, 1, 2]])
    deg = torch.tensor([5.0, 1.0, 0.0, 2.0])
    s = NegativeSampler(
        4, deg, kind="popularity", beta=1.0, positives=UserItemIndex(ei, 2, 4), max_rounds=100
    )
    users = torch.tensor([0, 1] * 50)
    items, logp = s.sample(users, 6, torch.Generator().manual_seed(0))
    assert not UserItemIndex(ei, 2, 4).contains(users.unsqueeze(1), items).any()
    assert (items != 2).all()  # zero-degree items are never drawn by popularity
    assert torch.allclose(logp, torch.log(deg / deg.sum())[items])
