"""Layers and models: the (alpha0, alpha1) propagation layer and the GraphCF family.

``MODELS`` lists the names accepted by :meth:`GraphCF.from_data`: ``'mf'``,
``'svdpp-user'``, ``'svdpp-item'`` and ``'lightgcn'``.
"""

from pyg_cf.nn.conv import BipartiteNormConv, bipartite_norm
from pyg_cf.nn.models import MODELS, GraphCF
from pyg_cf.nn.spmm import CachedAdjacency, spmm_cached

__all__ = [
    "MODELS",
    "BipartiteNormConv",
    "CachedAdjacency",
    "GraphCF",
    "bipartite_norm",
    "spmm_cached",
]
