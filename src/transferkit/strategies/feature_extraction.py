"""Feature extraction and linear probing: frozen backbone in eval mode, a new linear head."""

from __future__ import annotations

from .base import Strategy


class FeatureExtraction(Strategy):
    """Only the head trains; the backbone is frozen, in eval mode, and encoded once per split.

    Example:
        >>> FeatureExtraction().uses_feature_cache
        True
    """

    name = "feature-extraction"
    phases = ("head",)

    def trainable_backbone_groups(self, backbone: list[str], epoch: int) -> list[str]:
        return []


class LinearProbe(FeatureExtraction):
    """Feature extraction whose head is fitted by full-batch L-BFGS logistic regression, with the
    L2 strength chosen on the validation split (``head_solver = lbfgs``)."""

    name = "linear-probe"
