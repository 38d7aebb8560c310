"""The race's candidates and trials: what each strategy races as, how one trains, what it kept.

``workflows.race`` schedules; this module says what a candidate is (from the strategy registry:
one per strategy, the rule table's choices first), how a trial trains it (:func:`train_trial`,
through :func:`transferkit.train` with ``trial=True``: no test pass) and which validation
accuracy its run kept (:func:`kept_val_accuracy`, from ``metrics.jsonl``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config import TrainConfig
from ..io import runfolder as rf
from ..io.records import EpochRecord, Phase, read_epoch_records
from ..strategies import strategy_class, strategy_names
from ..strategies.phases import FineTunePhase, HeadPhase
from ..train import train
from ._common import trains_same_run

__all__ = ["Candidate", "Trial", "Trainer", "candidates_for", "train_trial", "kept_val_accuracy", "ETA"]

ETA = 3  # keep the top third at each rung, each with 3x the epochs


@dataclass
class Candidate:
    """One strategy in the race and the settings it trains with.

    Attributes:
        strategy: a registered strategy name.
        settings: TrainConfig fields it sets (the rule's, for the prior's choices).
        full_epochs: epochs of a full run; ``None`` for a head-only strategy (one run, in full).
        prior: the rule table named it (the fired rule, or one a notch away: ``recommend.race_order``).
        falls_back_to: a head-only candidate whose head this strategy starts from and keeps when
            its own epochs score no better on validation (LP-FT: feature extraction's probe), so
            its race score is at least that candidate's.
    """

    strategy: str
    settings: dict[str, Any] = field(default_factory=dict)
    full_epochs: int | None = None
    prior: bool = False
    falls_back_to: str | None = None

    @property
    def head_only(self) -> bool:
        return self.full_epochs is None

    def epochs_at(self, rung: int, eta: int = ETA) -> int | None:
        """Epochs at ``rung``: 1, eta, eta^2 ... up to ``full_epochs`` (``None``: head-only)."""
        return None if self.full_epochs is None else min(self.full_epochs, eta ** rung)


@dataclass
class Trial:
    """What a trainer reports of one run; validation only, a trial has no test field.
    ``val_accuracy``: of the weights the run kept (``None``: no result, ``note`` says why);
    ``seconds``: the whole run; ``epochs``, ``epoch_seconds``: the epochs that trained the backbone
    and their seconds (the rest is loading, encoding, testing)."""

    val_accuracy: float | None
    seconds: float
    epochs: int = 0
    epoch_seconds: float = 0.0
    run_dir: str | None = None
    note: str = ""


#: ``trainer(candidate, epochs, time_budget, folder) -> Trial``; ``epochs`` None: the candidate's own.
Trainer = Callable[[Candidate, int | None, float | None, Path], Trial]


def kept_val_accuracy(records: Sequence[EpochRecord]) -> float | None:
    """Validation accuracy of the weights a run kept: its final phase's last improved epoch, or,
    when that phase kept its starting weights (LP-FT keeping its probe), the phase before's.

    Example:
        >>> mk = lambda p, e, acc, imp: EpochRecord(Phase(p), e, 0, 0, 0, acc, improved=imp)
        >>> kept_val_accuracy([mk("linear-probe", 1, 0.8, True), mk("fine-tune", 1, 0.7, False)])
        0.8
    """
    if not records:
        return None
    last = records[-1].phase
    final = [r for r in records if r.phase is last]
    kept = [r for r in final if r.improved]
    if kept:
        return kept[-1].val_accuracy
    earlier = [r for r in records if r.phase is not last]
    if earlier:
        return kept_val_accuracy(earlier)
    if any(r.improved is None for r in final):  # schema 1: no flags; the loop kept the best
        return max(r.val_accuracy for r in final)
    return None


def candidates_for(prior: Sequence[tuple[str, Mapping[str, Any]]], base: Mapping[str, Any],
                   modality: str | None = None) -> list[Candidate]:
    """Every registered strategy as a candidate: feature extraction first (the budget's unit),
    then the rule's choices (``prior``: strategy and settings), then the rest with defaults.

    One candidate per strategy (the first settings named for it); a strategy that would train the
    same run as an earlier candidate is left out.

    Example:
        >>> cands = candidates_for([("lp-ft", {"epochs": 5})], {"model": "m", "data": "d"})
        >>> [(c.strategy, c.full_epochs, c.prior) for c in cands][:2]
        [('feature-extraction', None, False), ('lp-ft', 5, True)]
    """
    names = strategy_names()
    wanted: dict[str, tuple[dict[str, Any], bool]] = {}
    for name, settings in prior:
        if name in names and name not in wanted:
            wanted[name] = ({k: v for k, v in settings.items() if k != "strategy"}, True)
    order = [n for n in ("feature-extraction",) if n in names] + list(wanted) + list(names)
    out: list[Candidate] = []
    configs: list[TrainConfig] = []
    for name in dict.fromkeys(order):
        settings, is_prior = wanted.get(name, ({}, False))
        cfg = TrainConfig(**base, strategy=name, **settings).resolved(modality)
        if any(trains_same_run(cfg, seen) for seen in configs):
            continue
        head_only = strategy_class(name).uses_feature_cache()
        fallback = None if head_only else _head_fallback(cfg, [(c, s) for c, s in zip(configs, out) if s.head_only])
        configs.append(cfg)
        out.append(Candidate(name, settings, None if head_only else cfg.epochs, is_prior, fallback))
    return out


def _head_fallback(cfg: TrainConfig, heads: Sequence[tuple[TrainConfig, Candidate]]) -> str | None:
    """The head-only candidate a strategy falls back to: its first phase fits that very head, and
    a later phase keeps it unless its own epochs score at least as well (LP-FT)."""
    phases = strategy_class(cfg.strategy).phases
    if not (isinstance(phases[0], HeadPhase) and any(isinstance(p, FineTunePhase) and p.keep_start_if_better
                                                      for p in phases[1:])):
        return None
    same = [c.strategy for h, c in heads if (h.head_solver, h.refit, h.seed) == (cfg.head_solver, cfg.refit, cfg.seed)]
    return same[0] if same else None


def train_trial(base: Mapping[str, Any], candidate: Candidate, epochs: int | None, time_budget: float | None,
                folder: Path, *, progress: bool | None = None) -> Trial:
    """Train one candidate with :func:`transferkit.train` and read what it kept on validation.

    Only ``metrics.jsonl`` is read; the test split is not even scored.
    """
    settings = {**candidate.settings, **({"epochs": epochs} if epochs is not None else {})}
    cfg = TrainConfig(**base, strategy=candidate.strategy, **settings, time_budget=time_budget, out=str(folder))
    began = time.perf_counter()
    run_dir = Path(train(cfg, progress=progress, trial=True).run_dir)
    seconds = time.perf_counter() - began
    records = read_epoch_records(run_dir / rf.METRICS)
    backbone = [r for r in records if r.phase is Phase.FINE_TUNE]
    return Trial(kept_val_accuracy(records), seconds, len(backbone), sum(r.seconds for r in backbone), str(run_dir))
