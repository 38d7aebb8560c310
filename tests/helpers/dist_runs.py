"""Functions that launched test workers run (a spawned worker imports them by module name)."""

from __future__ import annotations

import transferkit as tk


def train_each(configs: list[tk.TrainConfig]) -> list[tk.RunResult]:
    """Train every config in turn in this worker, all in one process group."""
    return [tk.train(config) for config in configs]
