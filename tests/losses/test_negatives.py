import math

import pytest
import torch

from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError
from pyg_cf.losses import NegativeSampler, get_loss
from pyg_cf.losses.base import negative_scores, negative_sets


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


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_popularity_draws_follow_degree_to_the_beta(beta):
    # the log-probabilities the logQ correction subtracts must be the draws' own law
    deg = torch.tensor([1.0, 3.0, 4.0, 0.0, 8.0])
    s = NegativeSampler(5, deg, kind="popularity", beta=beta)
    items, logp = s.sample(torch.zeros(4000, dtype=torch.long), 5, torch.Generator().manual_seed(0))
    freq = torch.bincount(items.view(-1), minlength=5).double() / items.numel()
    want = deg.double() ** beta / (deg.double() ** beta).sum()
    assert torch.allclose(freq, want, atol=0.01), (freq, want)  # 20,000 draws: sd <= 0.0035
    assert torch.allclose(logp.exp().double(), want[items], rtol=1e-5)
    uniform = NegativeSampler(5).sample(torch.zeros(4000, dtype=torch.long), 5,
                                        torch.Generator().manual_seed(0))[0]  # fmt: skip
    assert torch.allclose(
        torch.bincount(uniform.view(-1), minlength=5).double() / uniform.numel(),
        torch.full((5,), 0.2, dtype=torch.double),
        atol=0.01,
    )


def test_negative_sets_layout_is_a_fixed_point():
    for b in range(1, 200):
        for g in range(1, b + 3):
            sets, rows = negative_sets(b, g)
            assert sets <= min(g, b) and (sets - 1) * rows < b <= sets * rows
            assert negative_sets(b, sets) == (sets, rows)
    assert negative_sets(2048, 1) == (1, 2048) and negative_sets(2048, 16) == (16, 128)
    assert negative_sets(30, 4) == (4, 8) and negative_sets(5, 4) == (3, 2)
    with pytest.raises(ConfigError, match="positive"):
        negative_sets(4, 0)


def test_grouped_negatives_are_shared_within_blocks_of_rows():
    s = NegativeSampler(10_000)
    items, logp = s.sample(torch.arange(30), 16, torch.Generator().manual_seed(0), shared=4)
    assert items.shape == (30, 16) and logp.shape == (30, 16)
    blocks = [items[0:8], items[8:16], items[16:24], items[24:30]]  # negative_sets(30, 4)
    for blk in blocks:
        assert (blk == blk[0]).all()
    firsts = torch.stack([blk[0] for blk in blocks])
    assert torch.unique(firsts, dim=0).size(0) == 4  # four distinct draws
    assert torch.allclose(logp, torch.full((30, 16), -math.log(10_000)))


def test_grouped_scores_equal_the_materialised_per_row_scores():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(30, 8, generator=g, dtype=torch.float64)
    sets = torch.randn(4, 5, 8, generator=g, dtype=torch.float64)
    per_row = sets.repeat_interleave(8, dim=0)[:30]
    for kind in ("ip", "cos"):
        assert torch.allclose(negative_scores(u, sets, kind), negative_scores(u, per_row, kind))
    with pytest.raises(ConfigError, match="do not tile"):
        negative_scores(u[:5], sets)  # 5 rows in blocks of 2 need 3 sets, not 4


@pytest.mark.parametrize("bad", [-1, 2.5, "4"])
def test_shared_negatives_must_be_a_bool_or_a_count(bad):
    with pytest.raises(ConfigError, match="shared_negatives"):
        get_loss("ssm", negatives="sampled", num_negatives=4, shared_negatives=bad)


def test_grouped_negatives_cannot_reject_positives():
    with pytest.raises(ConfigError, match="reject_positives"):
        get_loss("ssm", negatives="sampled", shared_negatives=4, reject_positives=True)


