"""Adaptation strategies: one registered class per ``--strategy``.

Each class declares its name, defaults, fixed settings and phases, and says which parameters
train at each epoch; the training loop in ``transferkit.train`` runs it. Importing this package
imports every module in it, and their ``@register_strategy`` classes fill
``transferkit.registry.STRATEGIES``: adding a strategy is one new module (see
docs/architecture.md), which nothing else has to name.

Example:
    >>> from transferkit.strategies import get_strategy
    >>> get_strategy("last-n").name
    'last-n'
"""

from __future__ import annotations

import importlib
import pkgutil

from ..config import TrainConfig
from ..registry import STRATEGIES
from .base import COMMON_DEFAULTS, Strategy, register_strategy
from .feature_extraction import HEAD_DEFAULTS, FeatureExtraction, LinearProbe
from .full import Discriminative, FullFineTuning, GradualUnfreezing, LastN, LinearProbeThenFineTune
from .lora import LoraStrategy
from .phases import FineTunePhase, HeadPhase, PhaseSpec

__all__ = [
    "Strategy", "register_strategy", "STRATEGIES", "strategy_names", "strategy_class", "get_strategy",
    "HeadPhase", "FineTunePhase", "PhaseSpec", "HEAD_DEFAULTS", "COMMON_DEFAULTS",
    "FeatureExtraction", "LinearProbe", "FullFineTuning", "LastN", "GradualUnfreezing",
    "Discriminative", "LinearProbeThenFineTune", "LoraStrategy",
]


for _module in pkgutil.iter_modules(__path__):  # sorted by name: the built-ins register in the order above
    importlib.import_module(f"{__name__}.{_module.name}")


def strategy_names() -> tuple[str, ...]:
    """Every registered strategy, in registration order (read now: strategies can be added)."""
    return STRATEGIES.names()


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name`` (``ConfigError`` listing the known names otherwise)."""
    return STRATEGIES.get(name)  # type: ignore[return-value]


def get_strategy(name: str, config: TrainConfig | None = None) -> Strategy:
    """The strategy object for ``name``, configured by ``config`` (defaults if ``None``).

    Example:
        >>> get_strategy("gradual").config.epochs
        12
    """
    return strategy_class(name)(config)
