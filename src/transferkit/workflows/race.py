"""``recommend``'s measured race: successive halving over the strategies, on the user's data.

The rule table (``recommend.decide``) is the prior; the race measures. Every registered strategy
is a candidate, the rule's choices first and with the rule's settings, the rest with their
defaults. Each candidate trains through :func:`transferkit.train` (the path ``compare`` uses) and
is scored on **validation** accuracy: the accuracy of the weights the run kept, read from its
``metrics.jsonl``. The test split is never read, nor scored (``train(..., trial=True)``,
which also skips per-epoch checkpoints and the learning-curve figure),
so the pick does not peek at the data that judges it, and no run spends time on it.

Successive halving (Jamieson and Talwalkar 2016; the resource schedule of Hyperband, Li et al.
2018), with epochs as the resource:

- rung 0 trains every end-to-end candidate for 1 epoch (a whole warmup + cosine schedule), and
  each head-only one once in full (its cost is encoding the splits, whatever its epochs);
- the top ``1/eta`` (``eta = 3``) go on; end-to-end ones train again from the start with ``eta``
  times the epochs (at most their full count), head-only ones carry their score;
- head-only runs are scored in full, end-to-end ones after a fraction of their epochs: when a
  head-only run would be the one survivor, the best end-to-end candidate goes on too (the
  challenger), as long as its score rises with more epochs;
- it stops when one candidate is left, when nothing left can learn more, or when the budget is spent.

**Budget.** Wall-clock seconds for the whole race, by default :data:`BUDGET_FACTOR` times the
first run (feature extraction, also a candidate; it always runs), and at most
:data:`COMPARE_SHARE` of what ``compare`` would spend training every candidate in full, as
estimated from the runs so far: on a tiny dataset every run costs about what loading the model
costs, and ten first runs would be most of ``compare``'s time. Costs are estimated from what
was measured (the candidate's own run, else the last end-to-end run, else shares of the first
run: ``guess``). In rung 0 candidates run in priority order; once one end-to-end
run is in, another is admitted only if it and the next rung it implies still fit, so a short
budget races fewer candidates through every rung rather than many through the first alone. A
run that would not fit is skipped (the table says so); an end-to-end run that might overrun gets
``TrainConfig.time_budget``, so it stops between epochs.

**The pick.** Among the candidates of the last rung, the highest validation accuracy; candidates
within :func:`tie_tolerance` of it (one validation example, at least half a point) are a tie, and
the tie goes to the rule table's choice (the prior: a tie is no evidence against it), else to the
cheapest (the estimated seconds of its full run). Ties are ordered the same way for promotion.

**A strategy that keeps its probe.** LP-FT's run keeps the probe it starts from (feature
extraction's head) unless its fine-tuned epochs score at least as well, so its race score is at
least feature extraction's (``Candidate.falls_back_to``; the table marks it). Its trial fits that
probe on the training split alone, so the epochs' validation scores are not scored on examples
the probe was fitted to; on 1-4 validation examples per class one epoch of phase 2 from that
probe is a poor guess of the full run, and without the floor the race picked feature extraction
in 5 of 70 suite cells, 7 to 12 points below LP-FT (``docs/defaults.md``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config import DataOptions
from ..errors import ConfigError, TransferkitError
from ..io import runfolder as rf
from ..io.atomic import atomic_write_json
from .race_costs import RunCosts, next_rung_cost
from .race_trials import ETA, Candidate, Trainer, Trial, candidates_for, kept_val_accuracy, train_trial

__all__ = ["Candidate", "Trial", "RaceEntry", "RaceResult", "Trainer", "successive_halving", "race",
           "candidates_for", "train_trial", "kept_val_accuracy", "tie_tolerance", "check_budget", "check_out",
           "ETA", "BUDGET_FACTOR", "COMPARE_SHARE", "TIE_MIN", "RACE_JSON"]

log = logging.getLogger("transferkit")

# Default budget: this many times the first (feature-extraction) run, which loads the model and
# encodes the train and validation splits; every end-to-end run loads the model too. 10 units
# measure feature extraction and a few end-to-end candidates for 1 epoch and promote one or two.
BUDGET_FACTOR = 10.0
# ... and at most this share of the estimated cost of ``compare`` (every candidate in full): a
# race that costs more than a third of measuring everything saves the user too little.
COMPARE_SHARE = 1 / 3
TIE_MIN = 0.005  # validation accuracies closer than this (or one validation example) are a tie
RACE_JSON = "race.json"


@dataclass
class RaceEntry:
    """One line of the race table: one candidate at one rung."""

    rung: int
    strategy: str
    epochs: int | None  # asked for (None: head-only, in full)
    val_accuracy: float | None
    seconds: float
    outcome: str  # promoted, dropped, carried, winner, tie, ranked, skipped (budget), failed: ...
    epochs_trained: int | None = None
    run_dir: str | None = None
    # set when val_accuracy is the fallback's (``Candidate.falls_back_to``): the run's own, lower
    own_val_accuracy: float | None = None

    @property
    def fell_back(self) -> bool:
        return self.own_val_accuracy is not None


@dataclass
class RaceResult:
    """The race: ``winner`` and its TrainConfig ``settings``; ``entries``, every run and skip rung
    by rung; ``budget`` (``budget_given`` by the caller, else the default factor) and the
    ``seconds`` used; ``unit_seconds``, the first run's; ``eta``; ``tie``, the tolerance on
    validation accuracy; ``prior``, the rule table's strategies in its order; ``reasons``, what
    was measured and why the winner won."""

    winner: str
    settings: dict[str, Any]
    entries: list[RaceEntry]
    budget: float
    budget_given: bool
    seconds: float
    unit_seconds: float
    eta: int
    tie: float
    prior: list[str]
    reasons: list[str]
    winner_val_accuracy: float | None = None

    def table(self) -> str:
        """The race as aligned text lines, rung by rung."""
        head = f"{'rung':>4}  {'strategy':<20} {'epochs':>6}  {'val acc':>8}  {'seconds':>7}  outcome"
        lines = [head]
        for e in self.entries:
            epochs = "full" if e.epochs is None else str(e.epochs)
            if e.epochs_trained is not None and e.epochs is not None and e.epochs_trained != e.epochs:
                epochs = f"{e.epochs_trained}/{e.epochs}"
            acc = "-" if e.val_accuracy is None else f"{e.val_accuracy:.4f}" + ("*" if e.fell_back else "")
            lines.append(f"{e.rung:>4}  {e.strategy:<20} {epochs:>6}  {acc:>8}  {e.seconds:>7.1f}  {e.outcome}")
        if any(e.fell_back for e in self.entries):
            lines.append("* its own epochs scored lower; scored at the head it starts from, which its run keeps then")
        return "\n".join(lines)


def tie_tolerance(n_val: int | None) -> float:
    """Validation accuracies this close are a tie: one validation example, at least ``TIE_MIN``.

    A wider band (a standard error: 4-7 points on 40-90 examples) would hand most few-shot races
    to the cheap head, the failure that made the rule table pick feature extraction 4.3 points
    below the best strategy.

    Example:
        >>> tie_tolerance(40), tie_tolerance(1000)
        (0.025, 0.005)
    """
    return max(TIE_MIN, 1.0 / n_val) if n_val else TIE_MIN


def check_budget(budget: Any) -> float | None:
    """``budget`` as seconds (``None``: the default); ``ConfigError`` unless positive and finite."""
    if budget is None:
        return None
    ok = isinstance(budget, (int, float)) and not isinstance(budget, bool) and math.isfinite(budget) and budget > 0
    if not ok:
        raise ConfigError(f"budget: must be a positive number of seconds, got {budget!r}; e.g. --budget 600, "
                          f"or leave it out for {BUDGET_FACTOR:g} x the first feature-extraction run, or "
                          "--no-race for the rule table's answer alone.")
    return float(budget)


def check_out(out: str | Path) -> Path:
    """The race folder ``out``: it must not exist or be empty (``RunFolderError`` otherwise)."""
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        rf.new_empty_folder(path, "Race folder")  # raises, with the fix in the message
    return path


# -- the schedule ------------------------------------------------------------------------------
class _Race:
    """The state of one race: scores, costs, the clock and the table so far."""

    def __init__(self, trainer: Trainer, folder: Path, budget: float | None, eta: int,
                 guess: tuple[float, float], clock: Callable[[], float], candidates: Sequence[Candidate],
                 budget_factor: float) -> None:
        self.trainer, self.folder, self.given, self.eta, self.clock = trainer, folder, budget, eta, clock
        self.candidates, self.factor = list(candidates), budget_factor
        self.start = clock()
        self.costs = RunCosts(guess)
        self.entries: list[RaceEntry] = []
        self.scores: dict[str, float] = {}  # latest validation accuracy per strategy
        self.ran: dict[str, int | None] = {}  # epochs asked of each candidate's latest run
        self.rising: dict[str, bool] = {}  # whether its latest run beat the one before
        self.floored: dict[str, float] = {}  # own score of those scored at their fallback's (falls_back_to)
        self.skipped: list[str] = []

    def compare_estimate(self) -> float:
        """Estimated seconds of ``compare``: every candidate's full run, from the costs so far."""
        return sum(self.costs.full(c) for c in self.candidates)

    @property
    def total(self) -> float | None:
        """The budget: the caller's, else ``factor`` x the first run capped at ``COMPARE_SHARE`` x
        :meth:`compare_estimate` (re-estimated as runs are measured); ``None`` before the first run."""
        if self.given is not None:
            return self.given
        if self.costs.unit is None:
            return None
        return min(self.factor * self.costs.unit, COMPARE_SHARE * self.compare_estimate())

    def capped(self) -> bool:
        """Whether the default budget is the share of ``compare`` rather than the factor."""
        return self.given is None and self.costs.unit is not None and self.total < self.factor * self.costs.unit

    def left(self) -> float:
        total = self.total
        return (math.inf if total is None else total) - (self.clock() - self.start)

    def grows(self, c: Candidate, rung: int) -> bool:
        """Whether ``c`` would train longer at ``rung`` than it has."""
        return c.strategy in self.ran and not c.head_only and c.epochs_at(rung, self.eta) != self.ran[c.strategy]

    def add(self, entry: RaceEntry) -> RaceEntry:
        self.entries.append(entry)
        return entry

    def run(self, c: Candidate, rung: int, time_budget: float | None) -> RaceEntry:
        epochs, began = c.epochs_at(rung, self.eta), self.clock()
        try:
            trial = self.trainer(c, epochs, time_budget, self.folder / f"rung{rung}-{c.strategy}")
        except TransferkitError as exc:  # this candidate's bad input; the others still race
            trial = Trial(None, self.clock() - began, note=" ".join(str(exc).split())[:200])
        self.costs.record(c, trial)
        score, floor = trial.val_accuracy, self.scores.get(c.falls_back_to or "")
        fell_back = score is not None and floor is not None and floor > score
        if score is not None:
            score = floor if fell_back else score
            if fell_back:
                self.floored[c.strategy] = trial.val_accuracy
            else:
                self.floored.pop(c.strategy, None)
            if c.strategy in self.scores:
                self.rising[c.strategy] = score > self.scores[c.strategy]
            self.scores[c.strategy], self.ran[c.strategy] = score, epochs
        acc = "-" if trial.val_accuracy is None else f"{trial.val_accuracy:.4f}"
        log.info("race: rung %d, %s, %s epochs: val accuracy %s in %.1f s%s", rung, c.strategy,
                 "all" if epochs is None else epochs, acc, trial.seconds,
                 f"; scored {score:.4f}, {c.falls_back_to}'s, which its run keeps then" if fell_back else "")
        outcome = "ranked" if score is not None else f"failed: {trial.note or 'no epoch finished'}"
        return self.add(RaceEntry(rung, c.strategy, epochs, score, round(trial.seconds, 2), outcome,
                                  None if c.head_only else trial.epochs, trial.run_dir,
                                  trial.val_accuracy if fell_back else None))

    def rung(self, alive: Sequence[Candidate], rung: int) -> list[RaceEntry]:
        """Train (or carry, or skip) every candidate still in the race at ``rung``."""
        out: list[RaceEntry] = []
        todo = [c for c in alive if rung == 0 or self.grows(c, rung)]
        admitted: list[Candidate] = []
        for c in alive:
            epochs = c.epochs_at(rung, self.eta)
            if c not in todo:  # ran in full already: its score carries
                out.append(self.add(RaceEntry(rung, c.strategy, self.ran[c.strategy], self.scores[c.strategy],
                                              0.0, "carried", own_val_accuracy=self.floored.get(c.strategy))))
                continue
            if self.costs.unit is None:  # the first run always runs (until one works): the budget's unit
                out.append(self.run(c, rung, None))
                admitted.append(c)
                continue
            first_epoch = self.costs.estimate(c, None if c.head_only else 1)
            # Once an end-to-end run is in rung 0, admit more only if the next rung still fits.
            reserve = rung == 0 and any(not a.head_only for a in admitted)
            need = first_epoch + (next_rung_cost([*admitted, c], rung, self.costs, self.eta) if reserve else 0.0)
            if need > self.left():
                why = f"budget: ~{need:.0f} s needed, {max(self.left(), 0):.0f} s left"
                if c.strategy in self.scores:  # keeps its earlier score
                    out.append(self.add(RaceEntry(rung, c.strategy, epochs, self.scores[c.strategy], 0.0,
                                                  f"not re-run ({why})", own_val_accuracy=self.floored.get(c.strategy))))
                else:
                    self.skipped.append(c.strategy)
                    out.append(self.add(RaceEntry(rung, c.strategy, epochs, None, 0.0, f"skipped ({why})")))
                continue
            waiting = todo[todo.index(c):]
            later = next_rung_cost([*admitted, *waiting], rung, self.costs, self.eta) if rung == 0 else 0.0
            allowed = max((self.left() - later) / len(waiting), first_epoch)
            time_budget = None
            if not c.head_only and (epochs or 0) > 1 and self.costs.estimate(c, epochs) > allowed:
                # The loop starts an epoch while the run's clock is under time_budget: stop so that
                # the last epoch and the test pass end near `allowed`, after at least one epoch.
                overhead, per = self.costs.split(c)
                time_budget = max(allowed - overhead / 2 - per, overhead, 1e-3)
            out.append(self.run(c, rung, time_budget))
            admitted.append(c)
        return out

    def promote(self, pool: Sequence[Candidate], rung: int) -> list[Candidate] | None:
        """The candidates of the next rung, or ``None`` when the race is decided."""
        keep = list(pool[: max(1, math.ceil(len(pool) / self.eta))])
        challenger = next((c for c in pool if self.grows(c, rung + 1) and self.rising.get(c.strategy, True)), None)
        if len(keep) == 1 and challenger is not None and keep[0] is not challenger:
            # Head-only candidates ran in full, end-to-end ones at a fraction of their epochs: while
            # a finished run leads, the best end-to-end one gets eta x the epochs, budget permitting,
            # as long as its score still rises with them.
            keep.append(challenger)
        if len(keep) == 1 or not any(self.grows(c, rung + 1) and self.costs.estimate(c, 1) <= self.left()
                                     for c in keep):
            return None
        return keep


