"""Adaptation strategies: small objects that say which parameters train and how.

A strategy prepares the model (freezing), builds the optimizer parameter groups, and says what
changes at each epoch; the training loop in ``transferkit.train`` runs it.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import Strategy
from .feature_extraction import FeatureExtraction
from .full import FullFineTuning

__all__ = ["Strategy", "FeatureExtraction", "FullFineTuning", "get_strategy", "STRATEGY_NAMES"]

_STRATEGIES: dict[str, type[Strategy]] = {
    FeatureExtraction.name: FeatureExtraction,
    FullFineTuning.name: FullFineTuning,
}
STRATEGY_NAMES = tuple(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy object for ``name`` (``feature-extraction`` or ``full``)."""
    try:
        return _STRATEGIES[name]()
    except KeyError:
        raise ConfigError(
            f"strategy: unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}."
        ) from None
