import logging
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_cf.data import (
    REV_EDGE,
    USER_ITEM,
    drop_duplicates,
    encode_ids,
    from_dataframe,
    from_splits,
    held_out_edges,
    k_core,
    random_split,
    train_edges,
)
from pyg_cf.errors import ConfigError, DataFormatError


def test_keep_dense_maps_negative_integer_ids_instead_of_turning_them_into_minus_one():
    df = pd.DataFrame({"user": [-1, 0, 1], "item": [0, 1, 2]})
    (enc,), m = encode_ids(df, keep_dense=True)
    # -1 used to fall outside arange(max + 1) and come back as -1 (read as the last user)
    assert m.num_users == 3 and enc["user"].tolist() == [0, 1, 2]
    assert m.users.tolist() == [-1, 0, 1]
    assert enc["item"].tolist() == [0, 1, 2] and m.num_items == 3  # 0..n-1 kept dense
    (enc,), m = encode_ids(pd.DataFrame({"user": [0, 3], "item": [1, 2]}), keep_dense=True)
    assert m.num_users == 4 and enc["user"].tolist() == [0, 3]


def test_keep_dense_refuses_ids_far_beyond_the_distinct_count():
    # 2 distinct items, the largest 4e12: a dense range would hold 4e12 items (29 TiB of
    # ids; 3e9 would be 22 GiB); the rule is max id + 1 <= 2 * distinct + 1,000,000
    limit = 2 * 2 + 1_000_000
    ok = pd.DataFrame({"user": [0, limit - 1], "item": [0, 1]})
    (enc,), m = encode_ids(ok, keep_dense=True)
    assert m.num_users == limit and enc["user"].tolist() == [0, limit - 1]
    for big in (limit, 4_000_000_000_000, 2**63 - 1):
        df = pd.DataFrame({"user": [0, 1], "item": [0, big]})
        with pytest.raises(ConfigError, match=f"largest item id is {big}, but there are only 2"):
            encode_ids(df, keep_dense=True)
        (enc,), m = encode_ids(df)  # mapped without keep_dense
        assert m.items.tolist() == [0, big] and enc["item"].tolist() == [0, 1]


def test_mixed_type_ids_are_split_and_encoded():
    # ints mixed with strings used to fail with a bare TypeError in np.argsort
    df = pd.DataFrame({"user": [1, "a", 1, "a", 1, "a"], "item": [0, 1, 2, 0, 3, 4]})
    parts = random_split(df, (0.5, 0.5), seed=0)
    assert parts[0]["user"].value_counts().to_dict() == {1: 2, "a": 2}  # 3 rows: 2 / 1
    assert sorted(map(tuple, pd.concat(parts)[["user", "item"]].astype(str).values)) == sorted(
        map(tuple, df.astype(str).values)
    )
    data = from_dataframe(df, ratios=(0.5, 0.5))
    assert data["user"].num_nodes == 2 and train_edges(data).size(1) == 4


def test_encode_ids_any_type_and_map_back():
    df = pd.DataFrame({"user": ["b", "a", "b"], "item": [10.5, 3.0, 3.0]})
    (enc,), m = encode_ids(df)
    assert m.num_users == 2 and m.num_items == 2
    assert list(m.users[enc["user"]]) == ["b", "a", "b"]
    assert list(m.items[enc["item"]]) == [10.5, 3.0, 3.0]
    assert m.user_index(["a"]).tolist() == [enc["user"][1]]
    with pytest.raises(KeyError):
        m.user_index(["zzz"])


def test_drop_duplicates_logs(caplog):
    df = pd.DataFrame({"user": [0, 0, 1], "item": [1, 1, 1]})
    with caplog.at_level(logging.WARNING):  # dropped data is never silent
        out = drop_duplicates(df)
    assert len(out) == 2
    assert "dropped 1 duplicate" in caplog.text


