"""Feature extraction: frozen backbone in eval mode, a new linear head trains."""

from __future__ import annotations

from torch import nn

from .. import surgery
from .base import Strategy


class FeatureExtraction(Strategy):
    """Only the head trains; the backbone is frozen, in eval mode, and encoded once per split.

    Example:
        >>> strategy = FeatureExtraction()
        >>> strategy.uses_feature_cache
        True
    """

    name = "feature-extraction"
    uses_feature_cache = True

    def prepare(self, model: nn.Module) -> None:
        surgery.set_trainable_groups(model, ["head"])
        model.backbone.eval()
