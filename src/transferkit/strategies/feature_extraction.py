"""Feature extraction and linear probing: frozen backbone in eval mode, a new linear head."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from .base import Strategy, register_strategy
from .phases import HeadPhase

__all__ = ["FeatureExtraction", "LinearProbe", "HEAD_DEFAULTS"]

# A head on cached features: epochs cost milliseconds, and a larger rate suits the standardised
# features. LP-FT's probe phase uses these too (it trains the same head to convergence).
HEAD_DEFAULTS: Mapping[str, Any] = MappingProxyType({"epochs": 60, "lr": 1e-3, "patience": 10, "weight_decay": 1e-4})


@register_strategy
class FeatureExtraction(Strategy):
    """Only a new head trains, on features the frozen backbone encodes once per split.

    Example:
        >>> FeatureExtraction.uses_feature_cache(), FeatureExtraction.trains_backbone()
        (True, False)
    """

    name = "feature-extraction"
    defaults = HEAD_DEFAULTS
    phases = (HeadPhase(),)

    def trainable_backbone_groups(self, backbone: list[str], epoch: int) -> list[str]:
        return []


@register_strategy
class LinearProbe(FeatureExtraction):
    """Feature extraction whose head is a full-batch L-BFGS logistic regression, its L2
    strength chosen on the validation split."""

    name = "linear-probe"
    fixed = MappingProxyType({"head_solver": "lbfgs"})
