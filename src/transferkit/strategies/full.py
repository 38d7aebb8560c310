"""End-to-end strategies: full, last-n, gradual unfreezing, discriminative rates, LP-FT."""

from __future__ import annotations

from types import MappingProxyType

from ..io.records import Phase
from .base import Strategy, register_strategy
from .feature_extraction import HEAD_DEFAULTS
from .phases import FineTunePhase, HeadPhase

__all__ = ["FullFineTuning", "LastN", "GradualUnfreezing", "Discriminative", "LinearProbeThenFineTune"]

# Fine-tuning moves pre-trained weights: few epochs at a low rate, strong weight decay.
FINE_TUNE_DEFAULTS = MappingProxyType({"epochs": 10, "lr": 1e-4, "patience": 3, "weight_decay": 0.05})


@register_strategy
class FullFineTuning(Strategy):
    """Every layer trains; the new head at head_lr_scale times the rate of the rest.

    BatchNorm statistics stay as pre-trained by default (``--bn freeze-stats``): measured on 8
    digits per class, EfficientNet-Lite0 fell from 0.73-0.85 to 0.33 held-out accuracy when its
    statistics were left to update on small batches.

    Example:
        >>> FullFineTuning.uses_feature_cache(), FullFineTuning.defaults["lr"]
        (False, 0.0001)
    """

    name = "full"
    defaults = FINE_TUNE_DEFAULTS


@register_strategy
class LastN(Strategy):
    """The top last_n layer groups below the head train with the head; the rest stay frozen."""

    name = "last-n"
    defaults = FINE_TUNE_DEFAULTS

    def trainable_backbone_groups(self, backbone: list[str], epoch: int) -> list[str]:
        n = min(self.config.last_n, len(backbone))
        return backbone[len(backbone) - n :]


@register_strategy
class GradualUnfreezing(Strategy):
    """ULMFiT gradual unfreezing: the head alone, then one more group from the top every K epochs.

    The head trains alone for ``unfreeze_every`` (K) epochs, then one more group joins from the
    top down every K epochs, up to ``gradual_groups`` groups (default: all). A group that joins
    gets its own parameter group; the loop warms its rate up linearly over the epoch in which it
    joins, so fresh gradients do not wreck its features.

    Example:
        >>> from transferkit.config import TrainConfig
        >>> s = GradualUnfreezing(TrainConfig(model="m", data="d", strategy="gradual", unfreeze_every=2))
        >>> [len(s.trainable_backbone_groups(["a", "b", "c"], e)) for e in range(1, 8)]
        [0, 0, 1, 1, 2, 2, 3]
    """

    name = "gradual"
    defaults = MappingProxyType({**FINE_TUNE_DEFAULTS, "epochs": 12})

    def trainable_backbone_groups(self, backbone: list[str], epoch: int) -> list[str]:
        limit = len(backbone) if self.config.gradual_groups is None else self.config.gradual_groups
        n = min(limit, len(backbone), (epoch - 1) // self.config.unfreeze_every)
        return backbone[len(backbone) - n :] if n else []


@register_strategy
class Discriminative(Strategy):
    """Every layer trains, one rate per layer group: --group-lrs, or --lr (the head's) times
    --lr-decay per group below."""

    name = "discriminative"
    defaults = MappingProxyType({**FINE_TUNE_DEFAULTS, "lr": 1e-3, "lr_decay": 0.5})


@register_strategy
class LinearProbeThenFineTune(Strategy):
    """LP-FT (Kumar et al. 2022): fit the head on frozen features, temper it, then fine-tune all.

    Phase 1 fits the head on cached frozen features (the default head: L-BFGS, chosen by CV and
    refitted on train + val); between the phases its logits are tempered to ``probe_energy`` x
    ln(C), so a probe that interpolates a few-shot split still leaves phase 2 a gradient; phase 2
    fine-tunes everything from that head, the head at the backbone's rate (it is already fitted:
    10x, as for a random head, moved it off its solution in the first steps), with a warmup of
    a fifth of the steps, through the whole schedule (no early stop: on few-shot validation
    splits the best epoch is noise), and keeps the latest epoch that scores at least the
    probe's selection score on validation, else the probe.
    """

    name = "lp-ft"
    # Phase 2's settings. EfficientNet-Lite0 + MNIST, 20 per class (4 for validation), 64 px,
    # test n = 750: full fine-tuning 0.917; LP-FT with a 10x head and 5% warmup 0.904 (validation
    # fell from the probe's level to 0.65 in epoch 1, early stop at 7); head 1x, 10% warmup,
    # lr 1e-4: 0.913; head 1x, 20% warmup, lr 3e-4: 0.937 (0.85 after epoch 1).
    defaults = MappingProxyType({**FINE_TUNE_DEFAULTS, "lr": 3e-4, "head_lr_scale": 1.0, "warmup_fraction": 0.2})
    # Text encoders lose their features at that rate: MiniLM + BBC News, 20 per class, tempered
    # probe, test accuracy 0.955 at 3e-4 and 0.967 at 1e-4 (full fine-tuning: 0.964).
    modality_defaults = MappingProxyType({"text": MappingProxyType({"lr": 1e-4})})
    phases = (HeadPhase(record=Phase.LINEAR_PROBE, settings=HEAD_DEFAULTS, temper=True),
              FineTunePhase(keep_start_if_better=True, keep_latest=True, ensemble_with_start=True))
