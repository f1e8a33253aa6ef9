import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from pyg_cf.data import from_dataframe
from pyg_cf.errors import ConfigError, DataFormatError
from pyg_cf.nn import GraphCF
from pyg_cf.nn.export import load_embeddings


@pytest.fixture
def string_id_data():
    rng = np.random.default_rng(0)
    users = [f"u{k}" for k in rng.integers(0, 12, 120)]
    items = [f"item-{k}" for k in rng.integers(0, 9, 120)]
    return from_dataframe(pd.DataFrame({"user": users, "item": items}), seed=0)


def test_export_roundtrip_with_raw_ids(tmp_path, string_id_data):
    data = string_id_data
    model = GraphCF.from_data(data, "lightgcn", embedding_dim=6)
    folder = model.export(tmp_path / "emb", data=data)
    got = load_embeddings(folder)
    u, i = model.embeddings()
    np.testing.assert_array_equal(got.user_embedding, u.numpy())
    np.testing.assert_array_equal(got.item_embedding, i.numpy())
    assert got.user_id.tolist() == [str(v) for v in data["user"].raw_id]
    # the raw-id map is right: rows of a raw user equal the model's scores
    raw = [str(data["user"].raw_id[3]), str(data["user"].raw_id[0])]
    expect = model.score(torch.tensor([3, 0])).numpy()
    np.testing.assert_allclose(got.score(raw), expect, rtol=1e-5, atol=1e-6)
    assert got.meta["settings"]["num_layers"] == 3
    users_csv = pd.read_csv(tmp_path / "emb" / "users.csv")
    assert users_csv["raw_id"].astype(str).tolist() == got.user_id.tolist()
    # the CSV's row of raw id X carries X's own index: the row of X's embedding
    users_csv = pd.read_csv(tmp_path / "emb" / "users.csv", dtype=str, keep_default_na=False)
    own = {str(r): k for k, r in enumerate(data["user"].raw_id)}
    for idx, raw in zip(users_csv["index"].astype(int), users_csv["raw_id"], strict=True):
        assert idx == own[raw], raw
        np.testing.assert_array_equal(got.user_embedding[idx], u[own[raw]].numpy())
    with pytest.raises(ConfigError, match="unknown raw user"):
        got.user_index(["nobody"])


