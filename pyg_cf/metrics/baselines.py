"""Non-learned reference recommenders."""

from __future__ import annotations

from collections.abc import Sequence

from torch_geometric.data import HeteroData

from pyg_cf.data.graph import degrees, held_out_edges, train_edges
from pyg_cf.metrics.ranking import evaluate_scores

__all__ = ["popularity_baseline"]


def popularity_baseline(
    data: HeteroData, split: str = "test", ks: int | Sequence[int] = (20,)
) -> dict[str, float]:
    """Metrics of recommending the most popular (most trained-on) unseen items to everyone."""
    _, item_deg = degrees(data)
    pop = item_deg.float()
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    seen = [train_edges(data)]
    if split == "test":
        seen.append(held_out_edges(data, "val"))
    res = evaluate_scores(
        lambda users: pop.expand(users.numel(), ni).clone(),
        nu,
        ni,
        held_out_edges(data, split),
        seen,
        ks,
    )
    assert isinstance(res, dict)
    return res
