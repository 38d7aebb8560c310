"""A head's hyperparameters chosen on cached features, then the head refitted on train + val.

Feature extraction, the linear probe and LP-FT's probe fit a linear head on features the frozen
backbone encoded once. Two things make that head as good as a careful hand-made probe:

- **Selection that is not noise.** The hyperparameter (the L-BFGS head's L2 strength, the AdamW
  head's epoch count) is chosen on the validation split when it has at least
  ``CV_BELOW_PER_CLASS`` examples per class; on a tinier split (20 training examples per class
  leave 4 for validation) it is chosen by stratified k-fold cross-validation over train + val,
  so every example votes once instead of 40 deciding alone.
- **Refit after selection.** Once chosen, the head is fitted again on train + validation with
  that hyperparameter: the validation examples were labelled too, and a few-shot head gains
  from every one of them. The features are cached, so this costs one more solve.

``refit=False`` (``--no-refit``) keeps the head fitted on the training split with selection on
the validation split, as before; ``test_metrics.json`` records which (``head``).

Train + val and the CV folds are :class:`~transferkit.train.features.FeatureRows` views of the
cached matrices, never concatenated copies: a memory-mapped cache stays on disk, read a slice at
a time, whichever rows a solve uses.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..io.records import EpochRecord, Phase
from .features import FeatureRows, Rows
from .head import (
    LBFGS_INIT_SEED,
    LBFGS_L2_GRID,
    _lbfgs,
    _mean_std,
    _standardizer,
    evaluate_head,
    fit_head_adamw,
    fit_head_lbfgs,
    one_thread,
)
from .loop import LoopSettings
from .metrics_log import MetricsLog
from .progress import Progress
from .schedule import warmup_cosine

__all__ = ["HeadChoice", "AdamWHead", "select_and_fit_head", "CV_FOLDS", "CV_BELOW_PER_CLASS", "cv_folds"]

log = logging.getLogger("transferkit")

CV_FOLDS = 5
CV_BELOW_PER_CLASS = 20  # validation examples per class below which selection is by k-fold CV


@dataclass(frozen=True)
class AdamWHead:
    """The mini-batch AdamW head's settings: the loop settings (epochs, patience, weight decay,
    warmup, label smoothing), peak rate, batch size and the shuffling generator."""

    settings: LoopSettings
    lr: float
    batch_size: int
    generator: torch.Generator


@dataclass
class HeadChoice:
    """A fitted head and how it was chosen.

    Attributes:
        head: ``Linear(F, C)`` on raw features (the standardisation folded in).
        solver: ``adamw`` or ``lbfgs``.
        selection: ``val`` (the validation split) or ``cv-K`` (K-fold cross-validation).
        chosen: the chosen ``l2`` (lbfgs) or ``epochs`` (adamw).
        score: the selection's accuracy (validation, or the mean over folds), an honest
            estimate of the head: it never saw the examples that scored it.
        loss: the selection's cross-entropy, same split(s).
        refit: the head was fitted again on train + validation.
        examples: how many examples the returned head was fitted on.
    """

    head: nn.Linear
    solver: str
    selection: str
    chosen: dict[str, float]
    score: float
    loss: float
    refit: bool
    examples: int

    def record(self) -> dict[str, Any]:
        """The ``head`` entry of ``test_metrics.json``."""
        return {"solver": self.solver, "selection": self.selection, **self.chosen,
                "score": round(self.score, 6), "loss": round(self.loss, 6), "refit": self.refit,
                "examples": self.examples}


def cv_folds(labels: torch.Tensor, seed: int, folds: int = CV_FOLDS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stratified ``(fit, held_out)`` index pairs; fewer folds when a class has fewer examples
    than ``folds`` (at least 2; a class with one example always stays in ``fit``).

    Example:
        >>> pairs = cv_folds(torch.tensor([0, 0, 0, 1, 1, 1]), seed=0)
        >>> len(pairs), sorted(torch.cat([h for _, h in pairs]).tolist())
        (3, [0, 1, 2, 3, 4, 5])
    """
    counts = torch.bincount(labels)
    k = int(max(2, min(folds, counts[counts > 1].min().item() if (counts > 1).any() else 2)))
    generator = torch.Generator().manual_seed(seed)
    fold_of = torch.full_like(labels, -1)
    for c in torch.nonzero(counts > 1).flatten().tolist():
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        # Deal the class's examples round-robin from a random offset, so fold sizes stay even.
        fold_of[members] = (torch.arange(len(members)) + int(torch.randint(k, (1,), generator=generator))) % k
    everything = torch.arange(len(labels))
    return [(everything[fold_of != f], everything[fold_of == f]) for f in range(k)]