def test_export_is_readable_without_pyg_cf(tmp_path):
    model = GraphCF.mf(5, 4, embedding_dim=3)
    model.export(tmp_path / "e", user_ids=[10, 11, 12, 13, 14])
    code = (
        "import numpy as np, sys; z = np.load(sys.argv[1] + '/embeddings.npz', "
        "allow_pickle=False); assert 'pyg_cf' not in sys.modules and 'torch' not in sys.modules; "
        "print(z['user_embedding'].shape, z['user_id'].tolist())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "e")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "(5, 3) [10, 11, 12, 13, 14]" in out.stdout
    meta = json.loads((tmp_path / "e" / "meta.json").read_text())
    assert meta["num_users"] == 5 and meta["embedding_dim"] == 3


def test_export_errors(tmp_path):
    model = GraphCF.mf(5, 4, embedding_dim=3)
    with pytest.raises(ConfigError, match="user_ids must be a sequence of 5"):
        model.export(tmp_path / "x", user_ids=[1, 2])
    with pytest.raises(DataFormatError, match="does not exist"):
        load_embeddings(tmp_path / "missing")


def _id_csv(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_csv_index_column_maps_each_raw_id_to_its_row(tmp_path):
    model = GraphCF.mf(5, 4, embedding_dim=3)
    uid, iid = [14, 10, 12, 11, 13], ["d", "b", "a", "c"]  # not in sorted order
    model.export(tmp_path / "e", user_ids=uid, item_ids=iid)
    u, i = (t.detach().numpy() for t in model.embeddings())
    emb = np.load(tmp_path / "e" / "embeddings.npz", allow_pickle=False)
    for name, ids, table, key in (
        ("users.csv", uid, u, "user_embedding"), ("items.csv", iid, i, "item_embedding"),
    ):  # fmt: skip
        csv = _id_csv(tmp_path / "e" / name)
        assert list(csv.columns) == ["index", "raw_id"]
        assert sorted(csv["index"].astype(int)) == list(range(len(ids)))
        for idx, raw in zip(csv["index"].astype(int), csv["raw_id"], strict=True):
            k = [str(x) for x in ids].index(raw)  # row k of the model is raw id `raw`
            assert idx == k, (name, raw, idx)
            np.testing.assert_array_equal(emb[key][idx], table[k])


def test_load_refuses_a_raw_id_map_that_disagrees(tmp_path):
    model = GraphCF.mf(5, 4, embedding_dim=3)
    folder = tmp_path / "e"
    model.export(folder, user_ids=[14, 10, 12, 11, 13])
    csv = _id_csv(folder / "users.csv")
    csv["index"] = csv["index"].iloc[::-1].to_numpy()  # rows point at other raw ids
    csv.to_csv(folder / "users.csv", index=False)
    with pytest.raises(DataFormatError, match=r"users\.csv.*does not match"):
        load_embeddings(folder)
    model.export(folder, user_ids=[14, 10, 12, 11, 13])  # rewritten: consistent again
    assert load_embeddings(folder).user_id.tolist() == [14, 10, 12, 11, 13]
    (folder / "items.csv").write_text("row,id\n0,0\n")
    with pytest.raises(DataFormatError, match=r"items\.csv.*columns"):
        load_embeddings(folder)
    (folder / "items.csv").unlink()  # the CSV maps are optional: the npz holds the ids
    assert load_embeddings(folder).item_id.tolist() == [0, 1, 2, 3]


def test_string_raw_ids_that_look_missing_round_trip(tmp_path):
    # pandas reads "NA", "", "null", "nan", "None", "#N/A" as NaN by default
    uid = ["NA", "", "null", "001", ' a "quoted", id ']
    iid = ["nan", "None", "#N/A", "x"]
    model = GraphCF.mf(5, 4, embedding_dim=3)
    folder = model.export(tmp_path / "e", user_ids=uid, item_ids=iid)
    got = load_embeddings(folder)  # also checks the CSV maps against the npz
    assert got.user_id.tolist() == uid and got.item_id.tolist() == iid
    assert got.user_index(["", "NA", "001"]).tolist() == [1, 0, 3]
    assert got.item_index(["#N/A", "nan"]).tolist() == [2, 0]
    expect = model.score(torch.tensor([0, 1])).detach().numpy()
    np.testing.assert_allclose(got.score(["NA", ""]), expect, rtol=1e-5, atol=1e-6)
    assert _id_csv(tmp_path / "e" / "users.csv")["raw_id"].tolist() == uid
    assert _id_csv(tmp_path / "e" / "items.csv")["raw_id"].tolist() == iid


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"user_ids": [1, 2, 1, 3, 2]}, r"user_ids must be unique, got 2 .* first: \[1, 2\]"),
        ({"item_ids": ["a", "b", "a", "c"]}, r"item_ids must be unique, .* first: \['a'\]"),
        ({"item_ids": [1, "1", 2, 3]}, r"item_ids must be unique, .* first: \['1'\]"),  # as str
    ],
    ids=["int-users", "str-items", "mixed-items"],
)
def test_duplicate_raw_ids_are_refused(tmp_path, kw, match):
    # they were written, and load_embeddings(...).item_index then raised InvalidIndexError
    model = GraphCF.mf(5, 4, embedding_dim=3)
    with pytest.raises(ConfigError, match=match):
        model.export(tmp_path / "dup", **kw)
    assert not (tmp_path / "dup").exists()  # refused before anything is written


def test_unsigned_raw_ids_beyond_int64_round_trip(tmp_path):
    """uint64 raw ids of 2^63 and above were stored as int64 (wrapped negative): a lookup by
    the true raw id then failed."""
    import numpy as np
    import pandas as pd

    from pyg_cf.data import from_dataframe
    from pyg_cf.nn import GraphCF
    from pyg_cf.nn.export import load_embeddings

    big = np.uint64(2**63 + 5)
    users = np.array([big, big + np.uint64(1), big + np.uint64(2)] * 4, dtype=np.uint64)
    df = pd.DataFrame({"user": users, "item": np.arange(1, 13, dtype=np.uint64)})
    data = from_dataframe(df, seed=0)
    GraphCF.from_data(data, "mf", embedding_dim=2).export(tmp_path, data=data)
    got = load_embeddings(tmp_path)
    assert got.user_id.dtype == np.uint64 and int(got.user_id.max()) == 2**63 + 7
    rows = got.user_index([2**63 + 5, 2**63 + 7])
    assert [int(got.user_id[r]) for r in rows] == [2**63 + 5, 2**63 + 7]


def test_raw_ids_with_a_carriage_return_round_trip(tmp_path):
    # the CSV writer did not quote a bare "\r", which readers take as a line break:
    # load_embeddings then refused the folder it had just written
    uid = ["a", "\r", "x\ry", "\r\n", "", 'q"\r,', "NA"]
    model = GraphCF.mf(len(uid), 2, embedding_dim=3)
    folder = model.export(tmp_path / "e", user_ids=uid, item_ids=["p", "q"])
    got = load_embeddings(folder)  # also checks the CSV maps against the npz
    assert got.user_id.tolist() == uid and got.item_index(["q"]).tolist() == [1]
    assert _id_csv(tmp_path / "e" / "users.csv")["raw_id"].tolist() == uid
    # files without such ids are written as before (and old exports still load)
    assert (tmp_path / "e" / "items.csv").read_bytes() == b"index,raw_id\n0,p\n1,q\n"
