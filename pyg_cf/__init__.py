"""pyg-cf: graph collaborative filtering on PyTorch Geometric.

The (alpha0, alpha1) propagation family (MF, SVD++, LightGCN), the sampled-softmax loss
family, adaptive temperatures, all-ranking evaluation and embedding diagnostics.
"""

from pyg_cf import data, datasets, loader, losses, metrics, nn, train
from pyg_cf.errors import ConfigError, DataFormatError, PygCFError

#: The package version: the single source (``pyproject.toml`` reads it at build time).
__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataFormatError",
    "PygCFError",
    "__version__",
    "data",
    "datasets",
    "loader",
    "losses",
    "metrics",
    "nn",
    "train",
]
