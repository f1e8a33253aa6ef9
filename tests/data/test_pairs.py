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
    key = (id(ei), ei.device)
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


def _in_batch_collisions_reference(index: UserItemIndex, users, items):  # type: ignore[no-untyped-def]
    """in_batch_collisions as it was (boolean-mask writes: two host syncs on a GPU)."""
    uniq_u, inv_u = torch.unique(users, return_inverse=True)
    uniq, inverse = torch.unique(items, return_inverse=True)
    slot = torch.full((index.num_items,), -1, dtype=torch.long)
    slot[uniq] = torch.arange(uniq.numel())
    row, it = index.gather(uniq_u)
    col = slot[it]
    keep = col >= 0
    per_pair = torch.zeros(uniq_u.numel(), uniq.numel(), dtype=torch.bool)
    per_pair[row[keep], col[keep]] = True
    mask = per_pair[inv_u][:, inverse]
    mask.fill_diagonal_(False)
    return mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_in_batch_collisions_match_the_reference_without_mask_indexing(seed):
    from tests.host_syncs import HostSyncs

    g = torch.Generator().manual_seed(seed)
    nu, ni = 30, 20
    keys = torch.unique(torch.randint(nu * ni, (250,), generator=g))
    ei = torch.stack([keys // ni, keys % ni])
    index = UserItemIndex(ei, nu, ni)
    counted = HostSyncs()
    for b in (1, 2, 16, 64):
        sel = torch.randint(ei.size(1), (b,), generator=g)
        users, items = ei[0, sel], ei[1, sel]
        if b == 16:  # items none of the batch users listed: the dummy column only
            items = torch.randint(ni, (b,), generator=g)
        with counted:
            ours = index.in_batch_collisions(users, items)
        assert torch.equal(ours, _in_batch_collisions_reference(index, users, items))
    assert "bool-mask index" not in counted.syncs, counted.syncs


def test_cached_on_keys_the_index_by_source_tensor_and_device(monkeypatch):
    """A second device is simulated: ``Tensor.to('cuda:1')`` copies on the CPU (the key is
    the device asked for)."""
    ei = _ei()
    a = UserItemIndex.cached(ei, 3, 5)
    assert UserItemIndex.cached_on(ei, "cpu", 3, 5) is a  # the same device: the same entry
    assert (id(ei), torch.device("cpu")) in pairs._CACHE
    built: list[int] = []  # ids of the tensors indexes were built from
    init = UserItemIndex.__init__

    def counting(self, edge_index, *args):  # type: ignore[no-untyped-def]
        built.append(id(edge_index))
        init(self, edge_index, *args)

    to = torch.Tensor.to

    def fake_to(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if args and str(args[0]) == "cuda:1":
            return self.clone()
        return to(self, *args, **kwargs)

    monkeypatch.setattr(UserItemIndex, "__init__", counting)
    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    b = UserItemIndex.cached_on(ei, torch.device("cuda", 1), 3, 5)
    assert b is not a and len(built) == 1 and built[0] != id(ei)  # built from the copy
    assert (id(ei), torch.device("cuda", 1)) in pairs._CACHE
    assert UserItemIndex.cached_on(ei, "cuda:1", 3, 5) is b and len(built) == 1
    assert UserItemIndex.cached(ei, 3, 5) is a and len(built) == 1
    # an in-place edit of the source invalidates the entries of every device
    ei[1, 2] = 4
    c = UserItemIndex.cached_on(ei, "cuda:1", 3, 5)
    assert c is not b and len(built) == 2
    assert bool(c.contains(torch.tensor([1]), torch.tensor([4])))
    assert UserItemIndex.cached(ei, 3, 5) is not a and len(built) == 3
    # other sizes are another index
    assert UserItemIndex.cached_on(ei, "cuda:1", 3, 6) is not c and len(built) == 4
    # the cache holds the source weakly: its entries, of every device, go with it
    keys = [(id(ei), torch.device("cpu")), (id(ei), torch.device("cuda", 1))]
    del ei
    gc.collect()
    assert not any(k in pairs._CACHE for k in keys)


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_in_batch_collisions_equal_the_gathered_ones_without_a_sync(seed):
    """The GPU default (B^2 searches of fixed shape) gives the same mask as the CPU's
    gather, with no host read at all (the gather reads the look-up count)."""
    from tests.host_syncs import HostSyncs

    g = torch.Generator().manual_seed(seed)
    nu, ni = 30, 20
    keys = torch.unique(torch.randint(nu * ni, (250,), generator=g))
    ei = torch.stack([keys // ni, keys % ni])
    index = UserItemIndex(ei, nu, ni)
    for b in (1, 7, 64):
        sel = torch.randint(ei.size(1), (b,), generator=g)
        users, items = ei[0, sel], ei[1, sel]
        with HostSyncs() as dense_syncs:
            dense = index.in_batch_collisions(users, items, method="dense")
        with HostSyncs() as gather_syncs:
            gathered = index.in_batch_collisions(users, items, method="gather")
        assert torch.equal(dense, gathered)
        assert torch.equal(dense, _in_batch_collisions_reference(index, users, items))
        assert dense_syncs.syncs == [] and gather_syncs.syncs  # what the dense path saves
    # the CPU default is the gather; a bad method is named
    assert index.in_batch_collisions(users, items).shape == (64, 64)
    with pytest.raises(ValueError, match="method must be"):
        index.in_batch_collisions(users, items, method="sparse")


def test_contains_is_false_for_ids_out_of_range():
    # (0, 5) has the flat key of (1, 0) and (2, -1) that of (1, 4) with 5 items
    idx = UserItemIndex(torch.tensor([[1, 1], [0, 4]]), 3, 5)
    users = torch.tensor([0, 2, 1, 1, 3, -1])
    items = torch.tensor([5, -1, 0, 4, 0, 9])
    assert idx.contains(users, items).tolist() == [False, False, True, True, False, False]
    # broadcast (the in-batch collision shape) keeps the same rule
    mask = idx.contains(torch.tensor([[0], [1]]), torch.tensor([[5, 0, 4]]))
    assert mask.tolist() == [[False, False, False], [False, True, True]]
