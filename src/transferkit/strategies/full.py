"""Full fine-tuning: every parameter trains, at a low learning rate (the new head higher)."""

from __future__ import annotations

from torch import nn

from .. import surgery
from .base import Strategy


class FullFineTuning(Strategy):
    """All layer groups train; the head's learning rate is ``head_lr_scale`` times the rest.

    The new head starts random while the backbone is already good, so it gets a larger step size
    than the pre-trained layers (which a large rate would wreck).

    Example:
        >>> FullFineTuning().uses_feature_cache
        False
    """

    name = "full"

    def prepare(self, model: nn.Module) -> None:
        surgery.set_trainable_groups(model, lambda name: True)