def test_popularity_sampler_refuses_degrees_that_do_not_fit_the_catalogue():
    # a longer degree vector used to draw ids past the catalogue (crash at the gather), a
    # shorter one never drew the last items, an all-zero one gave NaN probabilities
    with pytest.raises(ConfigError, match="item_degree must have shape"):
        NegativeSampler(4, torch.ones(6), kind="popularity")
    with pytest.raises(ConfigError, match="item_degree must have shape"):
        NegativeSampler(4, torch.ones(3), kind="popularity")
    with pytest.raises(ConfigError, match="positive degree"):
        NegativeSampler(4, torch.zeros(4), kind="popularity")
    with pytest.raises(ConfigError, match="num_items"):
        NegativeSampler(0)
    with pytest.raises(ConfigError, match="popularity sampling needs item_degree"):
        NegativeSampler(4, kind="popularity")
    with pytest.raises(ConfigError, match="sampler must be 'uniform' or 'popularity'"):
        NegativeSampler(4, kind="popular")
    s = NegativeSampler(4, torch.tensor([0.0, 1.0, 0.0, 3.0]), kind="popularity")
    items, _ = s.sample(torch.arange(50), 4, torch.Generator().manual_seed(0))
    assert set(items.unique().tolist()) == {1, 3}


def _reference_sample(s: NegativeSampler, users, num, generator):  # type: ignore[no-untyped-def]
    """NegativeSampler.sample's rejection as it was (boolean-mask writes, an eager count of
    the collisions left): the draws of a seed must not change."""
    items = s._draw((users.numel(), num), users.device, generator)
    for _ in range(s.max_rounds):
        bad = s.positives.contains(users.unsqueeze(1), items)
        nbad = int(bad.sum())
        if nbad == 0:
            break
        items[bad] = s._draw((nbad,), users.device, generator)
    return items, int(s.positives.contains(users.unsqueeze(1), items).sum())


