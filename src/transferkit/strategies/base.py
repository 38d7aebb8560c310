"""The strategy interface: which layer groups train at each epoch, their rates, BatchNorm modes.

A strategy never runs the loop. The loop calls :meth:`Strategy.prepare` once, builds AdamW from
:meth:`Strategy.param_groups`, and at the start of every epoch calls
:meth:`Strategy.on_epoch_start`, which unfreezes what the schedule says, sets BatchNorm modes, and
returns the parameter groups that join the optimizer at that epoch. Everything is a function of
the epoch number, so a resumed run rebuilds exactly the same state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import surgery
from ..config import TrainConfig
from ..errors import ConfigError


class Strategy:
    """Base class; subclasses override :meth:`trainable_backbone_groups` and class attributes.

    Attributes:
        name: the ``--strategy`` name.
        phases: ``("head",)`` trains a head on cached features, ``("finetune",)`` runs the
            network end to end, ``("head", "finetune")`` is LP-FT.
        head_lr_scale_applies: whether the head's rate is ``lr * head_lr_scale`` (otherwise
            the head shares ``lr`` unless discriminative rates say otherwise).
    """

    name = ""
    phases: tuple[str, ...] = ("finetune",)
    head_lr_scale_applies = True

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = (config or TrainConfig(model="-", data="-", strategy=self._config_name())).resolved()
        self._active: set[str] = set()

    @classmethod
    def _config_name(cls) -> str:
        return cls.name

    @property
    def uses_feature_cache(self) -> bool:
        """The backbone is frozen for the whole run: encode once, train the head on the cache."""
        return self.phases == ("head",)

    # -- schedule --------------------------------------------------------------------------
    def trainable_backbone_groups(self, backbone: list[str], epoch: int) -> list[str]:
        """Backbone groups (stem first) that train during ``epoch`` (1-based)."""
        return list(backbone)

    def _wanted(self, model: nn.Module, epoch: int) -> set[str]:
        names = [g.name for g in surgery.layer_groups(model)]
        return set(self.trainable_backbone_groups(names[:-1], epoch)) | {"head"}

    # -- learning rates --------------------------------------------------------------------
    def group_learning_rates(self, names: list[str]) -> dict[str, float]:
        """Peak learning rate of every layer group (``names``: stem ... head).

        Explicit ``group_lrs`` win; else ``lr_decay`` gives the head ``lr`` and each group below
        ``lr_decay`` times the group above; else the backbone gets ``lr`` and the head
        ``lr * head_lr_scale``.
        """
        cfg = self.config
        explicit = cfg.parsed_group_lrs()
        if explicit is not None:
            if len(explicit) != len(names):
                raise ConfigError(
                    f"group_lrs: {len(explicit)} learning rates given but the model has "
                    f"{len(names)} layer groups ({', '.join(names)}); give one rate per group, "
                    "stem first and head last, or use --lr-decay."
                )
            return dict(zip(names, explicit))
        if cfg.lr_decay is not None:
            top = len(names) - 1
            return {n: cfg.lr * cfg.lr_decay ** (top - i) for i, n in enumerate(names)}
        head_scale = cfg.head_lr_scale if self.head_lr_scale_applies else 1.0
        return {n: cfg.lr * (head_scale if n == "head" else 1.0) for n in names}

    def _param_groups_for(self, model: nn.Module, names: set[str]) -> list[dict[str, Any]]:
        groups = surgery.layer_groups(model)
        rates = self.group_learning_rates([g.name for g in groups])
        params = dict(model.named_parameters())
        out = []
        for group in groups:  # layer order: stem first
            if group.name not in names:
                continue
            trainable = [params[n] for n in group.param_names if params[n].requires_grad]
            if trainable:
                out.append({"params": trainable, "lr": rates[group.name], "name": group.name})
        return out

    # -- the model around the run ---------------------------------------------------------
    def setup_model(self, model: nn.Module) -> None:
        """Change the model's structure before any weights are loaded into it (LoRA injects its
        layers here, so a resumed checkpoint finds them). Must be idempotent; default: nothing."""

    def final_state_dict(self, model: nn.Module) -> dict[str, Any]:
        """What the run folder's ``model.safetensors`` holds: an ordinary model's state_dict."""
        return model.state_dict()

    def write_extras(self, model: nn.Module, run_dir: Path) -> None:
        """Write strategy-specific files into the run folder (LoRA: ``adapter/``); default: none."""

    # -- the three calls the loop makes ------------------------------------------------------
    def prepare(self, model: nn.Module) -> None:
        """Set ``requires_grad`` for epoch 1 and apply the BatchNorm policy to affine params."""
        self._active = self._wanted(model, 1)
        surgery.set_trainable_groups(model, self._active)
        self._apply_bn_grad_policy(model)
        self.group_learning_rates([g.name for g in surgery.layer_groups(model)])  # validate early

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """AdamW parameter groups of the currently trainable layer groups, with peak rates.

        Each group carries its layer-group ``name``.
        """
        return self._param_groups_for(model, self._active)

    def on_epoch_start(self, model: nn.Module, epoch: int) -> list[dict[str, Any]]:
        """Called after ``model.train()`` at the start of each epoch.

        Unfreezes the groups the schedule adds at ``epoch`` and returns their new parameter
        groups (empty if none), then sets BatchNorm modes: frozen groups always in eval mode;
        with ``freeze`` or ``freeze-stats`` every BatchNorm in eval mode.
        """
        wanted = self._wanted(model, epoch)
        joining = wanted - self._active
        if joining:
            surgery.unfreeze_groups(model, joining)
            self._apply_bn_grad_policy(model)
            self._active = wanted
        surgery.frozen_batchnorm_eval(model)
        if self.config.bn in ("freeze", "freeze-stats"):
            surgery.batchnorm_eval(model)
        return self._param_groups_for(model, joining)

    def _apply_bn_grad_policy(self, model: nn.Module) -> None:
        """``--bn freeze``: BatchNorm affine parameters never train."""
        if self.config.bn != "freeze":
            return
        for module in model.modules():
            if isinstance(module, _BatchNorm):
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)