def test_k_core_iterates_until_stable():
    # user 2 has 1 interaction -> removed, which leaves item 2 with 1 -> removed, etc.
    df = pd.DataFrame({"user": [0, 0, 1, 1, 2, 3, 3], "item": [0, 1, 0, 1, 2, 2, 0]})
    out = k_core(df, 2, 2)
    assert sorted(zip(out["user"], out["item"])) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert (out.groupby("user").size() >= 2).all() and (out.groupby("item").size() >= 2).all()
    # different thresholds for the two sides: user 0 has 3 interactions, item 0 has 3
    df = pd.DataFrame({"user": [0, 0, 0, 1, 1, 2], "item": [0, 1, 2, 0, 1, 0]})
    assert sorted(zip(*k_core(df, 3, 1)[["user", "item"]].T.values)) == [(0, 0), (0, 1), (0, 2)]
    assert sorted(zip(*k_core(df, 1, 3)[["user", "item"]].T.values)) == [(0, 0), (1, 0), (2, 0)]


def test_random_split_per_user_ratios_and_seed():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": np.repeat(np.arange(100), 20), "item": rng.permutation(2000)})
    a = random_split(df, (0.7, 0.1, 0.2), seed=3)
    b = random_split(df, (0.7, 0.1, 0.2), seed=3)
    c = random_split(df, (0.7, 0.1, 0.2), seed=4)
    assert [len(p) for p in a] == [1400, 200, 400]
    assert all(x.equals(y) for x, y in zip(a, b))
    assert not a[0].equals(c[0])
    keys = [set(zip(p["user"], p["item"])) for p in a]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert (a[0].groupby("user").size() == 14).all()
    # cuts at round-half-up of n * (0.7, 0.8, 1.0), the training part at least 1:
    # n = 8: 5.6, 6.4 -> 6 / 0 / 2; n = 3: 2.1, 2.4 -> 2 / 0 / 1; n = 5: 3.5, 4.0 -> 4 / 0 / 1;
    # n = 1: 0.7 -> 1 / 0 / 0 (20 rows a user, above, cut exactly: 14 / 2 / 4)
    odd = pd.DataFrame({"user": np.repeat([0, 1, 2, 3], [8, 3, 5, 1]), "item": np.arange(17)})
    sizes = [p.groupby("user").size().to_dict() for p in random_split(odd, (0.7, 0.1, 0.2))]
    assert sizes == [{0: 6, 1: 2, 2: 4, 3: 1}, {}, {0: 2, 1: 1, 2: 1}]


def test_random_split_global():
    df = pd.DataFrame({"user": np.arange(100) % 7, "item": np.arange(100)})
    parts = random_split(df, (0.8, 0.2), per_user=False)
    assert [len(p) for p in parts] == [80, 20]
    # the whole table is shuffled with the seed, not cut in file order
    assert sorted(parts[1]["item"]) != list(range(80, 100))
    again = random_split(df, (0.8, 0.2), per_user=False)
    assert all(a.equals(b) for a, b in zip(parts, again))
    other = random_split(df, (0.8, 0.2), seed=1, per_user=False)
    assert set(other[1]["item"]) != set(parts[1]["item"])
    assert sorted(pd.concat(parts)["item"]) == list(range(100))


def test_from_dataframe_builds_hetero_data():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"uid": rng.integers(0, 30, 600), "iid": rng.integers(0, 40, 600)})
    data = from_dataframe(df, user_col="uid", item_col="iid", seed=1)
    tr = train_edges(data)
    assert torch.equal(data[REV_EDGE].edge_index, tr.flip(0))
    keys = [
        set(map(tuple, e.t().tolist()))
        for e in (tr, held_out_edges(data, "val"), held_out_edges(data, "test"))
    ]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert data[USER_ITEM].edge_index.size(1) == len(keys[0])


def test_from_dataframe_k_core_and_per_user():
    # users 0-9 have 10 items each among items 0-9; user 10 and items 10-11 have one row
    users = np.repeat(np.arange(10), 10)
    items = np.tile(np.arange(10), 10)
    df = pd.DataFrame(
        {"user": [*users, 10, 0], "item": [*items, 10, 11]}
    )  # user 10: 1 row; items 10, 11: 1 row each
    data = from_dataframe(df, ratios=(0.8, 0.2), user_k=2, item_k=2)
    assert (data["user"].num_nodes, data["item"].num_nodes) == (10, 10)
    assert train_edges(data).size(1) + held_out_edges(data, "test").size(1) == 100
    assert from_dataframe(df, ratios=(0.8, 0.2))["user"].num_nodes == 11  # no k-core

    core = df.iloc[:100]
    per_user = from_dataframe(core, ratios=(0.8, 0.2), seed=0)
    counts = torch.bincount(train_edges(per_user)[0], minlength=10)
    assert counts.tolist() == [8] * 10  # each user's 10 rows cut 8 / 2
    whole = from_dataframe(core, ratios=(0.8, 0.2), seed=0, per_user=False)
    counts = torch.bincount(train_edges(whole)[0], minlength=10)
    assert int(counts.sum()) == 80 and counts.tolist() != [8] * 10  # cut over the table


