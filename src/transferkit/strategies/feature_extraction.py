"""Feature extraction and linear probing: frozen backbone in eval mode, a new linear head."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from .base import Strategy, register_strategy
from .phases import HeadPhase

__all__ = ["FeatureExtraction", "LinearProbe", "HEAD_DEFAULTS"]

# The AdamW head's settings (--head-solver adamw): epochs cost milliseconds on cached features, and
# a larger rate suits the standardised features. LP-FT's probe phase uses these too. The default
# head is L-BFGS logistic regression (config.head_solver), which needs none of them.
HEAD_DEFAULTS: Mapping[str, Any] = MappingProxyType({"epochs": 60, "lr": 1e-3, "patience": 10, "weight_decay": 1e-4})


@register_strategy
class FeatureExtraction(Strategy):
    """Only a new head trains, on features the frozen backbone encodes once per split.

    The head is chosen and refitted by ``train.head_select``: L-BFGS logistic regression with
    its L2 strength chosen by k-fold cross-validation (tiny validation splits) or on validation,
    then fitted again on train + validation; ``--head-solver adamw`` trains it in mini-batch
    epochs instead (the epoch count chosen the same way), ``--no-refit`` skips the refit.

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
    """Feature extraction whose head is always a full-batch L-BFGS logistic regression (the
    classic linear-probe protocol), whatever ``--head-solver`` says; feature extraction uses the
    same head by default."""

    name = "linear-probe"
    fixed = MappingProxyType({"head_solver": "lbfgs"})
