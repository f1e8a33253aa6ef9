"""Is a released test split distributed like its training split (Gowalla, ML-1M)?

Compares the item popularity of three edge sets of the reproduction's data: the 90 % training
part, the seeded 10 % validation carve (random per user, as ``examples/reproduce.py`` uses)
and the released test split. Popularity is counted on the 90 % training part. An i.i.d. split
gives the same numbers for all three (up to sampling noise; the validation carve shows it).

    python examples/results/data_checks/split_popularity.py [gowalla|ml-1m]
"""

from __future__ import annotations

import sys

import torch

from pyg_cf import datasets
from pyg_cf.data.graph import held_out_edges


def main(name: str) -> None:
    data = datasets.load(name, val_ratio=0.1, seed=0)
    train = data["user", "rates", "item"].edge_index
    num_items = data["item"].num_nodes
    pop = torch.bincount(train[1], minlength=num_items).float()
    order = pop.argsort(descending=True)
    print(
        "| edges | count | mean training popularity of the item | share on the top 1 % items "
        "| share on the top 10 % items |"
    )
    print("|---|---|---|---|---|")
    for label, edges in (
        ("training (90 %)", train),
        ("validation carve (10 %, seed 0)", held_out_edges(data, "val")),
        ("test (released)", held_out_edges(data, "test")),
    ):
        items = edges[1]
        shares = [
            torch.isin(items, order[: max(1, num_items * pct // 100)]).float().mean().item()
            for pct in (1, 10)
        ]
        print(
            f"| {label} | {items.numel()} | {pop[items].mean().item():.1f} "
            f"| {shares[0]:.4f} | {shares[1]:.4f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "gowalla")