def _use_cv(train: Rows, val: Rows, num_classes: int) -> bool:
    return len(val) < CV_BELOW_PER_CLASS * num_classes


# -- L-BFGS: choose the L2 strength ------------------------------------------------------------
def _lbfgs_solve(fit_on: Rows, num_classes: int, l2: float,
                 mean_std: tuple[torch.Tensor, torch.Tensor] | None = None,
                 class_weight: torch.Tensor | None = None) -> nn.Module:
    head = _standardizer(fit_on, num_classes, seed=LBFGS_INIT_SEED, mean_std=mean_std)
    with torch.enable_grad():
        _lbfgs(head, fit_on, l2, class_weight=class_weight)
    return head


def _score(head: nn.Module, data: Rows, class_weight: torch.Tensor | None = None) -> tuple[float, float]:
    loss, accuracy = evaluate_head(head, data, class_weight=class_weight)
    return accuracy, loss


def _lbfgs_cv(pool: FeatureRows, num_classes: int, folds: list[tuple[torch.Tensor, torch.Tensor]],
              metrics_log: MetricsLog | None, class_weight: torch.Tensor | None = None) -> tuple[float, float, float]:
    """Mean fold accuracy and loss of every L2 strength; returns the best ``(l2, acc, loss)``."""
    best = (LBFGS_L2_GRID[0], -1.0, math.inf)
    views = [(pool.take(fit_idx), pool.take(held_idx)) for fit_idx, held_idx in folds]
    with one_thread():
        stats = [_mean_std(fit_on) for fit_on, _ in views]  # each fold's, the same for every strength
        for step, l2 in enumerate(LBFGS_L2_GRID, start=1):
            start = time.perf_counter()
            fit_scores, held_scores = [], []
            for (fit_on, held_out), mean_std in zip(views, stats):
                head = _lbfgs_solve(fit_on, num_classes, l2, mean_std, class_weight)
                fit_scores.append(_score(head, fit_on, class_weight))
                held_scores.append(_score(head, held_out, class_weight))
            acc = statistics.fmean(a for a, _ in held_scores)
            loss = statistics.fmean(v for _, v in held_scores)
            better = acc > best[1] or (acc == best[1] and loss < best[2])
            if metrics_log is not None:
                metrics_log.append(EpochRecord(
                    Phase.HEAD_LBFGS, step, statistics.fmean(v for _, v in fit_scores),
                    statistics.fmean(a for a, _ in fit_scores), loss, acc,
                    seconds=time.perf_counter() - start, l2=l2, improved=better))
            log.info("head-lbfgs l2=%g: %d-fold CV accuracy %.4f, loss %.4f", l2, len(folds), acc, loss)
            if better:
                best = (l2, acc, loss)
    return best


def _select_lbfgs(train: Rows, val: Rows, num_classes: int, refit: bool, seed: int,
                  metrics_log: MetricsLog | None, class_weight: torch.Tensor | None = None) -> HeadChoice:
    pool = FeatureRows([train, val])  # a view: nothing is copied
    if refit and _use_cv(train, val, num_classes):
        folds = cv_folds(pool.labels, seed)
        l2, score, loss = _lbfgs_cv(pool, num_classes, folds, metrics_log, class_weight)
        selection = f"cv-{len(folds)}"
    else:
        head, chosen = fit_head_lbfgs(train, val, num_classes, metrics_log, class_weight=class_weight)
        l2, score, loss = chosen["l2"], chosen["val_accuracy"], chosen["val_loss"]
        selection = "val"
        if not refit:
            return HeadChoice(head, "lbfgs", selection, {"l2": l2}, score, loss, False, len(train))
    with one_thread():
        head = _lbfgs_solve(pool, num_classes, l2, class_weight=class_weight).folded()
    log.info("head-lbfgs: refitted on train + val (%d examples) with l2=%g", len(pool), l2)
    return HeadChoice(head, "lbfgs", selection, {"l2": l2}, score, loss, True, len(pool))


