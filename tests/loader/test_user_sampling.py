from typing import Any

import pytest
import torch

from pyg_cf.errors import ConfigError
from pyg_cf.loader import InteractionLoader
from tests.loader.conftest import random_edges


def test_user_sampling_draws_real_edges_of_uniform_users():
    # users 0..9 with very different degrees; users 10, 11 have no interactions
    rows = [(u, i) for u in range(10) for i in range(1 + 4 * u)]
    ei = torch.tensor(rows).t()
    loader = InteractionLoader(
        ei, 12, 40, batch_size=100_000, sampling="user", generator=torch.Generator().manual_seed(0)
    )
    draws = torch.cat([loader._user_uniform_draws(200_000)])
    assert int(draws.min()) >= 0 and int(draws.max()) < ei.size(1)
    users = ei[0, draws]
    counts = torch.bincount(users, minlength=12).double()
    assert counts[10] == 0 and counts[11] == 0  # zero-degree users are never drawn
    share = counts[:10] / counts.sum()
    assert torch.allclose(share, torch.full((10,), 0.1, dtype=torch.double), atol=0.01)
    # within a user, its interactions are equally likely (user 9 has 37)
    own = draws[users == 9]
    per_edge = torch.bincount(own, minlength=ei.size(1))[ei[0] == 9].double()
    assert per_edge.min() > 0 and per_edge.max() / per_edge.mean() < 1.3


def test_user_sampling_epoch_length_and_seed():
    ei = random_edges(30, 20, 300, 0)
    mk = lambda: InteractionLoader(  # noqa: E731
        ei, 30, 20, batch_size=64, sampling="user", generator=torch.Generator().manual_seed(3)
    )
    a, b = mk(), mk()
    ids_a = torch.cat(list(a.index_batches()))
    ids_b = torch.cat(list(b.index_batches()))
    assert ids_a.numel() == ei.size(1) and len(a) == -(-ei.size(1) // 64)
    assert torch.equal(ids_a, ids_b)
    # with replacement: unlike an edge pass, some edges repeat and some are missed
    assert torch.unique(ids_a).numel() < ei.size(1)


def test_bad_sampling_is_rejected():
    ei = random_edges(5, 5, 10, 0)
    with pytest.raises(ConfigError, match="sampling"):
        InteractionLoader(ei, 5, 5, sampling="items")


def test_user_sampling_refuses_shuffle_false():
    # random draws with replacement have no unshuffled order: shuffle=False was ignored
    ei = random_edges(5, 5, 10, 0)
    with pytest.raises(ConfigError, match=r"shuffle=False .* sampling='user'"):
        InteractionLoader(ei, 5, 5, sampling="user", shuffle=False)
    InteractionLoader(ei, 5, 5, sampling="user")  # shuffle=True (default) is fine


def _runs(users: torch.Tensor) -> int:
    """Number of maximal runs of equal consecutive values."""
    return 1 + int((users[1:] != users[:-1]).sum()) if users.numel() else 0


def _blocks(
    ei: torch.Tensor, num_users: int, num_items: int, batch_size: int, seed: int, **kw: Any
) -> InteractionLoader:
    """A seeded ``sampling='user_blocks'`` loader."""
    return InteractionLoader(
        ei, num_users, num_items, batch_size=batch_size, sampling="user_blocks",
        generator=torch.Generator().manual_seed(seed), **kw,
    )  # fmt: skip


def test_user_blocks_pass_every_edge_once_grouped_by_user():
    ei = random_edges(40, 30, 500, 1)
    ei = ei[:, torch.randperm(ei.size(1), generator=torch.Generator().manual_seed(0))]
    mk = lambda: _blocks(ei, 40, 30, batch_size=64, seed=5)  # noqa: E731
    a = mk()
    batches = list(a.index_batches())
    assert len(batches) == len(a) == -(-ei.size(1) // 64)
    assert all(b.numel() == 64 for b in batches[:-1])
    order = torch.cat(batches)
    # a pass: every interaction exactly once, as sampling='edge'
    assert torch.equal(torch.sort(order).values, torch.arange(ei.size(1)))
    users = ei[0, order]
    # each user's interactions are contiguous: one run per user
    assert _runs(users) == torch.unique(ei[0]).numel()
    # so a batch holds far fewer distinct users than rows
    assert max(torch.unique(ei[0, b]).numel() for b in batches) < 64 // 4
    # seeded, and a new user order (and in-user order) each epoch
    assert torch.equal(order, torch.cat(list(mk().index_batches())))
    second = torch.cat(list(a.index_batches()))
    assert not torch.equal(ei[0, second], users)
    assert _runs(ei[0, second]) == torch.unique(ei[0]).numel()
    # without shuffling: users in id order
    plain = InteractionLoader(ei, 40, 30, batch_size=64, sampling="user_blocks", shuffle=False)
    u = ei[0, torch.cat(list(plain.index_batches()))]
    assert torch.equal(u, torch.sort(ei[0]).values)


def test_capped_user_blocks_cut_users_into_shuffled_blocks():
    ei = random_edges(40, 30, 500, 2)
    size = 3
    mk = lambda: _blocks(ei, 40, 30, batch_size=50, seed=7, user_block_size=size)  # noqa: E731
    a = mk()
    order = torch.cat(list(a.index_batches()))
    # still a pass: every interaction exactly once
    assert torch.equal(torch.sort(order).values, torch.arange(ei.size(1)))
    users = ei[0, order]
    deg = torch.bincount(ei[0], minlength=40)
    # each user's rows come in runs made of whole blocks: every run's length is a sum
    # of blocks of `size` and at most one shorter last block (deg % size)
    change = torch.nonzero(users[1:] != users[:-1]).view(-1) + 1
    bounds = torch.cat([torch.tensor([0]), change, torch.tensor([users.numel()])])
    blocks = int(((deg + size - 1) // size).sum())
    runs_per_user = torch.zeros(40, dtype=torch.long)
    for s0, s1 in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        u, n = int(users[s0]), s1 - s0
        assert n % size in (0, int(deg[u]) % size), (u, n)
        runs_per_user[u] += 1
    # at most one run per block, and only chance meetings of a user's blocks merge them
    assert bool((runs_per_user <= (deg + size - 1) // size).all())
    assert int(runs_per_user.sum()) >= 0.8 * blocks
    # seeded and re-shuffled each epoch
    assert torch.equal(order, torch.cat(list(mk().index_batches())))
    assert not torch.equal(torch.cat(list(a.index_batches())), order)
    # block size 1 cuts every user into single rows: no structure left beyond a pass
    one = _blocks(ei, 40, 30, batch_size=50, seed=1, user_block_size=1)
    o1 = torch.cat(list(one.index_batches()))
    assert torch.equal(torch.sort(o1).values, torch.arange(ei.size(1)))
    assert _runs(ei[0, o1]) > ei.size(1) // 2
    # a block size above every degree keeps whole users
    big = _blocks(ei, 40, 30, batch_size=50, seed=1, user_block_size=10_000)
    assert _runs(ei[0, torch.cat(list(big.index_batches()))]) == torch.unique(ei[0]).numel()


@pytest.mark.parametrize(
    ("size", "sampling", "match"),
    [(0, "user_blocks", ">= 1"), (2.5, "user_blocks", "int"), (4, "edge", "user_blocks")],
)
def test_user_block_size_is_checked(size, sampling, match):
    ei = random_edges(5, 5, 10, 0)
    with pytest.raises(ConfigError, match=match):
        InteractionLoader(ei, 5, 5, sampling=sampling, user_block_size=size)
