"""Random bipartite graphs for the loader tests."""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData


def random_edges(num_users: int, num_items: int, num_edges: int, seed: int = 0) -> Tensor:
    """Unique (user, item) pairs with skewed item popularity, sorted by (user, item)."""
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(num_users, (num_edges,), generator=g)
    items = (torch.rand(num_edges, generator=g).pow(2) * num_items).long()
    ei = torch.unique(torch.stack([users, items]), dim=1)
    return ei


def random_data(num_users: int = 60, num_items: int = 40, num_edges: int = 600, seed: int = 0):
    """A pyg-cf data object (train/val/test split) of a random clustered graph."""
    from pyg_cf.data import from_dataframe

    g = torch.Generator().manual_seed(seed)
    users = torch.randint(num_users, (num_edges,), generator=g)
    half = num_items // 2
    items = torch.randint(half, (num_edges,), generator=g) + (users % 2) * half
    df = pd.DataFrame({"user": users.numpy(), "item": items.numpy()})
    return from_dataframe(df, seed=seed)


def as_hetero(ei: Tensor, num_users: int, num_items: int) -> HeteroData:
    from pyg_cf.data.graph import REV_EDGE, USER_ITEM

    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].num_nodes = num_items
    data[USER_ITEM].edge_index = ei
    data[REV_EDGE].edge_index = ei.flip(0).contiguous()
    return data