def successive_halving(candidates: Sequence[Candidate], trainer: Trainer, folder: Path, *,
                       budget: float | None = None, budget_factor: float = BUDGET_FACTOR, eta: int = ETA,
                       tie: float = TIE_MIN, guess: tuple[float, float] = (1.0, 1.0),
                       prior: Sequence[str] | None = None,
                       clock: Callable[[], float] = time.perf_counter) -> RaceResult:
    """Race ``candidates`` by successive halving on validation accuracy (see the module).

    Args:
        candidates: in priority order; the first is the unit of the default budget.
        trainer: trains one candidate; injected, so the schedule is testable without training.
        folder: where run folders go (``folder/rung<k>-<strategy>``).
        budget: seconds for the whole race (default ``budget_factor`` x the first run, at most
            :data:`COMPARE_SHARE` of every candidate's estimated full run).
        eta: keep the top ``1/eta`` each rung, with ``eta`` times the epochs.
        tie: validation accuracies within this are a tie, won by the prior's choice, else the cheaper full run.
        guess: before any end-to-end run is measured, its overhead (loading, encoding, testing)
            and one epoch, as shares of the first run's seconds.
        prior: the rule table's strategies, its choice first (default: the candidates marked prior).
        clock: seconds (injected for tests).

    Returns:
        A :class:`RaceResult`.

    Example:
        >>> fake = lambda c, epochs, tb, folder: Trial({"full": 0.9}.get(c.strategy, 0.8), 1.0, epochs or 0)
        >>> cands = [Candidate("feature-extraction"), Candidate("full", full_epochs=10)]
        >>> successive_halving(cands, fake, Path("."), budget=10).winner
        'full'
    """
    if not candidates:
        raise ConfigError("The race has no candidate strategy; register one or use --no-race.")
    if eta < 2:
        raise ConfigError(f"eta: must be at least 2, got {eta!r}.")
    state = _Race(trainer, folder, budget, eta, guess, clock, candidates, budget_factor)
    scores, costs = state.scores, state.costs
    prior = list(prior) if prior is not None else [c.strategy for c in candidates if c.prior]

    def order(c: Candidate) -> tuple[int, float]:  # among ties: the prior's choice first, then the cheaper
        return (prior.index(c.strategy) if c.strategy in prior else len(prior), costs.full(c))
    alive = list(candidates)
    rung = 0
    while True:
        entries = state.rung(alive, rung)
        pool = sorted((c for c in alive if c.strategy in scores), key=lambda c: (-scores[c.strategy], costs.full(c)))
        if pool:  # a tie with the best is no evidence against the prior: its choice goes first
            tied = [c for c in pool if scores[c.strategy] >= scores[pool[0].strategy] - tie - 1e-12]
            pool = sorted(tied, key=order) + [c for c in pool if c not in tied]
        if not pool:
            raise TransferkitError("The race measured no strategy (every run failed or the budget ran out); "
                                   "see the log, raise --budget, or use --no-race.")
        keep = state.promote(pool, rung)
        if keep is None:
            break
        for e in entries:
            if e.strategy in scores and not e.outcome.startswith(("failed", "skipped")):
                e.outcome = "promoted" if any(c.strategy == e.strategy for c in keep) else "dropped"
        alive, rung = [c for c in alive if c in keep], rung + 1  # priority order
    best = scores[pool[0].strategy]
    near = [c for c in pool if scores[c.strategy] >= best - tie - 1e-12]
    winner = min(near, key=order)  # a tie: the prior's choice, else the cheaper full run
    tied_by = {c.strategy: "tie, costlier" if order(c)[0] == order(winner)[0] else "tie, not the prior's choice"
               for c in near}
    for e in entries:
        if e.strategy in scores and not e.outcome.startswith(("failed", "skipped")):
            e.outcome = ("winner" if e.strategy == winner.strategy else tied_by.get(e.strategy, "lost"))
    result = RaceResult(winner.strategy, dict(winner.settings), state.entries, round(state.total or 0.0, 2),
                        budget is not None, round(clock() - state.start, 2), round(costs.unit or 0.0, 2), eta, tie,
                        prior, [],
                        scores[winner.strategy])
    result.reasons = _reasons(result, pool, state, winner, budget_factor)
    return result


