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