def test_from_dataframe_bad_columns():
    with pytest.raises(ConfigError, match="uid"):
        from_dataframe(pd.DataFrame({"user": [1], "item": [2]}), user_col="uid")
    with pytest.raises(DataFormatError, match="missing value"):
        from_dataframe(pd.DataFrame({"user": [1, None], "item": [2, 3]}))


def test_from_dataframe_refuses_what_is_not_a_frame_and_repeated_columns():
    with pytest.raises(DataFormatError, match="expected a pandas DataFrame, got list"):
        from_dataframe([[0, 1]])
    twice = pd.DataFrame([[0, 1, 2], [1, 2, 3]], columns=["user", "item", "item"])
    with pytest.raises(DataFormatError, match=r"repeated column name\(s\) \['item'\]"):
        from_dataframe(twice)


@pytest.mark.parametrize("k", ["5", 2.5, True, -1])
def test_k_core_thresholds_must_be_non_negative_integers(k):
    df = pd.DataFrame({"user": np.repeat(np.arange(10), 10), "item": np.arange(100) % 20})
    with pytest.raises(ConfigError, match=f"user_k must be an integer >= 0, got {k!r}"):
        from_dataframe(df, user_k=k, item_k=2)
    assert len(k_core(df, np.int64(2), 2)) == 100  # numpy integers are integers


@pytest.mark.parametrize("level", ["user", "item"])
def test_k_core_ignores_an_index_named_like_a_column(level):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 20, 300), "item": rng.integers(0, 30, 300)})
    df = df.drop_duplicates()
    indexed = df.set_index(level, drop=False)  # groupby('user') was ambiguous: a crash
    expected = k_core(df.reset_index(drop=True), 3, 3)
    pd.testing.assert_frame_equal(k_core(indexed, 3, 3), expected)
    data = from_dataframe(indexed, user_k=2, item_k=2)
    assert data["user"].num_nodes > 0


def test_cold_start_policies(tiny_frames, caplog):
    train, val, test = tiny_frames
    with caplog.at_level(logging.WARNING):
        kept = from_splits(train, val, test)
    assert "cold-start" in caplog.text
    dropped = from_splits(train, val, test, cold_start="drop")
    assert held_out_edges(dropped, "test").size(1) == held_out_edges(kept, "test").size(1) - 1
    with pytest.raises(ConfigError, match="never appears in training"):
        from_splits(train, val, test, cold_start="error")


@pytest.mark.parametrize("ratios", [(float("nan"), 0.5), (0.7, float("inf"), 0.2)])
def test_random_split_rejects_non_finite_ratios(ratios):
    df = pd.DataFrame({"user": np.repeat(np.arange(10), 10), "item": np.arange(100)})
    with pytest.raises(ConfigError, match="finite"):
        random_split(df, ratios)


@pytest.mark.parametrize("seed", ["x", 1.5, True, -1])
def test_random_split_rejects_a_seed_that_is_not_a_non_negative_integer(seed):
    df = pd.DataFrame({"user": np.repeat(np.arange(10), 10), "item": np.arange(100)})
    with pytest.raises(ConfigError, match=f"seed must be a non-negative integer, got {seed!r}"):
        random_split(df, seed=seed)
    assert len(random_split(df, seed=np.int64(3))[0]) == 70  # numpy integers are integers


