"""A strategy's phases as typed objects: what the runner does, in order, for that strategy.

The runner (``transferkit.train``) dispatches on the phase's type; a strategy only declares
them. LP-FT is ``(HeadPhase(...probe settings...), FineTunePhase(keep_start_if_better=True))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Union

from ..io.records import Phase

__all__ = ["HeadPhase", "FineTunePhase", "PhaseSpec"]


@dataclass(frozen=True)
class HeadPhase:
    """A new linear head fitted on features the frozen backbone encodes once per split.

    Attributes:
        record: the phase name its metrics.jsonl lines carry (an L-BFGS head's sweep steps
            are always ``head-lbfgs``).
        settings: epochs, lr, patience, weight_decay of its own, overriding the config's (LP-FT's
            probe trains to convergence with the head defaults while the config's are phase 2's).
        temper: afterwards, divide the head's logits by the temperature that brings its training
            loss to ``probe_energy`` x ln(C) (see ``train.head.temper_head``).
    """

    record: Phase = Phase.HEAD
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    temper: bool = False


@dataclass(frozen=True)
class FineTunePhase:
    """The network end to end, under the strategy's schedule of trainable groups and rates.

    Attributes:
        record: the phase name its metrics.jsonl lines carry.
        keep_start_if_better: score the starting weights on validation as "epoch 0" and keep
            them unless an epoch beats them (LP-FT: phase 2 never ends worse than its probe).
        keep_latest: train the whole schedule and keep the latest epoch scoring at least the
            start (``train.loop.fit``), instead of the best epoch with early stopping.
        ensemble_with_start: afterwards, move the kept weights back towards the starting ones,
            keeping ``wise_alpha`` of the change (WiSE-FT, ``train.wise``; LP-FT: the probe).
    """

    record: Phase = Phase.FINE_TUNE
    keep_start_if_better: bool = False
    keep_latest: bool = False
    ensemble_with_start: bool = False


PhaseSpec = Union[HeadPhase, FineTunePhase]
