"""Mini-batch loading: interaction batches with negatives and K-hop neighbor sampling."""

from pyg_cf.loader.csr import BipartiteCSR
from pyg_cf.loader.interaction_loader import CFBatch, InteractionLoader
from pyg_cf.loader.neighbor_sampler import (
    BipartiteNeighborSampler,
    BipartiteSubgraph,
    pyg_sampler_available,
)
from pyg_cf.loader.sampling import sample_neighbors, sample_offsets

__all__ = [
    "BipartiteCSR",
    "BipartiteNeighborSampler",
    "BipartiteSubgraph",
    "CFBatch",
    "InteractionLoader",
    "pyg_sampler_available",
    "sample_neighbors",
    "sample_offsets",
]
