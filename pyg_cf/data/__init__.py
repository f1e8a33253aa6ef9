"""Reading interaction data and turning it into a PyG :class:`HeteroData`.

The data object has node types ``'user'`` and ``'item'`` and two edge types, named by
the constants ``USER_ITEM`` (``('user', 'rates', 'item')``: training edges, plus the
held-out ``val_edge_index`` / ``test_edge_index``) and ``REV_EDGE``
(``('item', 'rated_by', 'user')``: the training edges reversed).
"""

from pyg_cf.data.graph import (
    REV_EDGE,
    USER_ITEM,
    build_graph,
    data_fingerprint,
    degrees,
    held_out_edges,
    summarize,
    train_edges,
)
from pyg_cf.data.interactions import (
    IdMap,
    drop_duplicates,
    encode_ids,
    k_core,
    random_split,
    validate_frame,
)
from pyg_cf.data.io import read_adjacency_list, read_edge_list
from pyg_cf.data.loaders import (
    from_dataframe,
    from_edge_list_files,
    from_lightgcn_files,
    from_splits,
)

__all__ = [
    "REV_EDGE",
    "USER_ITEM",
    "IdMap",
    "build_graph",
    "data_fingerprint",
    "degrees",
    "drop_duplicates",
    "encode_ids",
    "from_dataframe",
    "from_edge_list_files",
    "from_lightgcn_files",
    "from_splits",
    "held_out_edges",
    "k_core",
    "random_split",
    "read_adjacency_list",
    "read_edge_list",
    "summarize",
    "train_edges",
    "validate_frame",
]