def test_from_dataframe_column_collision_and_string_ratings():
    df = pd.DataFrame({"user": [9, 9, 9], "uid": [0, 1, 2], "iid": [0, 0, 1]})
    with pytest.raises(ConfigError, match="already has a 'user' column"):
        from_dataframe(df, user_col="uid", item_col="iid")
    df = pd.DataFrame(
        {"user": [0, 0, 0, 1, 1, 1], "item": [0, 1, 2, 0, 1, 2], "rating": list("541452")}
    )
    data = from_dataframe(df, ratios=(1, 0), min_rating=4)
    assert sorted(map(tuple, train_edges(data).t().tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_missing_held_out_split_is_on_the_edges_device():
    data = HeteroData()
    data[USER_ITEM].edge_index = torch.empty(2, 3, dtype=torch.long, device="meta")
    assert held_out_edges(data, "val").device.type == "meta"


def test_from_splits_keeps_train_val_and_test_apart(tiny_frames, caplog):
    # a held-out pair that is also a training pair, and a test pair that is also a
    # validation pair, are dropped from the later split (with a log line naming which)
    train, _, _ = tiny_frames
    val = pd.DataFrame({"user": [0, 2], "item": [2, 3]})
    test = pd.DataFrame({"user": [0, 1, 2, 0], "item": [2, 0, 1, 1]})  # (0,2) val, (0,1) train
    data = from_splits(train, val, test, keep_dense=True)
    assert held_out_edges(data, "val").t().tolist() == [[0, 2], [2, 3]]
    assert held_out_edges(data, "test").t().tolist() == [[1, 0], [2, 1]]
    assert "test: dropped 1 pair(s) that are also training pairs" in caplog.text
    assert "test: dropped 1 pair(s) that are also validation pairs" in caplog.text
    keys = [set(map(tuple, e.t().tolist())) for e in (train_edges(data),
            held_out_edges(data, "val"), held_out_edges(data, "test"))]  # fmt: skip
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


def test_empty_frames_do_not_change_the_id_handling():
    # pd.DataFrame(columns=...) holds object columns: joined with the integer ids they made
    # keep_dense fall back to mapping (4 items became 3) and the map unsorted
    train = pd.DataFrame({"user": [0, 2, 1], "item": [3, 1, 2]})
    empty = pd.DataFrame(columns=["user", "item"])
    data = from_splits(train, val=empty, keep_dense=True)
    assert (data["user"].num_nodes, data["item"].num_nodes) == (3, 4)
    assert sorted(map(tuple, train_edges(data).t().tolist())) == [(0, 3), (1, 2), (2, 1)]
    (enc, enc_empty), m = encode_ids(train, empty)
    assert m.users.tolist() == [0, 1, 2] and m.items.tolist() == [1, 2, 3]
    assert enc["item"].tolist() == [2, 0, 1] and len(enc_empty) == 0
    assert enc_empty["user"].dtype == np.int64


def test_int64_and_uint64_ids_stay_exact():
    # joined through float64, 2**53 + 1 came back as 2**53 (and would merge with it)
    big = 2**53 + 1
    a = pd.DataFrame({"user": np.array([big, 2**53], dtype=np.int64), "item": [0, 1]})
    b = pd.DataFrame({"user": np.array([big], dtype=np.uint64), "item": [1]})
    (ea, eb), m = encode_ids(a, b)
    assert m.users.tolist() == [2**53, big] and m.users.dtype == np.int64
    assert ea["user"].tolist() == [1, 0] and eb["user"].tolist() == [1]
    huge = np.array([2**63 + 3], dtype=np.uint64)  # beyond int64: joined as uint64
    (ea, eb), m = encode_ids(a, pd.DataFrame({"user": huge, "item": [0]}))
    assert m.users.tolist() == [2**53, big, 2**63 + 3]
    assert ea["user"].tolist() == [1, 0] and eb["user"].tolist() == [2]
    neg = pd.DataFrame({"user": np.array([-1], dtype=np.int64), "item": [0]})
    with pytest.raises(DataFormatError, match="column 'user' mixes negative ids with unsigned"):
        encode_ids(neg, pd.DataFrame({"user": huge, "item": [0]}))


def test_float_ids_beside_integer_ids_beyond_2_53_are_exact_or_refused(caplog):
    # joined as float64, 2**60 and 2**60 + 1 merged into one user, and the test pair
    # (2**60, 1) was dropped as "also a training pair" because (2**60 + 1, 1) is one
    a, b = 2**60, 2**60 + 1
    train = pd.DataFrame({"user": np.array([a, b, 7], dtype=np.int64), "item": [0, 1, 1]})
    test = pd.DataFrame({"user": [7.0, 7.0], "item": [1.0, 0.0]})  # whole and below 2**53
    (etr, ete), m = encode_ids(train, test)
    assert m.users.tolist() == [7, a, b] and m.users.dtype == np.int64
    assert etr["user"].tolist() == [1, 2, 0] and ete["user"].tolist() == [0, 0]
    data = from_splits(train, test=test)
    assert data["user"].num_nodes == 3 and data["user"].raw_id.tolist() == [7, a, b]
    raw = data["user"].raw_id
    assert [(int(raw[u]), i) for u, i in held_out_edges(data, "test").t().tolist()] == [(7, 0)]
    assert "test: dropped 1 pair(s) that are also training pairs" in caplog.text  # (7, 1)
    ambiguous = pd.DataFrame({"user": [float(a)], "item": [1.0]})  # may be a rounded b
    for bad in (ambiguous, pd.DataFrame({"user": [7.5], "item": [1.0]})):
        with pytest.raises(DataFormatError, match="column 'user' mixes integer ids beyond"):
            encode_ids(train, bad)
        with pytest.raises(DataFormatError, match=r"column 'user' .*\(test: "):
            from_splits(train, test=bad)
    # integer ids within +-2**53 beside float ids are joined as float64, as before
    small = pd.DataFrame({"user": [1, 2], "item": [0, 1]})
    (_, _), m = encode_ids(small, pd.DataFrame({"user": [2.0, 3.5], "item": [1, 0]}))
    assert m.users.dtype == np.float64 and m.users.tolist() == [1.0, 2.0, 3.5]


def test_object_id_columns_with_big_ints_beside_floats_stay_exact():
    # object columns compare by Python equality, which is exact for int vs float:
    # 2**53 + 1 (object) and 2**53 (float) stay two users, 2**53 as int and as float one
    big = 2**53 + 1
    train = pd.DataFrame({"user": pd.Series([big, 2**53], dtype=object), "item": [0, 1]})
    test = pd.DataFrame({"user": [float(2**53)], "item": [0]})
    (etr, ete), m = encode_ids(train, test)
    assert len(m.users) == 2
    assert etr["user"].tolist() != [0, 0] and sorted(etr["user"].tolist()) == [0, 1]
    assert ete["user"].tolist() == [etr["user"].tolist()[1]]


@pytest.mark.parametrize("ratios", [0.8, ("a", "b"), "0.8", None, (0.8, "x"), [[0.5], [0.5]]])
def test_scalar_or_non_numeric_ratios_are_a_config_error(ratios):
    # a scalar failed inside the message (list(0.8): TypeError), strings in np.asarray
    df = pd.DataFrame({"user": np.repeat(np.arange(10), 10), "item": np.arange(100)})
    msg = "ratios must be a sequence of >= 2 finite non-negative numbers, got "
    msg = re.escape(msg + repr(ratios))
    with pytest.raises(ConfigError, match=msg):
        random_split(df, ratios)
    with pytest.raises(ConfigError, match=msg):
        from_dataframe(df, ratios=ratios)
    assert [len(p) for p in random_split(df, np.array([0.8, 0.2]))] == [80, 20]


def test_id_map_looks_up_mixed_type_ids():
    # np.asarray(["a", 1]) made the strings 'a' and '1', and '1' is not the id 1
    df = pd.DataFrame({"user": [1, "a", 1, "a"], "item": [0, "x", 2, 0]})
    (enc,), m = encode_ids(df)
    dense = dict(zip(df["user"], enc["user"]))
    assert m.user_index(["a", 1]).tolist() == [dense["a"], dense[1]]
    assert m.user_index((1, "a", 1)).tolist() == [dense[1], dense["a"], dense[1]]
    assert m.user_index(np.array(["a", 1], dtype=object)).tolist() == [dense["a"], dense[1]]
    items = dict(zip(df["item"], enc["item"]))
    assert m.item_index(["x", 0, 2]).tolist() == [items["x"], items[0], items[2]]
    with pytest.raises(KeyError, match=r"unknown raw user id\(s\): \['1', 'b'\]"):
        m.user_index([1, "1", "b"])  # the string '1' is not the id 1