def _fmt_epochs(c: Candidate, epochs: int | None) -> str:
    if c.head_only:
        return "in full (head on cached features)"
    return f"at {epochs} of {c.full_epochs} epochs" if epochs != c.full_epochs else f"in full ({epochs} epochs)"


def _reasons(r: RaceResult, pool: Sequence[Candidate], state: _Race, winner: Candidate, factor: float) -> list[str]:
    """What was measured and why the winner won, in sentences."""
    scores, costs = state.scores, state.costs
    runs = [e for e in r.entries if e.seconds > 0]
    how = f"budget {r.budget:.0f} s"
    if state.capped():
        how += (f" = {COMPARE_SHARE:.2f} x ~{state.compare_estimate():.0f} s, the estimated cost of training every candidate "
                f"in full (compare), less than {factor:g} x the first run's {r.unit_seconds:.1f} s")
    elif not r.budget_given:
        how += f" = {factor:g} x the first run's {r.unit_seconds:.1f} s"
    out = [(f"Race: {len(runs)} training runs of {len({e.strategy for e in runs})} strategies in {r.seconds:.0f} s "
            f"({how}), successive halving with eta {r.eta} over {r.entries[-1].rung + 1} rung(s): end-to-end "
            f"strategies trained 1 epoch, then the top 1/{r.eta} {r.eta}x as long; head-only ones ran once in "
            "full. Scored on validation accuracy; the test split was not read.")]
    text = f"Winner {winner.strategy}: validation accuracy {r.winner_val_accuracy:.4f} " + _fmt_epochs(
        winner, state.ran.get(winner.strategy))
    others = [c for c in pool if c is not winner]
    if not others:
        text += ", the only strategy measured."
    else:
        runner = max(others, key=lambda c: scores[c.strategy])
        second = (f"{runner.strategy} ({scores[runner.strategy]:.4f} "
                  f"{_fmt_epochs(runner, state.ran.get(runner.strategy))})")
        gap = scores[winner.strategy] - scores[runner.strategy]
        if gap > r.tie:
            text += f", {gap * 100:.1f} points above the runner-up {second}."
        else:
            text += (f"; {second} is within the tie tolerance of {r.tie * 100:.1f} points (one validation "
                     f"example, at least {TIE_MIN * 100:.1f}), and {winner.strategy} "
                     + ("is the rule table's choice, so it wins the tie." if r.prior and winner.strategy in r.prior
                        and (runner.strategy not in r.prior or r.prior.index(winner.strategy) < r.prior.index(runner.strategy))
                        else f"is the cheaper (~{costs.full(winner):.0f} s for its full run against "
                             f"~{costs.full(runner):.0f} s), so it wins the tie."))
    if winner.strategy in state.floored:
        text += (f" Its own {state.ran.get(winner.strategy)} epoch(s) scored {state.floored[winner.strategy]:.4f}; it "
                 f"is scored at {winner.falls_back_to}'s, the head it starts from and keeps unless its epochs "
                 "score at least as well.")
    if not winner.head_only and state.ran.get(winner.strategy) != winner.full_epochs:
        text += f" The recommended run trains the full {winner.full_epochs} epochs."
    out.append(text)
    if r.prior:
        verdict = ("the race agrees" if r.prior[0] == winner.strategy else
                   f"the race measured it at {scores[r.prior[0]]:.4f}" if r.prior[0] in scores else
                   "the race could not measure it")
        out.append(f"The rule table (the prior, reasons below) advised {r.prior[0]}; {verdict}.")
    if state.skipped:
        out.append(f"Not measured, the budget was spent: {', '.join(state.skipped)}; raise --budget to race them.")
    return out