# -- AdamW: choose the epoch count -------------------------------------------------------------
def _adamw_epochs(data: Rows, num_classes: int, opts: AdamWHead, epochs: int) -> nn.Linear:
    """Train a fresh standardised head on ``data`` for exactly ``epochs`` epochs of the schedule
    the selection ran (warmup and cosine over ``opts.settings.epochs`` epochs), no early stop."""
    settings = opts.settings
    head = _standardizer(data, num_classes)
    steps_per_epoch = max(1, math.ceil(len(data) / opts.batch_size))
    total = settings.epochs * steps_per_epoch
    warmup = int(settings.warmup_fraction * total)
    optimizer = torch.optim.AdamW(head.linear.parameters(), lr=opts.lr, weight_decay=settings.weight_decay)
    step = 0
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(data), generator=opts.generator)
            for batch in order.split(opts.batch_size):
                for group in optimizer.param_groups:
                    group["lr"] = opts.lr * warmup_cosine(step, total, warmup)
                loss = F.cross_entropy(head(data.gather(batch)), data.labels[batch], weight=settings.class_weight,
                                       label_smoothing=settings.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip:
                    nn.utils.clip_grad_norm_(head.linear.parameters(), settings.grad_clip)
                optimizer.step()
                step += 1
    return head.folded()


def _select_adamw(train: Rows, val: Rows, num_classes: int, opts: AdamWHead,
                  refit: bool, seed: int, metrics_log: MetricsLog | None, progress: Progress | None,
                  phase: Phase) -> tuple[HeadChoice, list[str]]:
    if refit and _use_cv(train, val, num_classes):
        pool = FeatureRows([train, val])
        folds = cv_folds(pool.labels, seed)
        results = [fit_head_adamw(pool.take(f), pool.take(h), num_classes, opts.settings, opts.lr,
                                  opts.batch_size, opts.generator)[1] for f, h in folds]
        epochs = max(1, round(statistics.median(r.best_epoch for r in results)))
        score = statistics.fmean(r.best_val_accuracy for r in results)
        loss = statistics.fmean(r.best_val_loss for r in results)
        selection, warnings = f"cv-{len(folds)}", []
        log.info("%s: %d-fold CV chose %d epochs (fold accuracy %.4f)", phase, len(folds), epochs, score)
    else:
        head, result = fit_head_adamw(train, val, num_classes, opts.settings, opts.lr, opts.batch_size,
                                      opts.generator, metrics_log, progress, phase=phase)
        epochs, score, loss = max(1, result.best_epoch), result.best_val_accuracy, result.best_val_loss
        selection, warnings = "val", list(result.warnings)
        if not refit:
            return HeadChoice(head, "adamw", selection, {"epochs": epochs}, score, loss, False, len(train)), warnings
        pool = FeatureRows([train, val])
    head = _adamw_epochs(pool, num_classes, opts, epochs)
    log.info("%s: refitted on train + val (%d examples) for %d epochs", phase, len(pool), epochs)
    return HeadChoice(head, "adamw", selection, {"epochs": epochs}, score, loss, True, len(pool)), warnings


def select_and_fit_head(train: Rows, val: Rows, num_classes: int, solver: str, *,
                        adamw: AdamWHead, refit: bool = True, seed: int = 0,
                        metrics_log: MetricsLog | None = None, progress: Progress | None = None,
                        phase: Phase = Phase.HEAD, class_weight: torch.Tensor | None = None,
                        ) -> tuple[HeadChoice, list[str]]:
    """Choose the head's hyperparameter (on val, or by k-fold CV when val is tiny), then refit.

    Args:
        train, val: cached features of the two splits.
        num_classes: C.
        solver: ``lbfgs`` (L2 strength from ``LBFGS_L2_GRID``) or ``adamw`` (epoch count, by
            early stopping under ``adamw.settings``).
        adamw: the AdamW head's settings (unused by ``lbfgs``).
        refit: fit again on train + val with the chosen hyperparameter (selection by CV when val
            has fewer than ``CV_BELOW_PER_CLASS`` examples per class); else fit on train with
            selection on val.
        seed: the CV folds' seed.
        metrics_log / progress / phase: where the selection's records go and what they are called.
        class_weight: [C] per-class weights of the loss and of the selection's scores
            (``class_balance``; ``None``: every example alike).

    Returns:
        The :class:`HeadChoice` and the selection's warnings (overfitting).

    Example:
        >>> import torch
        >>> from transferkit.train.features import CachedFeatures
        >>> from transferkit.train.loop import LoopSettings
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(40, 8), torch.arange(40) % 2
        >>> x[:, 0] += 3 * y
        >>> opts = AdamWHead(LoopSettings(epochs=5, weight_decay=0.0), 1e-2, 8, g)
        >>> choice, _ = select_and_fit_head(CachedFeatures(x[:30], y[:30]), CachedFeatures(x[30:], y[30:]),
        ...                                 2, "lbfgs", adamw=opts)
        >>> choice.selection, choice.refit, choice.examples
        ('cv-5', True, 40)
    """
    if solver == "lbfgs":
        return _select_lbfgs(train, val, num_classes, refit, seed, metrics_log, class_weight), []
    cpu = dataclasses.replace(adamw, settings=dataclasses.replace(
        adamw.settings, device=torch.device("cpu"), precision="fp32", class_weight=class_weight))
    return _select_adamw(train, val, num_classes, cpu, refit, seed, metrics_log, progress, phase)