def _dense_positives() -> tuple[torch.Tensor, int, int]:
    g = torch.Generator().manual_seed(3)
    nu, ni = 40, 12
    keys = torch.unique(torch.randint(nu * ni, (300,), generator=g))  # ~half of all pairs
    return torch.stack([keys // ni, keys % ni]), nu, ni


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
@pytest.mark.parametrize("rounds", [1, 3, 5, 50])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rejection_draws_are_those_of_the_boolean_mask_writes(kind, rounds, seed):
    ei, nu, ni = _dense_positives()
    deg = torch.bincount(ei[1], minlength=ni).float()
    index = UserItemIndex(ei, nu, ni)
    users = torch.randint(nu, (64,), generator=torch.Generator().manual_seed(seed))
    for num in (1, 4):
        s = NegativeSampler(ni, deg, kind=kind, positives=index, max_rounds=rounds)
        items, _ = s.sample(users, num, torch.Generator().manual_seed(seed))
        ref, left = _reference_sample(s, users, num, torch.Generator().manual_seed(seed))
        assert torch.equal(items, ref)
        assert s.last_collisions == left
        if rounds == 1:
            assert left > 0  # a dense positive set: some collisions survive one round


def test_last_collisions_is_counted_when_read_not_per_draw():
    """sample() syncs with the host once per rejection round (the size of the re-draw):
    no boolean-mask write (a hidden nonzero) and no count of what is left."""
    from tests.host_syncs import HostSyncs

    ei, nu, ni = _dense_positives()
    s = NegativeSampler(ni, positives=UserItemIndex(ei, nu, ni), max_rounds=2)
    assert s.last_collisions == 0  # nothing drawn yet
    users = torch.arange(nu)
    with HostSyncs() as count:
        items, _ = s.sample(users, 3, torch.Generator().manual_seed(0))
    assert count.syncs == ["_local_scalar_dense"] * 2, count.syncs  # two rounds, each one count
    left = int(UserItemIndex(ei, nu, ni).contains(users.unsqueeze(1), items).sum())
    assert left > 0 and s.last_collisions == left
    # shared negatives skip rejection: the count is that of the shared draw (see
    # test_last_collisions_describes_the_latest_draw_even_a_shared_one)
    shared, _ = s.sample(users, 3, torch.Generator().manual_seed(1), shared=True)
    assert s.last_collisions == int(
        UserItemIndex(ei, nu, ni).contains(users[:, None], shared).sum()
    )


def test_a_moved_sampler_draws_the_same_items():
    """``to`` moves the popularity table and the positives (the CPU here: a no-op move that
    must keep every table usable, and rejection working)."""
    pos = UserItemIndex(torch.tensor([[0, 0, 1], [3, 1, 3]]), 2, 4)
    make = lambda: NegativeSampler(  # noqa: E731
        4, torch.tensor([1.0, 2.0, 0.5, 3.0]), kind="popularity", positives=pos, max_rounds=200
    )
    ref, moved = make(), make().to("cpu")
    assert moved.probs is not None and moved.log_probs is not None
    assert moved.positives is not None
    users = torch.tensor([0, 1, 0, 1, 0])
    a, _ = ref.sample(users, 3, torch.Generator().manual_seed(2))
    b, _ = moved.sample(users, 3, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    own = {0: {1, 3}, 1: {3}}
    assert all(int(i) not in own[int(u)] for u, row in zip(users, b) for i in row)


def test_last_collisions_describes_the_latest_draw_even_a_shared_one():
    """A shared draw skips rejection (per row by nature) and left the count of the draw
    before it: ``last_collisions`` reported 7 leftover positives where the shared
    negatives held 16. Rejection stays best effort: leftovers after ``max_rounds`` are
    kept and counted."""
    # user 0 owns items 0..7 of 10, user 1 item 0
    ei = torch.tensor([[0] * 8 + [1], [*range(8), 0]])
    index = UserItemIndex(ei, 2, 10)
    s = NegativeSampler(10, positives=index, max_rounds=1)
    users = ei[0]
    gen = torch.Generator().manual_seed(0)

    def positives_among(items):
        return int(index.contains(users.unsqueeze(1), items).sum())

    items, _ = s.sample(users, 4, gen)
    left = positives_among(items)
    assert left > 0 and s.last_collisions == left  # kept after the last round
    shared, _ = s.sample(users, 4, gen, shared=True)
    assert (shared == shared[0]).all()
    assert positives_among(shared) != left
    assert s.last_collisions == positives_among(shared)
    again, _ = s.sample(users, 4, gen, shared=2)
    assert s.last_collisions == positives_among(again)
    # without positives to reject there is nothing to count
    plain = NegativeSampler(10)
    plain.sample(users, 4, gen, shared=True)
    assert plain.last_collisions == 0


def test_max_rounds_must_not_be_negative_and_counts_are_stored_as_ints():
    # a negative max_rounds silently meant no rejection at all
    with pytest.raises(ConfigError, match="max_rounds must be >= 0, got -1"):
        NegativeSampler(4, max_rounds=-1)
    s = NegativeSampler(torch.tensor(7), max_rounds=0)  # e.g. a 0-dim tensor of a count
    assert type(s.num_items) is int and s.num_items == 7
    assert type(s.max_rounds) is int and s.max_rounds == 0


def test_popularity_draws_land_on_the_rows_device():
    """The popularity ``_draw`` drew on the table's device whatever ``device`` it was given:
    items for rows on another device came back on the table's (here the table is on the
    CPU and the rows on the ``meta`` device, which every factory op supports)."""
    s = NegativeSampler(4, torch.tensor([1.0, 2.0, 0.5, 3.0]), kind="popularity")
    items, logp = s.sample(torch.arange(5, device="meta"), 3)
    assert items.device.type == "meta" and logp.device.type == "meta"
    assert items.shape == logp.shape == (5, 3)


@pytest.mark.parametrize("shared", [False, True, 2])
def test_seeded_popularity_draws_on_the_cpu_are_unchanged(shared):
    """The trainer's draws of a seed: one multinomial over degree^beta on the table's
    device, with the generator given (what ``_draw`` did before it honoured ``device``)."""
    deg = torch.tensor([3.0, 0.0, 1.0, 7.0, 2.0, 5.0])
    s = NegativeSampler(6, deg, kind="popularity", beta=0.75)
    users = torch.arange(9)
    items, logp = s.sample(users, 4, torch.Generator().manual_seed(5), shared=shared)
    w = deg.double().pow(0.75)
    probs = (w / w.sum()).float()
    sets = 9 if not shared else negative_sets(9, int(shared))[0]
    old = torch.multinomial(probs, sets * 4, True, generator=torch.Generator().manual_seed(5))
    old = old.view(sets, 4)
    if shared:
        old = old.repeat_interleave(negative_sets(9, int(shared))[1], dim=0)[:9]
    assert torch.equal(items, old)
    assert torch.equal(logp, torch.log(probs.clamp_min(1e-30))[old])
