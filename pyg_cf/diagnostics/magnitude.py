r"""Embedding magnitude against training degree.

For every node :math:`v` of a node type, the final embedding :math:`\mathbf{e}_v` is put
beside the node's training degree :math:`|\mathcal{P}_v|`: the L2 norm
:math:`\|\mathbf{e}_v\|_2` and its square. Cosine-trained softmax losses need popular and
unpopular items to differ in norm to rank by inner product; propagation with
:math:`(\alpha_0, \alpha_1)` lets a model do that, matrix factorization cannot. Under the
propagation theory (:mod:`pyg_cf.diagnostics.theory`) one hop gives
:math:`\mathbb{E}\|\mathbf{q}'_i\|^2 \propto |\mathcal{P}_i|^{2 - 2\alpha_0}` for large degrees
when the initial embeddings have a non-zero mean, i.e. a log–log slope of
:math:`1 - \alpha_0` for the norm.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from torch_geometric.data import HeteroData

from pyg_cf.data.graph import degrees
from pyg_cf.diagnostics.binning import SlopeFit, binned_summary, fit_loglog_slope
from pyg_cf.diagnostics.embeddings import EmbeddingSource, final_embeddings, propagation_info
from pyg_cf.errors import ConfigError

__all__ = ["magnitude_slopes", "magnitude_summary", "magnitude_vs_degree"]

NODE_TYPES = ("user", "item")


def check_node_types(node_types: Sequence[str]) -> tuple[str, ...]:
    """``node_types`` as a tuple; a :class:`ConfigError` unless it is a non-empty sequence
    of ``'user'`` / ``'item'``. A bare string is refused: ``'item'`` would otherwise read
    as ``('i', 't', 'e', 'm')``; pass ``('item',)``."""
    if isinstance(node_types, str) or not isinstance(node_types, Iterable):
        raise ConfigError(
            f"node_types must be a non-empty sequence drawn from {NODE_TYPES} "
            f"(e.g. ('item',)), got {node_types!r}"
        )
    types = tuple(node_types)
    if not types or any(t not in NODE_TYPES for t in types):
        raise ConfigError(f"node_types must be a non-empty subset of {NODE_TYPES}, got {types!r}")
    return types


def magnitude_vs_degree(
    model: EmbeddingSource,
    data: HeteroData,
    node_types: Sequence[str] = NODE_TYPES,
) -> pd.DataFrame:
    r"""Each node's final-embedding norm beside its training degree.

    Args:
        model: A :class:`~pyg_cf.nn.GraphCF`, any module whose ``forward()`` returns
            ``(user_emb, item_emb)``, or that pair of tensors.
        data: The pyg-cf data object the model was trained on (degrees are counted on its
            training edges).
        node_types: Which of ``'user'`` and ``'item'`` to report.

    Returns:
        One row per node: ``node_type``, ``node`` (dense id), ``degree``, ``norm``
        (:math:`\|\mathbf{e}_v\|_2`) and ``sq_norm``. For a :class:`GraphCF`,
        ``df.attrs`` holds ``alpha0``, ``alpha1`` and ``propagated``
        (``{'user': bool, 'item': bool}``).
    """
    node_types = check_node_types(node_types)
    emb = dict(zip(NODE_TYPES, final_embeddings(model)))
    deg = dict(zip(NODE_TYPES, degrees(data)))
    frames = []
    for t in node_types:
        e, d = emb[t], deg[t]
        if e.size(0) != d.numel():
            raise ConfigError(
                f"{t} embeddings have {e.size(0)} rows but the data has {d.numel()} {t}s"
            )
        sq = e.double().pow(2).sum(1).cpu().numpy()
        frames.append(
            pd.DataFrame(
                {
                    "node_type": t,
                    "node": np.arange(d.numel()),
                    "degree": d.cpu().numpy(),
                    "norm": np.sqrt(sq),
                    "sq_norm": sq,
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    df.attrs.update(propagation_info(model))
    return df


def magnitude_summary(df: pd.DataFrame, value: str = "norm", num_bins: int = 12) -> pd.DataFrame:
    """Per node type, the summary of ``value`` in log-spaced degree bins
    (:func:`~pyg_cf.diagnostics.binning.binned_summary`: mean, median, quartiles).

    Args:
        df: The output of :func:`magnitude_vs_degree`.
        value: ``'norm'`` or ``'sq_norm'``.
        num_bins: Number of bins per node type.

    Returns:
        The binned rows with a leading ``node_type`` column.
    """
    _check_value(df, value)
    parts = []
    for t, g in df.groupby("node_type", sort=False):
        b = binned_summary(g["degree"], g[value], num_bins)
        b.insert(0, "node_type", t)
        parts.append(b)
    return pd.concat(parts, ignore_index=True)


def magnitude_slopes(
    df: pd.DataFrame, value: str = "norm", binned: bool = False, num_bins: int = 12
) -> dict[str, SlopeFit]:
    r"""Per node type, the log–log slope of ``value`` against degree
    (:func:`~pyg_cf.diagnostics.binning.fit_loglog_slope`; nodes of degree 0 left out).

    A slope near 0 means norms do not depend on popularity (as in MF); one hop of
    propagation with a non-zero-mean input predicts :math:`1 - \alpha_0` for the norm at
    large degrees.

    Args:
        df: The output of :func:`magnitude_vs_degree`.
        value: ``'norm'`` or ``'sq_norm'``.
        binned: Fit bin means rather than nodes.
        num_bins: Number of bins when ``binned``.
    """
    _check_value(df, value)
    return {
        str(t): fit_loglog_slope(g["degree"], g[value], binned=binned, num_bins=num_bins)
        for t, g in df.groupby("node_type", sort=False)
    }


def _check_value(df: pd.DataFrame, value: str) -> None:
    if value not in ("norm", "sq_norm"):
        raise ConfigError(f"value must be 'norm' or 'sq_norm', got {value!r}")
    if not {"node_type", "degree", value} <= set(df.columns):
        raise ConfigError("df must be the output of magnitude_vs_degree")
