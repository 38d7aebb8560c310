"""Learning-rate schedules as pure functions of progress (nanoGPT's ``get_lr`` style)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """Multiplier of the peak learning rate at optimisation ``step`` (0-based).

    Linear warmup from 1/warmup to 1 over ``warmup_steps``, then cosine decay to ``min_factor``
    at ``total_steps``.

    Example:
        >>> warmup_cosine(0, 100, 10), warmup_cosine(10, 100, 10), round(warmup_cosine(100, 100, 10), 6)
        (0.1, 1.0, 0.0)
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
