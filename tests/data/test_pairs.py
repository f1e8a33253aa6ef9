import gc

import pytest
import torch

from pyg_cf.data import pairs
from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError


def _ei() -> torch.Tensor:
    return torch.tensor([[0, 0, 1, 2, 2], [1, 3, 0, 2, 4]])


def test_cached_reuses_index_of_same_tensor():
    ei = _ei()
    a = UserItemIndex.cached(ei, 3, 5)
    assert UserItemIndex.cached(ei, 3, 5) is a
    # an equal but distinct tensor gets its own index
    assert UserItemIndex.cached(ei.clone(), 3, 5) is not a
    # other sizes are another index
    assert UserItemIndex.cached(ei, 3, 6) is not a


def test_cached_sees_in_place_changes():
    ei = _ei()
    a = UserItemIndex.cached(ei, 3, 5)
    assert bool(a.contains(torch.tensor([1]), torch.tensor([0])))
    ei[1, 2] = 4  # user 1 now has item 4, not 0
    b = UserItemIndex.cached(ei, 3, 5)
    assert b is not a
    assert not bool(b.contains(torch.tensor([1]), torch.tensor([0])))
    assert bool(b.contains(torch.tensor([1]), torch.tensor([4])))


def test_cached_entry_dropped_with_its_tensor():
    ei = _ei()
    key = id(ei)
    UserItemIndex.cached(ei, 3, 5)
    assert key in pairs._CACHE
    del ei
    gc.collect()
    assert key not in pairs._CACHE


def test_cache_is_bounded():
    keep = [torch.tensor([[0], [k % 5]]) for k in range(pairs._CACHE_SIZE + 5)]
    for ei in keep:
        UserItemIndex.cached(ei, 1, 5)
    assert len(pairs._CACHE) <= pairs._CACHE_SIZE


def test_int32_pairs_do_not_overflow():
    # 70,000 users x 40,000 items: user * num_items + item exceeds 2^31
    ei = torch.tensor([[69_999, 0], [39_999, 5]], dtype=torch.int32)
    index = UserItemIndex(ei, 70_000, 40_000)
    assert index.contains(torch.tensor([69_999, 0]), torch.tensor([39_999, 39_999])).tolist() == [
        True,
        False,
    ]
    assert bool(index.contains(ei[0], ei[1]).all())


@pytest.mark.parametrize(
    "ei,match",
    [
        # item 5 of user 0 would alias item 0 of user 1 (key 0 * 5 + 5 == 1 * 5 + 0)
        ([[0], [5]], r"items in \[5, 5\]"),
        ([[3], [0]], r"users in \[3, 3\]"),
        ([[-1], [0]], r"users in \[-1, -1\]"),
        ([[0], [-1]], r"items in \[-1, -1\]"),
    ],
)
def test_ids_out_of_range_are_refused(ei, match):
    with pytest.raises(ConfigError, match="edge_index ids out of range for 3 users / 5 items"):
        UserItemIndex(torch.tensor(ei), 3, 5)
    with pytest.raises(ConfigError, match=match):
        UserItemIndex.cached(torch.tensor(ei), 3, 5)


def test_bad_shapes_and_dtypes_are_refused():
    with pytest.raises(ConfigError, match=r"\[2, E\] tensor"):
        UserItemIndex(torch.tensor([0, 1]), 3, 5)
    with pytest.raises(ConfigError, match="integer ids"):
        UserItemIndex(torch.tensor([[0.0], [1.0]]), 3, 5)
    index = UserItemIndex(torch.tensor([[2], [4]]), 3, 5)  # the largest valid ids
    assert index.contains(torch.tensor([2, 1]), torch.tensor([4, 0])).tolist() == [True, False]
    assert UserItemIndex(torch.empty(2, 0, dtype=torch.long), 0, 0).keys.numel() == 0
