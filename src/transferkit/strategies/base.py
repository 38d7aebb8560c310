"""The strategy interface, and how a strategy class registers itself.

A strategy class owns everything about one ``--strategy``: its name, its defaults (per
modality where they differ), the settings it always uses, its phases as typed objects, and its
schedule (which layer groups train at each epoch, their rates, BatchNorm modes). Nothing else
in transferkit keeps a list of strategies: ``config``, the runner, ``compare``, ``recommend``
and the CLI ask ``transferkit.registry.STRATEGIES``.

A strategy never runs the loop. The runner walks its :attr:`Strategy.phases`; in a fine-tune
phase the loop calls :meth:`Strategy.prepare` once, builds AdamW from
:meth:`Strategy.param_groups`, and at the start of every epoch calls
:meth:`Strategy.on_epoch_start`, which unfreezes what the schedule says, sets BatchNorm modes,
and returns the parameter groups that join the optimizer at that epoch. Everything is a
function of the epoch number, so a resumed run rebuilds exactly the same state.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, TypeVar

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import surgery
from ..config import TrainConfig
from ..errors import ConfigError
from ..registry import STRATEGIES
from .phases import FineTunePhase, HeadPhase, PhaseSpec

__all__ = ["Strategy", "register_strategy", "COMMON_DEFAULTS", "LAYERWISE_HEAD_LR"]

# Settings every strategy resolves the same way unless it says otherwise. BatchNorm statistics
# stay pre-trained for every strategy that trains backbone layers: small target batches give
# noisy statistics from another domain (EfficientNet-Lite0, 8 digits per class: 0.33 held-out
# accuracy with updating statistics, 0.73-0.85 with fixed ones).
COMMON_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"bn": "freeze-stats", "label_smoothing": 0.0, "head_lr_scale": 10.0, "warmup_fraction": 0.05})
# With layer-wise rates (--lr-decay or --group-lrs), --lr is the head's rate.
LAYERWISE_HEAD_LR = 1e-3

S = TypeVar("S", bound=type["Strategy"])


class Strategy:
    """Base class of every strategy; subclasses set the class attributes and may override
    :meth:`trainable_backbone_groups` (the schedule) and the model hooks.

    Attributes:
        name: the ``--strategy`` name.
        defaults: TrainConfig settings used when the user gives none (epochs, lr, patience,
            weight_decay, ...).
        modality_defaults: overrides of ``defaults`` per modality (``{"text": {"lr": 1e-4}}``).
        fixed: settings the strategy always uses, whatever was given (``head_solver``).
        phases: what the runner does, in order (:class:`HeadPhase`, :class:`FineTunePhase`).
        head_lr_scale_applies: the head's rate is ``lr * head_lr_scale`` (else ``lr``).
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    modality_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType({})
    fixed: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    phases: ClassVar[tuple[PhaseSpec, ...]] = (FineTunePhase(),)
    head_lr_scale_applies: ClassVar[bool] = True

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = (config or TrainConfig(model="-", data="-", strategy=self.name)).resolved()
        self._active: set[str] = set()

    # -- what the class declares ------------------------------------------------------------
    @classmethod
    def resolve_config(cls, config: TrainConfig, modality: str | None = None) -> TrainConfig:
        """``config`` with this strategy's defaults in every ``None`` setting and its fixed
        settings applied (``TrainConfig.resolved`` calls this)."""
        defaults = {**COMMON_DEFAULTS, **cls.defaults, **cls.modality_defaults.get(modality or "", {})}
        if config.discriminative:
            defaults["lr"] = LAYERWISE_HEAD_LR
        updates = {k: v for k, v in defaults.items() if getattr(config, k) is None}
        updates.update(cls.fixed)
        return dataclasses.replace(config, **updates) if updates else config

    @classmethod
    def uses_feature_cache(cls) -> bool:
        """The backbone stays frozen for the whole run: each split is encoded once and only a
        head trains, on the cached features (an epoch costs milliseconds)."""
        return all(isinstance(p, HeadPhase) for p in cls.phases)

    @classmethod
    def trains_backbone(cls) -> bool:
        """Some phase trains the network end to end (images can be augmented)."""
        return any(isinstance(p, FineTunePhase) for p in cls.phases)

    @classmethod
    def summary(cls) -> str:
        """The first line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    # -- schedule ---------------------------------------------------------------------------
    def trainable_backbone_groups(self, backbone: list[str], epoch: int) -> list[str]:
        """Backbone groups (stem first) that train during ``epoch`` (1-based)."""
        return list(backbone)

    def _wanted(self, model: nn.Module, epoch: int) -> set[str]:
        names = [g.name for g in surgery.layer_groups(model)]
        return set(self.trainable_backbone_groups(names[:-1], epoch)) | {"head"}

    # -- learning rates ---------------------------------------------------------------------
    def group_learning_rates(self, names: list[str]) -> dict[str, float]:
        """Peak learning rate of every layer group (``names``: stem ... head).

        Explicit ``group_lrs`` win; else ``lr_decay`` gives the head ``lr`` and each group below
        ``lr_decay`` times the group above; else the backbone gets ``lr`` and the head
        ``lr * head_lr_scale``.
        """
        cfg = self.config
        if cfg.group_lrs is not None:
            if len(cfg.group_lrs) != len(names):
                raise ConfigError(
                    f"group_lrs: {len(cfg.group_lrs)} learning rates given but the model has "
                    f"{len(names)} layer groups ({', '.join(names)}); give one rate per group, "
                    "stem first and head last, or use --lr-decay."
                )
            return dict(zip(names, cfg.group_lrs))
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

    # -- the model around the run -----------------------------------------------------------
    def setup_model(self, model: nn.Module) -> None:
        """Change the model's structure before any weights are loaded into it (LoRA injects its
        layers here, so a resumed checkpoint finds them). Must be idempotent; default: nothing."""

    def final_state_dict(self, model: nn.Module) -> dict[str, Any]:
        """What the run folder's ``model.safetensors`` holds: an ordinary model's state_dict."""
        return model.state_dict()

    def write_extras(self, model: nn.Module, run_dir: Path) -> None:
        """Write strategy-specific files into the run folder (LoRA: ``adapter/``); default: none."""

    # -- the three calls the loop makes -----------------------------------------------------
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


def register_strategy(cls: S) -> S:
    """Class decorator: check a strategy's declarations and add it to ``STRATEGIES``.

    Example:
        >>> @register_strategy
        ... class HeadOnly(Strategy):
        ...     '''Only the head trains, end to end (a slow feature extraction).'''
        ...     name = "head-only"
        ...     defaults = {"epochs": 5, "lr": 1e-3, "patience": 2, "weight_decay": 0.0}
        ...     def trainable_backbone_groups(self, backbone, epoch):
        ...         return []
        >>> "head-only" in STRATEGIES
        True
        >>> STRATEGIES.remove("head-only")
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    declared = [*cls.defaults, *cls.fixed, *(k for d in cls.modality_defaults.values() for k in d)]
    declared += [k for p in cls.phases if isinstance(p, HeadPhase) for k in p.settings]
    unknown = sorted(set(declared) - fields)
    if not cls.name or unknown or not cls.phases:
        raise TypeError(f"strategy class {cls.__name__}: needs a name and at least one phase, and "
                        f"only TrainConfig fields as settings (unknown: {', '.join(unknown) or 'none'})")
    STRATEGIES.add(cls.name, cls)
    return cls
