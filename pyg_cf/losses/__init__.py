"""Loss functions for implicit-feedback recommendation, selectable by name.

>>> from pyg_cf.losses import get_loss
>>> loss = get_loss("ssm", tau=0.1, similarity="cos")

Registered names: ``bpr``, ``bce``, ``mse``, ``softmax``, ``ssm``, ``bsl``, ``ccl``, ``mml``,
``hinge``, ``directau``. Temperature schedules (fixed, Adap-τ0, Adap-τ) live in
:mod:`pyg_cf.losses.temperature` (imported lazily: they are trainer callbacks).
"""

from typing import Any

from pyg_cf.losses.alignment import DirectAULoss, directau_loss
from pyg_cf.losses.base import CFLoss, LossBatch, similarity
from pyg_cf.losses.margin import (
    CosineContrastiveLoss,
    HingeLoss,
    MultiMarginLoss,
    ccl_loss,
    hinge_loss,
    mml_loss,
)
from pyg_cf.losses.negatives import NegativeSampler
from pyg_cf.losses.pairwise import BPRLoss, bpr_loss
from pyg_cf.losses.pointwise import (
    BinaryCrossEntropyLoss,
    MeanSquaredErrorLoss,
    bce_loss,
    mse_loss,
)
from pyg_cf.losses.registry import get_loss, list_losses, register_loss
from pyg_cf.losses.softmax import (
    BSLLoss,
    SampledSoftmaxLoss,
    SoftmaxLoss,
    bsl_loss,
    sampled_softmax_loss,
    softmax_loss,
)

_LAZY = {
    "AdapTau",
    "AdapTau0",
    "FixedTemperature",
    "TemperatureSchedule",
    "get_temperature_schedule",
    "lambertw",
}

__all__ = [
    "AdapTau",
    "AdapTau0",
    "BPRLoss",
    "BSLLoss",
    "BinaryCrossEntropyLoss",
    "CFLoss",
    "CosineContrastiveLoss",
    "DirectAULoss",
    "FixedTemperature",
    "HingeLoss",
    "LossBatch",
    "MeanSquaredErrorLoss",
    "MultiMarginLoss",
    "NegativeSampler",
    "SampledSoftmaxLoss",
    "SoftmaxLoss",
    "TemperatureSchedule",
    "bce_loss",
    "bpr_loss",
    "bsl_loss",
    "ccl_loss",
    "directau_loss",
    "get_loss",
    "get_temperature_schedule",
    "hinge_loss",
    "lambertw",
    "list_losses",
    "mml_loss",
    "mse_loss",
    "register_loss",
    "sampled_softmax_loss",
    "similarity",
    "softmax_loss",
]


def __getattr__(name: str) -> Any:
    # The schedules subclass pyg_cf.train.Callback, and pyg_cf.train imports this package:
    # importing them on first use avoids the cycle.
    if name in _LAZY:
        from pyg_cf.losses import temperature

        return getattr(temperature, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
