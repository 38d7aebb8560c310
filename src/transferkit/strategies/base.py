"""The strategy interface."""

from __future__ import annotations

from typing import Any

from torch import nn

from .. import surgery


class Strategy:
    """Base class: which layer groups train, their learning rates, and per-epoch changes.

    Attributes:
        name: the ``--strategy`` name.
        uses_feature_cache: the backbone is frozen for the whole run, so the loop may encode each
            split once and train the head on cached features.
    """

    name = ""
    uses_feature_cache = False

    def prepare(self, model: nn.Module) -> None:
        """Set ``requires_grad`` for the run's start."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module, lr: float, head_lr_scale: float) -> list[dict[str, Any]]:
        """AdamW parameter groups with peak learning rates, one per trainable layer group.

        Each group carries its layer-group ``name`` so schedules and logs can refer to it.
        """
        groups = []
        for group in surgery.layer_groups(model):
            names = set(group.param_names)
            params = [p for n, p in model.named_parameters() if n in names and p.requires_grad]
            if params:
                scale = head_lr_scale if group.name == "head" else 1.0
                groups.append({"params": params, "lr": lr * scale, "name": group.name})
        return groups

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called after ``model.train()`` at the start of every epoch.

        Frozen layer groups always keep their BatchNorm layers in eval mode, so running statistics
        learned on the pre-training data do not drift on small target batches.
        """
        surgery.frozen_batchnorm_eval(model)
