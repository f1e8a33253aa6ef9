"""Loss functions for implicit-feedback recommendation, selectable by name.

>>> from pyg_cf.losses import get_loss
>>> loss = get_loss("ssm", tau=0.1, similarity="cos")
"""

from pyg_cf.losses.base import CFLoss, LossBatch, similarity
from pyg_cf.losses.pairwise import BPRLoss, bpr_loss
from pyg_cf.losses.registry import get_loss, list_losses, register_loss
from pyg_cf.losses.softmax import SampledSoftmaxLoss, sampled_softmax_loss

__all__ = [
    "BPRLoss",
    "CFLoss",
    "LossBatch",
    "SampledSoftmaxLoss",
    "bpr_loss",
    "get_loss",
    "list_losses",
    "register_loss",
    "sampled_softmax_loss",
    "similarity",
]
