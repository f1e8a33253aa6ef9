import numpy as np
import pandas as pd
import pytest
import torch

from pyg_cf.data import from_splits
from pyg_cf.diagnostics import magnitude_slopes, magnitude_summary, magnitude_vs_degree
from pyg_cf.errors import ConfigError
from pyg_cf.nn import GraphCF


@pytest.fixture
def star_data():
    """Item k is rated by users 0..2^k - 1 (item degrees 1, 2, 4, 8); 8 users."""
    rows = [(u, k) for k in range(4) for u in range(2**k)]
    train = pd.DataFrame(rows, columns=["user", "item"])
    return from_splits(train, name="star", keep_dense=True)


def test_hand_checked_norms(tiny_data):
    u = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    i = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    df = magnitude_vs_degree((u, i), tiny_data)
    users = df[df["node_type"] == "user"]
    items = df[df["node_type"] == "item"]
    assert users["degree"].tolist() == [2, 3, 1, 2]
    assert items["degree"].tolist() == [2, 2, 2, 2, 0]
    assert users["norm"].tolist() == [5.0, 1.0, 1.0, 0.0]
    assert items["sq_norm"].tolist() == [2.0, 4.0, 0.0, 9.0, 1.0]
    assert items["node"].tolist() == [0, 1, 2, 3, 4]
    assert df.attrs == {}
    only = magnitude_vs_degree((u, i), tiny_data, node_types=("item",))
    assert set(only["node_type"]) == {"item"}


def test_slope_and_summary(star_data):
    deg = torch.tensor([1.0, 2.0, 4.0, 8.0])
    items = deg.sqrt().unsqueeze(1) * torch.tensor([[0.6, 0.8]])  # norm = degree^0.5
    users = torch.ones(8, 2)
    df = magnitude_vs_degree((users, items), star_data)
    slopes = magnitude_slopes(df)
    assert slopes["item"].slope == pytest.approx(0.5)
    assert slopes["item"].r2 == pytest.approx(1.0)
    assert magnitude_slopes(df, "sq_norm")["item"].slope == pytest.approx(1.0)
    assert slopes["user"].slope == pytest.approx(0.0, abs=1e-12)
    s = magnitude_summary(df, num_bins=4)
    it = s[s["node_type"] == "item"]
    assert it["count"].sum() == 4
    assert np.allclose(it["mean"], [1.0, np.sqrt(2), 2.0, np.sqrt(8)])


def test_a_graphcf_model_gives_its_final_embeddings_norms_and_propagation(star_data):
    model = GraphCF.from_data(star_data, "svdpp-item", embedding_dim=8, alpha0=1.0)
    df = magnitude_vs_degree(model, star_data)
    assert df.attrs["alpha0"] == 1.0 and df.attrs["propagated"]["item"]
    assert not df.attrs["propagated"]["user"]
    assert len(df) == 8 + 4
    u, i = model.embeddings()  # the propagated (final) embeddings, not the tables
    items = df[df["node_type"] == "item"]
    assert np.allclose(items["norm"], i.detach().norm(dim=1).numpy(), rtol=1e-6)
    assert not np.allclose(items["norm"], model.item_embedding.weight.detach().norm(dim=1))
    assert np.allclose(df[df["node_type"] == "user"]["norm"], u.detach().norm(dim=1).numpy())


def test_errors(tiny_data):
    u, i = torch.ones(4, 2), torch.ones(5, 2)
    with pytest.raises(ConfigError, match="node_types"):
        magnitude_vs_degree((u, i), tiny_data, node_types=("movie",))
    with pytest.raises(ConfigError, match="rows"):
        magnitude_vs_degree((u, torch.ones(3, 2)), tiny_data)
    df = magnitude_vs_degree((u, i), tiny_data)
    with pytest.raises(ConfigError, match="value"):
        magnitude_slopes(df, "length")
    with pytest.raises(ConfigError, match="magnitude_vs_degree"):
        magnitude_summary(pd.DataFrame({"norm": [1.0]}))
