"""What a race's runs will cost, estimated from the runs measured so far.

A run's seconds are an overhead (loading the model, encoding, writing the run folder) plus
seconds per epoch. Each candidate's own run is the best estimate; an end-to-end candidate not yet
run takes the last end-to-end run's; before any, shares of the first run (``guess``).
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .race_trials import Candidate, Trial

__all__ = ["RunCosts", "next_rung_cost"]


class RunCosts:
    """Seconds a run will take, from what was measured so far."""

    def __init__(self, guess: tuple[float, float]) -> None:
        self.guess = guess
        self.unit: float | None = None  # the first run's seconds
        self.own: dict[str, tuple[float, float]] = {}  # strategy -> (overhead, seconds per epoch)
        self.last: tuple[float, float] | None = None  # the last end-to-end run's

    def record(self, c: Candidate, trial: Trial) -> None:
        if self.unit is None and trial.val_accuracy is not None:  # the first run that worked
            self.unit = trial.seconds
        if c.head_only:
            self.own[c.strategy] = (trial.seconds, 0.0)
        elif trial.epochs:
            per = trial.epoch_seconds / trial.epochs
            self.own[c.strategy] = self.last = (max(trial.seconds - trial.epoch_seconds, 0.0), per)

    def split(self, c: Candidate) -> tuple[float, float]:
        """(overhead, seconds per epoch) of a run of ``c``."""
        unit = self.unit or 0.0
        if c.head_only:
            return self.own.get(c.strategy, (unit, 0.0))
        return self.own.get(c.strategy) or self.last or (unit * self.guess[0], unit * self.guess[1])

    def estimate(self, c: Candidate, epochs: int | None) -> float:
        overhead, per = self.split(c)
        return overhead + per * (epochs or 0)

    def full(self, c: Candidate) -> float:
        """Estimated seconds of the run the recommendation would make (the tie-break)."""
        return self.estimate(c, c.full_epochs)


def next_rung_cost(admitted: Sequence[Candidate], rung: int, costs: RunCosts, eta: int) -> float:
    """Estimated seconds of the rung after ``rung`` if ``admitted`` race in this one: the top
    ``1/eta`` go on, end-to-end ones in the same share as now, at least one (the challenger)."""
    growing = [c for c in admitted if not c.head_only]
    if not growing:
        return 0.0
    survivors = max(1.0, math.ceil(len(admitted) / eta) * len(growing) / len(admitted))
    return survivors * statistics.mean(costs.estimate(c, c.epochs_at(rung + 1, eta)) for c in growing)
