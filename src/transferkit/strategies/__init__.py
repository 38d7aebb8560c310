"""Adaptation strategies: small objects that say which parameters train and how.

A strategy prepares the model (freezing), builds the optimizer parameter groups, and says what
changes at each epoch; the training loop in ``transferkit.train`` runs it.
"""

from __future__ import annotations

from ..config import TrainConfig
from ..errors import ConfigError
from .base import Strategy
from .feature_extraction import FeatureExtraction, LinearProbe
from .full import Discriminative, FullFineTuning, GradualUnfreezing, LastN, LinearProbeThenFineTune
from .lora import LoraStrategy

__all__ = [
    "Strategy", "FeatureExtraction", "LinearProbe", "FullFineTuning", "LastN", "GradualUnfreezing",
    "Discriminative", "LinearProbeThenFineTune", "LoraStrategy", "get_strategy", "STRATEGY_NAMES",
]

_STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (FeatureExtraction, LinearProbe, FullFineTuning, LastN, GradualUnfreezing,
                Discriminative, LinearProbeThenFineTune, LoraStrategy)
}
STRATEGY_NAMES = tuple(_STRATEGIES)


def get_strategy(name: str, config: TrainConfig | None = None) -> Strategy:
    """The strategy object for ``name``, configured by ``config`` (defaults if ``None``).

    Example:
        >>> get_strategy("last-n").name
        'last-n'
    """
    try:
        cls = _STRATEGIES[name]
    except KeyError:
        raise ConfigError(
            f"strategy: unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}."
        ) from None
    return cls(config)
