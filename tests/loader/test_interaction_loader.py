from dataclasses import fields

import pytest
import torch

from pyg_cf.data.pairs import UserItemIndex
from pyg_cf.errors import ConfigError
from pyg_cf.loader import InteractionLoader
from pyg_cf.nn import GraphCF
from tests.loader.conftest import random_data, random_edges


def test_epoch_covers_every_interaction_once():
    ei = random_edges(30, 20, 300, 0)
    loader = InteractionLoader(ei, 30, 20, batch_size=64, generator=torch.Generator())
    ids = torch.cat([b.edge_ids for b in loader])
    assert len(loader) == -(-ei.size(1) // 64)
    assert torch.equal(ids.sort().values, torch.arange(ei.size(1)))
    for b in loader:
        assert torch.equal(b.users, ei[0, b.edge_ids]) and b.subgraph is None
    assert len(InteractionLoader(ei, 30, 20, batch_size=64, drop_last=True)) == ei.size(1) // 64
    assert len(InteractionLoader(ei, 30, 20, batch_size=64, max_steps=2)) == 2


def test_edge_sampling_reshuffles_every_epoch():
    ei = random_edges(30, 20, 300, 0)
    e = ei.size(1)
    mk = lambda seed: InteractionLoader(  # noqa: E731
        ei, 30, 20, batch_size=64, generator=torch.Generator().manual_seed(seed)
    )
    a = mk(0)
    epochs = [torch.cat([b.edge_ids for b in a]) for _ in range(3)]
    for order in epochs:  # each epoch: every training edge exactly once
        assert torch.equal(order.sort().values, torch.arange(e))
    # a new permutation each epoch, not a fixed one
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    assert not torch.equal(epochs[0], torch.arange(e))
    # seeded: the same seed repeats the same sequence of epochs, another seed does not
    b = mk(0)
    assert all(torch.equal(torch.cat(list(b.index_batches())), o) for o in epochs)
    assert not torch.equal(torch.cat(list(mk(1).index_batches())), epochs[0])
    # without shuffling: the stored order, every epoch
    plain = InteractionLoader(ei, 30, 20, batch_size=64, shuffle=False)
    for _ in range(2):
        assert torch.equal(torch.cat(list(plain.index_batches())), torch.arange(e))


@pytest.mark.parametrize("sampling", ["edge", "user", "user_blocks"])
def test_yielded_batches_honour_max_steps_and_drop_last(sampling):
    ei = random_edges(30, 20, 300, 0)
    e, bs = ei.size(1), 64
    assert e % bs != 0  # a last partial batch exists

    def mk(**kw):
        return InteractionLoader(
            ei, 30, 20, batch_size=bs, sampling=sampling,
            generator=torch.Generator().manual_seed(0), **kw,
        )  # fmt: skip

    capped = mk(max_steps=2)
    batches = list(capped.index_batches())
    assert len(batches) == len(capped) == 2
    assert [b.numel() for b in batches] == [bs, bs]
    assert len(list(capped)) == 2
    dropped = mk(drop_last=True)
    batches = list(dropped.index_batches())
    assert len(batches) == len(dropped) == e // bs
    assert all(b.numel() == bs for b in batches)
    assert [b.users.numel() for b in dropped] == [bs] * (e // bs)
    full = list(mk().index_batches())
    assert len(full) == -(-e // bs) and full[-1].numel() == e % bs
    # a cap above the epoch length changes nothing
    assert len(list(mk(max_steps=100).index_batches())) == len(full)


def test_batch_to_moves_every_tensor():
    ei = random_edges(40, 30, 400, 1)
    loader = InteractionLoader(
        ei, 40, 30, batch_size=50, num_neighbors=[3, 2], num_negatives=4, mask_in_batch=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    b = next(iter(loader))
    moved = b.to(torch.device("meta"))  # a device other than the CPU, without a GPU
    assert moved is not b
    tensors = [f.name for f in fields(b) if isinstance(getattr(b, f.name), torch.Tensor)]
    assert set(tensors) == {
        "edge_ids", "users", "pos_items", "neg_items", "neg_log_prob", "in_batch_collision",
        "num_collisions", "user_index", "pos_index", "neg_index",
    }  # fmt: skip
    for name in tensors:
        src, dst = getattr(b, name), getattr(moved, name)
        assert dst.device.type == "meta", name
        assert dst.shape == src.shape and dst.dtype == src.dtype, name
        assert src.device.type == "cpu", name  # the original batch is left in place
    # the count stays a device tensor (read once an epoch by the trainer, not per step)
    assert int(b.num_collisions) == int(b.in_batch_collision.sum()) > 0
    sub_tensors = [
        (k, v) for store in moved.subgraph.stores for k, v in store.items() if torch.is_tensor(v)
    ]
    assert len(sub_tensors) >= 8  # n_id x 2, and edge_index, e_id, edge_weight x 2
    assert all(v.device.type == "meta" for _, v in sub_tensors)
    assert all(
        v.device.type == "cpu" for store in b.subgraph.stores for v in store.values()
        if torch.is_tensor(v)
    )  # fmt: skip


def test_batches_map_local_ids_to_global():
    ei = random_edges(40, 30, 400, 1)
    loader = InteractionLoader(
        ei, 40, 30, batch_size=50, num_neighbors=[3, 2], num_negatives=4,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    for b in loader:
        sub = b.subgraph
        assert torch.equal(sub["user"].n_id[b.user_index], b.users)
        assert torch.equal(sub["item"].n_id[b.pos_index], b.pos_items)
        assert torch.equal(sub["item"].n_id[b.neg_index], b.neg_items)
        assert b.neg_items.shape == (b.users.numel(), 4)
        kw = b.model_inputs()
        assert set(kw) == {"edge_index", "user_nodes", "item_nodes", "edge_weight"}
        cpu = b.to("cpu")
        assert torch.equal(cpu.users, b.users)


def test_masked_in_batch_negatives_never_include_own_positives():
    # a dense graph, so that in-batch collisions are frequent
    ei = random_edges(12, 10, 100, 2)
    index = UserItemIndex(ei, 12, 10)
    loader = InteractionLoader(
        ei, 12, 10, batch_size=16, mask_in_batch=True, generator=torch.Generator()
    )
    total = 0
    for b in loader:
        coll = b.in_batch_collision
        bsz = b.users.numel()
        is_pos = index.contains(b.users.unsqueeze(1), b.pos_items.unsqueeze(0))  # [B, B]
        off_diag = ~torch.eye(bsz, dtype=torch.bool)
        # the unmasked negatives of row r are never positives of users[r] ...
        assert not (is_pos & off_diag & ~coll).any()
        # ... and only real positives are masked
        assert not (coll & ~is_pos).any() and not coll.diagonal().any()
        assert b.num_collisions == int(coll.sum())
        total += b.num_collisions
    assert total > 0 and loader.num_collisions == total


def test_rejected_negatives_are_not_positives():
    ei = random_edges(30, 200, 600, 3)
    index = UserItemIndex(ei, 30, 200)
    loader = InteractionLoader(
        ei, 30, 200, batch_size=100, num_negatives=8, reject_positives=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    for b in loader:
        assert not index.contains(b.users.unsqueeze(1), b.neg_items).any()


def test_negatives_asked_for_at_collate_time_are_rejected_too():
    # one user with 8 of 10 items: unrejected draws hit a positive 80 % of the time
    ei = torch.stack([torch.zeros(8, dtype=torch.long), torch.arange(8)])
    index = UserItemIndex(ei, 1, 10)
    loader = InteractionLoader(
        ei, 1, 10, batch_size=8, reject_positives=True,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    b = loader.collate(torch.arange(8), num_negatives=50)
    hits = int(index.contains(b.users.unsqueeze(1), b.neg_items).sum())
    # 5 rejection rounds leave 400 * 0.8**6 = 105 hits on average; 320 without rejection
    assert hits < 200  # (311 before the fix)


def test_seeded_loaders_repeat():
    ei = random_edges(40, 30, 400, 4)

    def run(seed):
        loader = InteractionLoader(
            ei, 40, 30, batch_size=64, num_neighbors=[2, 2], num_negatives=2,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        return [(b.edge_ids, b.neg_items, b.subgraph["user", "rates", "item"].e_id) for b in loader]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    assert not all(torch.equal(x, y) for ra, rc in zip(a, c) for x, y in zip(ra, rc))


def test_full_fanout_batches_give_full_graph_embeddings():
    data = random_data(seed=5)
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=8)
    loader = InteractionLoader.from_data(
        data, batch_size=8, num_neighbors=[-1, -1, -1], num_negatives=3,
        generator=torch.Generator(),
    )  # fmt: skip
    u_full, i_full = model()
    b = next(iter(loader))
    u, i = model(**b.model_inputs())
    assert torch.allclose(u[b.user_index], u_full[b.users], atol=1e-5)
    assert torch.allclose(i[b.pos_index], i_full[b.pos_items], atol=1e-5)
    assert torch.allclose(i[b.neg_index], i_full[b.neg_items], atol=1e-5)


def test_bad_arguments():
    ei = random_edges(5, 5, 10, 0)
    with pytest.raises(ConfigError, match="batch_size"):
        InteractionLoader(ei, 5, 5, batch_size=0)
    with pytest.raises(ConfigError, match="num_negatives"):
        InteractionLoader(ei, 5, 5, num_negatives=-1)
    with pytest.raises(ConfigError, match="targets"):  # even without a neighborhood
        InteractionLoader(ei, 5, 5, targets=("users",))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        # a float batch size failed only when slicing the first batch (TypeError)
        ({"batch_size": 2.5}, r"batch_size must be an int, got 2\.5"),
        ({"batch_size": True}, "batch_size must be an int, got True"),
        ({"batch_size": "64"}, "batch_size must be an int, got '64'"),
        # a negative cap made len() raise a bare ValueError
        ({"max_steps": -1}, "max_steps must be >= 1, got -1"),
        ({"max_steps": 0}, "max_steps must be >= 1, got 0"),
        ({"max_steps": 2.0}, r"max_steps must be an int or None, got 2\.0"),
        ({"max_steps": False}, "max_steps must be an int or None, got False"),
        # a float count of negatives failed inside torch (TypeError) at the first batch
        ({"num_negatives": 1.5}, r"num_negatives must be an int, got 1\.5"),
        ({"num_negatives": True}, "num_negatives must be an int, got True"),
    ],
    ids=[
        "batch_size-float", "batch_size-bool", "batch_size-str", "max_steps-negative",
        "max_steps-zero", "max_steps-float", "max_steps-bool", "num_negatives-float",
        "num_negatives-bool",
    ],
)  # fmt: skip
def test_non_integer_sizes_are_refused_up_front(kw, match):
    ei = random_edges(5, 5, 10, 0)
    with pytest.raises(ConfigError, match=match):
        InteractionLoader(ei, 5, 5, **kw)


def test_numpy_integer_sizes_are_accepted():
    np = pytest.importorskip("numpy")
    ei = random_edges(5, 5, 10, 0)
    loader = InteractionLoader(
        ei, 5, 5, batch_size=np.int64(4), num_negatives=np.int32(2), max_steps=np.int64(2)
    )
    batches = list(loader)
    assert len(batches) == 2 and batches[0].neg_items.shape == (4, 2)
    assert type(loader.batch_size) is int and type(loader.max_steps) is int


@pytest.mark.parametrize(
    ("edges", "kw", "match"),
    [
        # a transposed [E, 2] tensor was read as 2 "interactions", the rest dropped
        (torch.tensor([[0, 1], [1, 2], [2, 0], [3, 3]]), {}, r"\[2, E\] .* shape \(4, 2\)"),
        # an out-of-range user crashed inside torch (sampling='user') or corrupted the
        # positives index (reject_positives) with only a resize warning
        (torch.tensor([[0, 5], [1, 2]]), {"sampling": "user"}, r"users in \[0, 5\]"),
        (torch.tensor([[0, 5], [1, 2]]), {"num_negatives": 1, "reject_positives": True}, "5 users"),
        (torch.tensor([[0, 1], [1, 7]]), {}, r"items in \[1, 7\]"),
        (torch.tensor([[0.0, 1.0], [1.0, 2.0]]), {}, "integer ids"),
        ([[0, 1], [1, 2]], {}, "got list"),
    ],
)
def test_bad_edges_are_refused_up_front(edges, kw, match):
    with pytest.raises(ConfigError, match=match):
        InteractionLoader(edges, 5, 5, **kw)


def test_int32_edges_give_int64_batches():
    ei = torch.tensor([[0, 0, 1, 2, 2], [1, 3, 0, 2, 4]], dtype=torch.int32)
    loader = InteractionLoader(
        ei, 3, 5, batch_size=5, num_negatives=2, reject_positives=True, mask_in_batch=True
    )
    batch = next(iter(loader))
    assert batch.users.dtype == batch.pos_items.dtype == torch.long


def test_subgraph_weights_take_the_requested_dtype():
    """A float64 model's batches need float64 weights to be exact to float64 rounding
    (they were float32 whatever the model)."""
    ei = random_edges(30, 20, 300, 0)
    torch.manual_seed(0)
    model = GraphCF.lightgcn(30, 20, 4, num_layers=2, edge_index=ei).double()
    u_full, i_full = model()
    loader = InteractionLoader(
        ei, 30, 20, batch_size=64, num_neighbors=[-1, -1], num_negatives=2, dtype=torch.float64
    )
    for batch in loader:
        inputs = batch.model_inputs()
        assert all(w.dtype == torch.float64 for w in inputs["edge_weight"])
        u, i = model(**inputs)
        torch.testing.assert_close(u[batch.user_index], u_full[batch.users], rtol=0, atol=1e-14)
        torch.testing.assert_close(i[batch.neg_index], i_full[batch.neg_items], rtol=0, atol=1e-14)
    default = next(iter(InteractionLoader(ei, 30, 20, batch_size=64, num_neighbors=[-1])))
    assert all(w.dtype == torch.float32 for w in default.model_inputs()["edge_weight"])
    with pytest.raises(ConfigError, match=r"dtype .* must be a floating torch\.dtype"):
        InteractionLoader(ei, 30, 20, dtype=torch.long)