# -- the real trainer --------------------------------------------------------------------------
def race(model: str, data: DataOptions, prior: Sequence[tuple[str, Mapping[str, Any]]], *,
         modality: str | None = None, budget: float | None = None, out: str | Path | None = None,
         progress: bool | None = None, n_val: int | None = None, guess: tuple[float, float] = (1.0, 1.0),
         trainer: Trainer | None = None, **model_options: Any) -> RaceResult:
    """Race every registered strategy on ``model`` and ``data``; see the module for how.

    Args:
        model: model spec. data: the splits training would use.
        prior: the rule table's choices, (strategy, settings), best first.
        modality: the model's (``image`` or ``text``), for the strategies' defaults.
        budget: seconds (default :data:`BUDGET_FACTOR` x the first run).
        out: keep the run folders and ``race.json`` here (default: a temporary folder, removed).
        n_val: validation examples (the tie tolerance); guess: see :func:`successive_halving`.
        trainer: replaces :func:`train_trial` (tests).
        **model_options: how training loads the model (pretrained, weights, max_length, device)
            and its precision.

    Returns:
        A :class:`RaceResult`; its run folders' paths only when ``out`` is given.

    Example:
        >>> r = race("builtin:efficientnet_lite0", DataOptions("builtin:digits", per_class=10),
        ...          [("feature-extraction", {"head_solver": "lbfgs"})], budget=300)  # doctest: +SKIP
        >>> print(r.table())  # doctest: +SKIP
    """
    budget = check_budget(budget)
    base = {"model": model, **dataclasses.asdict(data), **model_options}
    candidates = candidates_for(prior, base, modality)
    keep = out is not None
    folder = (rf.new_empty_folder(Path(out), "Race folder") if keep
              else Path(tempfile.mkdtemp(prefix="transferkit-race-")))
    run_one = trainer or (lambda c, e, tb, f: train_trial(base, c, e, tb, f, progress=progress))
    try:
        result = successive_halving(candidates, run_one, folder, budget=budget, tie=tie_tolerance(n_val),
                                    guess=guess, prior=[name for name, _ in prior])
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if keep:
        atomic_write_json(folder / RACE_JSON, dataclasses.asdict(result))
    else:
        for e in result.entries:
            e.run_dir = None
    return result
