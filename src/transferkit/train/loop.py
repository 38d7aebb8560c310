"""The training loop: AdamW, warmup + cosine, clipping, mixed precision, early stopping.

One loop serves every phase: a linear head on cached features [N, F] and a whole network on
images or token batches. What differs (which parameters train, when groups unfreeze, BatchNorm
modes) is decided by the caller's ``on_epoch_start`` callback, which may return parameter groups
that join the optimizer at that epoch; a joining group's rate warms up over its first epoch.
The state at the end of every epoch can be handed to a checkpoint callback and resumed exactly.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingDivergedError
from ..io.atomic import kill_point
from ..io.records import EpochRecord, Event, EventKind, Phase
from .class_balance import weighted_scores
from .device import autocast, move_to
from .distributed import IGNORE, SINGLE, Distributed
from .metrics_log import MetricsLog
from .progress import Progress
from .schedule import warmup_cosine

log = logging.getLogger("transferkit")

EpochStart = Callable[[nn.Module, int], "list[dict[str, Any]] | None"]


@dataclass
class LoopSettings:
    """Hyperparameters of one optimisation phase."""

    epochs: int
    weight_decay: float
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    patience: int = 5
    precision: str = "fp32"  # resolved (device.resolve_precision): fp32, bf16 or fp16
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    overfit_gap: float = 0.15
    deadline: float | None = None  # time.perf_counter() value after which no new epoch starts
    dist: Distributed = SINGLE  # this process's place in a data-parallel run
    seed: int = 0  # ranks after 0 draw their random streams from it (Distributed.reseed)
    compile: bool = False  # torch.compile the (DDP-wrapped) model for the training steps
    compile_mode: str = "default"  # torch.compile's mode; reduce-overhead: CUDA graph trees
    # [C] per-class loss weights averaging 1 over the training examples (class_balance), which
    # weight validation's scores too; None: every example alike
    class_weight: torch.Tensor | None = None


@dataclass
class LoopState:
    """Counters that, with the weights and the optimizer, define where a phase stands."""

    epoch: int = 0  # last completed epoch
    step: int = 0
    best_accuracy: float = -1.0
    best_loss: float = float("inf")
    best_epoch: int = 0
    stale: int = 0
    overfit_warned: bool = False


@dataclass
class Checkpoint:
    """Everything needed to continue a phase after the epoch ``state.epoch``."""

    phase: Phase
    state: LoopState
    model: dict[str, torch.Tensor]
    best_model: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any]
    join_steps: list[int]
    torch_rng: torch.Tensor
    generator_rng: torch.Tensor | None
    records: list[EpochRecord]


@dataclass
class FitResult:
    """What a phase produced: the best epoch's weights are already loaded into the model."""

    best_epoch: int
    best_val_accuracy: float
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[EpochRecord]
    warnings: list[str] = field(default_factory=list)


@torch.no_grad()
def predict_logits(
    model: nn.Module, loader: Iterable[Any], device: torch.device, precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` in eval mode over ``loader``; return float32 logits [N, C] and labels [N].

    The logits stay on the device until the end, so the host queues the batches without waiting
    for each one (one copy back, not one sync per batch)."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for inputs, targets in loader:
        with autocast(device, precision):
            out = model(move_to(inputs, device))
        logits.append(out.float())
        labels.append(targets.cpu())
    model.train(was_training)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits).cpu(), torch.cat(labels)


def gather_predictions(ctx: Distributed, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's ``predict_logits`` of its shard joined in order on rank 0: logits [N, C] and
    labels [N] there (each example once), empty tensors on the other ranks."""
    if not ctx.enabled:
        return logits, labels
    n = int(ctx.sum([float(len(labels))])[0])
    all_logits, all_labels = ctx.gather_rows(logits, n), ctx.gather_rows(labels, n)
    if all_logits is None or all_labels is None:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return all_logits, all_labels


def _evaluate(model: nn.Module, loader: Iterable[Any], settings: LoopSettings) -> tuple[float, float]:
    """Validation (accuracy, mean cross-entropy) over the whole split, scored on rank 0 and
    broadcast, so every rank takes the same decisions."""
    logits, labels = gather_predictions(settings.dist, *predict_logits(model, loader, settings.device, settings.precision))
    scores = (float("nan"), float("nan"))
    if settings.dist.main and labels.numel() > 0:
        scores = weighted_scores(logits, labels, settings.class_weight)
    return settings.dist.broadcast_object(scores)


class _Optimizer:
    """AdamW whose groups may join later; each group's rate follows the global warmup + cosine
    schedule times a linear warmup over the first epoch after it joined."""

    def __init__(self, groups: list[dict[str, Any]], settings: LoopSettings, steps_per_epoch: int) -> None:
        # CUDA: one fused kernel for the whole update, no per-parameter launches
        self.opt = torch.optim.AdamW(groups, weight_decay=settings.weight_decay,
                                     fused=settings.device.type == "cuda" or None)
        self.peaks = [g["lr"] for g in self.opt.param_groups]
        self.join_steps = [0] * len(self.peaks)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total = max(1, settings.epochs * self.steps_per_epoch)
        self.warmup = int(settings.warmup_fraction * self.total)

    def add(self, groups: list[dict[str, Any]], step: int) -> None:
        for group in groups:
            self.opt.add_param_group(group)
            self.peaks.append(group["lr"])
            self.join_steps.append(step)

    def set_lrs(self, step: int) -> None:
        base = warmup_cosine(step, self.total, self.warmup)
        for group, peak, joined in zip(self.opt.param_groups, self.peaks, self.join_steps):
            late = min(1.0, (step - joined + 1) / self.steps_per_epoch) if joined > 0 else 1.0
            group["lr"] = peak * base * late

    def params(self) -> list[torch.nn.Parameter]:
        return [p for g in self.opt.param_groups for p in g["params"]]

    def rates(self) -> dict[str, float]:
        """Current rate of each group by its layer-group name (groups in the order they joined)."""
        return {str(g.get("name", i)): g["lr"] for i, g in enumerate(self.opt.param_groups)}


#: Steps between host reads of the training losses on an accelerator (each read waits for the
#: device); on a CPU every loss is read at once, so a non-finite one stops its own step.
_FINITE_CHECK_EVERY = 16


class _EpochTally:
    """One epoch's training loss and accuracy, kept on the device and read every few steps,
    when every loss read is also checked to be finite.

    Args:
        device: where the loss sums [] and the correct count live.
        where: ``(phase label, epoch)`` for the error message.
        rates: the optimizer's peak learning rates, for the error message.
        ctx: the ranks whose tallies :meth:`result` adds up.
        class_weight: [C] on ``device``: each hit counts its class's weight, as the loss does
            (the weights average 1, so the accuracy estimates the balanced accuracy).
    """

    def __init__(self, device: torch.device, where: tuple[str, int], rates: list[float],
                 ctx: Distributed = SINGLE, class_weight: torch.Tensor | None = None) -> None:
        self.check_every = 1 if device.type == "cpu" else _FINITE_CHECK_EVERY
        self.where, self.rates, self.ctx = where, rates, ctx
        self.pending: list[tuple[int, int, torch.Tensor, int]] = []  # (batch, global step, loss sum [], size)
        self.class_weight = class_weight
        self.correct = torch.zeros((), dtype=torch.long if class_weight is None else torch.float32, device=device)
        self.loss_sum, self.seen = 0.0, 0

    def add(self, batch: int, step: int, loss_sum: torch.Tensor, size: int, logits: torch.Tensor,
            targets: torch.Tensor) -> None:
        """Record one step's summed loss [] over its ``size`` real examples and logits [B, C];
        called before its optimizer step, so on a CPU a non-finite loss raises before the
        weights take the update. Padding rows (label IGNORE) never match an argmax."""
        self.pending.append((batch, step, loss_sum.detach(), size))
        hits = logits.detach().argmax(1) == targets  # [B]
        if self.class_weight is not None:  # padding (IGNORE) is never a hit: any weight will do
            hits = hits * self.class_weight[targets.clamp(min=0)]
        self.correct += hits.sum()
        if len(self.pending) >= self.check_every:
            self.flush()

    def flush(self) -> None:
        """Read the pending losses (one device sync); raise on the first non-finite one."""
        if not self.pending:
            return
        values = torch.stack([loss for _, _, loss, _ in self.pending]).float().tolist()
        for (batch, step, _, size), value in zip(self.pending, values):
            if not math.isfinite(value):
                raise _diverged(value / max(1, size), self.where, batch, step, self.rates)
            self.loss_sum += value
            self.seen += size
        self.pending.clear()

    def result(self) -> tuple[float, float]:
        """(mean loss, accuracy) over the epoch's batches, every rank's together."""
        self.flush()
        loss_sum, seen, correct = self.ctx.sum([self.loss_sum, float(self.seen), float(self.correct.item())])
        return loss_sum / max(1.0, seen), correct / max(1.0, seen)


def _diverged(value: float, where: tuple[str, int], batch: int, step: int, rates: list[float]) -> TrainingDivergedError:
    label, epoch = where
    low, high = min(rates, default=0.0), max(rates, default=0.0)
    shown = f"{high:g}" if low == high else f"{low:g} to {high:g}"
    return TrainingDivergedError(
        f"Training diverged: the loss became {value} in {label} at epoch {epoch}, batch {batch} "
        f"(optimizer step {step}), so the run stopped there and no weights were saved. The learning "
        f"rate is too high for this model and data (peak rates {shown}): train again with a lower "
        f"--lr, e.g. {low / 10:g} or less, keep --grad-clip on, or try --precision fp32."
    )


def check_finite_weights(model: nn.Module, where: str) -> None:
    """Raise ``TrainingDivergedError`` if a parameter of ``model`` holds NaN or infinity, so no
    run folder is ever finished with such weights (one device sync per parameter tensor).

    Example:
        >>> check_finite_weights(nn.Linear(2, 2), "test")
    """
    for name, param in model.named_parameters():
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            raise TrainingDivergedError(
                f"Training diverged: after {where} the weights hold NaN or infinite values "
                f"({name}), so they were not saved. Train again with a lower --lr (e.g. a tenth), "
                "keep --grad-clip on, or check the data for extreme values."
            )


def _train_epoch(model, loader, optim: _Optimizer, settings: LoopSettings, state: LoopState,
                 progress: Progress, desc: str, where: tuple[str, int] = ("training", 0)) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, accuracy) on the training batches.

    The loss of a step is the sum over this rank's real examples times ``world / examples in the
    global batch``: DDP averages gradients over ranks, so the update is that of the mean loss
    over the global batch, whatever the number of processes (padding rows, labelled IGNORE,
    add nothing).

    Raises:
        TrainingDivergedError: a loss was NaN or infinite (``where`` = (phase label, epoch)).
    """
    class_weight = None if settings.class_weight is None else settings.class_weight.to(settings.device)
    tally = _EpochTally(settings.device, where, optim.peaks, settings.dist, class_weight)
    # fp16's small range needs the loss scaled (and steps with inf gradients skipped); a disabled
    # scaler is a pass-through for fp32 and bf16
    scaler = torch.amp.GradScaler(settings.device.type, enabled=settings.precision == "fp16")
    global_size = getattr(getattr(loader, "batch_sampler", None), "global_size", None)
    graphs = settings.compile and settings.compile_mode == "reduce-overhead"
    for batch, (inputs, targets) in enumerate(progress.batches(loader, desc, len(loader)), start=1):
        if graphs:  # a new step: the graphs may overwrite the last step's outputs (none is kept)
            torch.compiler.cudagraph_mark_step_begin()
        optim.set_lrs(state.step)
        real = int((targets != IGNORE).sum())  # on the host, before the move: no device sync
        total = global_size(batch - 1) if global_size is not None else real
        # both moves asynchronous: a blocking copy of the labels would wait for the previous step's
        # kernels each step (the H200 run of tests/gpu counted 32 host syncs in 24 steps)
        inputs, targets = move_to(inputs, settings.device), move_to(targets, settings.device)
        with autocast(settings.device, settings.precision):
            logits = model(inputs)
        # a weighted sum over the count, not over the weights' sum: the weights average 1 over the
        # training split, so this is the weighted mean's estimate, and padding (IGNORE) stays out
        loss_sum = F.cross_entropy(logits.float(), targets, weight=class_weight,
                                   label_smoothing=settings.label_smoothing, ignore_index=IGNORE, reduction="sum")
        loss = loss_sum * (settings.dist.world / max(1, total))
        tally.add(batch, state.step + 1, loss_sum, real, logits, targets)
        optim.opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if settings.grad_clip > 0:
            scaler.unscale_(optim.opt)  # clip the true gradients, not the scaled ones (fp16)
            torch.nn.utils.clip_grad_norm_([p for p in optim.params() if p.grad is not None], settings.grad_clip)
        scaler.step(optim.opt)
        scaler.update()
        state.step += 1
        kill_point("train-step")  # test hook (io.atomic.KILL_AT_ENV): a kill mid-epoch
    return tally.result()


def _compiled(net: nn.Module, settings: LoopSettings) -> nn.Module:
    """``net`` under torch.compile with ``--compile`` (the DDP wrapper inside, so DDP's
    optimizer splits the graph at its buckets); otherwise ``net``."""
    return torch.compile(net, mode=settings.compile_mode) if settings.compile else net


def _overfitting(record: EpochRecord, state: LoopState, settings: LoopSettings) -> str | None:
    """A warning once per phase when train accuracy runs ahead of a stalled validation."""
    gap = record.train_accuracy - record.val_accuracy
    if state.overfit_warned or gap <= settings.overfit_gap or state.stale < 2:
        return None
    state.overfit_warned = True
    return (f"possible overfitting in phase {record.phase} at epoch {record.epoch}: train accuracy "
            f"{record.train_accuracy:.3f} vs validation {record.val_accuracy:.3f} (gap "
            f"{gap:.3f} > {settings.overfit_gap}) while validation has not improved for "
            f"{state.stale} epochs; more data, augmentation, fewer trainable layers or stronger "
            "weight decay may help")


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    param_groups: list[dict[str, Any]],
    settings: LoopSettings,
    *,
    phase: Phase,
    label: str | None = None,
    metrics_log: MetricsLog | None = None,
    progress: Progress | None = None,
    on_epoch_start: EpochStart | None = None,
    generator: torch.Generator | None = None,
    checkpoint: Callable[[Checkpoint, bool], bool] | None = None,
    resume: Checkpoint | None = None,
    baseline: bool = False,
    baseline_score: tuple[float, float] | None = None,
    keep_latest: bool = False,
) -> FitResult:
    """Train ``model`` with early stopping on validation accuracy; restore the best weights.

    Args:
        model: maps a batch of inputs to logits [B, C].
        train_loader / val_loader: yield ``(inputs, labels)``; inputs a tensor or a dict of tensors.
        param_groups: AdamW parameter groups at the start, each with its peak ``lr``.
        settings: epochs, weight decay, warmup, clipping, patience, precision, device, deadline.
        phase: written into every metrics record.
        label: what progress bars and log lines call the phase (default: the phase's name).
        metrics_log: receives one record per epoch.
        on_epoch_start: called after ``model.train()`` each epoch with the epoch number; may
            return parameter groups that join the optimizer from this epoch on.
        generator: the training loader's shuffling generator (saved in checkpoints).
        checkpoint: called at the end of every epoch with a :class:`Checkpoint` and whether it
            is the phase's last (early stop, last epoch); returns whether it wrote it (it may
            skip epochs: ``checkpoint.CheckpointWriter``). When the time budget ends the phase
            after a skipped epoch, that epoch's checkpoint is written then.
        resume: continue after ``resume.state.epoch`` instead of starting at epoch 1; the model
            must hold ``resume.model`` and be prepared as for epoch 1.
        baseline: score the starting weights on validation as "epoch 0", so the phase never ends
            worse than it started (LP-FT: phase 2 keeps the probe if fine-tuning does not help).
        baseline_score: with ``baseline``, the starting weights' ``(accuracy, loss)`` when
            validation cannot score them honestly (a probe refitted on train + val has seen it).
        keep_latest: run every epoch (no early stop) and keep the latest epoch whose validation
            accuracy is at least the starting score (``baseline``; else any epoch): a completed
            schedule, not the epoch a tiny validation split happened to favour (LP-FT, TREC
            20/class, 24 validation questions: the best-epoch rule kept epoch 1, 0.747 test
            accuracy, where full fine-tuning's completed schedule reached 0.840).

    Returns:
        A :class:`FitResult`; the model holds the best epoch's weights.
    """
    progress = progress or Progress(False)
    phase = Phase(phase)  # also accepts its value ("fine-tune")
    label = label or str(phase)
    optim = _Optimizer(param_groups, settings, len(train_loader))
    state, best_state, warnings = LoopState(), None, []
    history: list[EpochRecord] = []
    if resume is not None:
        state, best_state = dataclasses.replace(resume.state), resume.best_model
        history = [r for r in resume.records if r.phase is phase]
        for epoch in range(1, state.epoch + 1):  # replay the schedule: same groups, same order
            optim.add(on_epoch_start(model, epoch) or [] if on_epoch_start else [], 0)
        optim.join_steps = list(resume.join_steps)
        optim.opt.load_state_dict(resume.optimizer)
        torch.set_rng_state(resume.torch_rng)
        if generator is not None and resume.generator_rng is not None:
            generator.set_state(resume.generator_rng)
    elif baseline:
        state.best_accuracy, state.best_loss = baseline_score or _evaluate(model, val_loader, settings)
        best_state = copy.deepcopy(model.state_dict())
        log.info("%s: starting weights score val accuracy %.4f", label, state.best_accuracy)
    ctx = settings.dist
    net = _compiled(ctx.wrap(model, settings.device), settings)  # DDP when several processes train
    bar = progress.epochs(settings.epochs, label)
    stopped = False
    unwritten: Checkpoint | None = None  # the last epoch's state, when the callback skipped it
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        # rank 0's clock decides, so every rank stops before the same epoch
        if ctx.broadcast_object(settings.deadline is not None and time.perf_counter() > settings.deadline):
            warning = f"{label}: time budget reached before epoch {epoch}; keeping the best epoch so far"
            log.warning("%s", warning)
            warnings.append(warning)
            stopped = True
            if checkpoint is not None and unwritten is not None:  # nothing trained since: still exact
                checkpoint(unwritten, True)
            break
        start = time.perf_counter()
        net.train()
        ctx.reseed(settings.seed, epoch)
        joining = on_epoch_start(model, epoch) or [] if on_epoch_start is not None else []
        events = []
        if joining:  # newly unfrozen layers deserve `patience` epochs before early stopping
            optim.add(joining, state.step)
            state.stale = 0
            names = tuple(str(g.get("name", "?")) for g in joining)
            events.append(Event(EventKind.UNFROZEN, f"unfrozen: {', '.join(names)}", names))
            if ctx.enabled:  # DDP hooks the parameters that train when it wraps: wrap anew
                ctx.unwrap(getattr(net, "_orig_mod", net))
                net = _compiled(ctx.wrap(model, settings.device), settings)
        train_loss, train_acc = _train_epoch(net, train_loader, optim, settings, state, progress,
                                             f"{label} {epoch}", (label, epoch))
        ctx.average_buffers(model)
        val_acc, val_loss = _evaluate(model, val_loader, settings)
        state.epoch = epoch
        # Accuracy decides; among equal accuracies a validation loss lower by more than 0.1%
        # wins (smaller drifts of a converged head would keep early stopping from ever firing).
        tie_better = val_acc == state.best_accuracy and val_loss < state.best_loss * (1 - 1e-3)
        improved = val_acc >= state.best_accuracy if keep_latest else val_acc > state.best_accuracy or tie_better
        if improved:
            if not keep_latest:  # keep_latest: best_accuracy stays the floor (the starting score)
                state.best_accuracy = val_acc
            state.best_loss, state.best_epoch, state.stale = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        elif state.step > optim.warmup:
            # Patience counts from the end of warmup: while the rate still climbs, a dip in
            # validation (LP-FT's first epoch moving the probe's features) is not a verdict.
            state.stale += 1
        record = EpochRecord(phase, epoch, train_loss, train_acc, val_loss, val_acc,
                             seconds=time.perf_counter() - start, lrs=optim.rates(), improved=improved,
                             events=events)
        warning = _overfitting(record, state, settings)
        if warning:
            log.warning("%s", warning)
            warnings.append(warning)
            record.events.append(Event(EventKind.OVERFITTING, warning))
        stopped = state.stale >= settings.patience and not keep_latest
        if stopped:
            record.events.append(Event(EventKind.EARLY_STOP, f"no validation improvement for {state.stale} "
                                       f"epochs; best epoch {state.best_epoch}"))
        history.append(record)
        if metrics_log is not None:
            metrics_log.append(record)
        bar.update(epoch, {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc})
        if checkpoint is not None:
            ck = Checkpoint(
                phase, dataclasses.replace(state), model.state_dict(), best_state,
                optim.opt.state_dict(), list(optim.join_steps), torch.get_rng_state(),
                generator.get_state() if generator is not None else None,
                list(metrics_log.records) if metrics_log is not None else list(history),
            )
            unwritten = None if checkpoint(ck, stopped or epoch == settings.epochs) else ck
        if stopped:
            log.info("%s: early stop after epoch %d; best epoch %d (val accuracy %.4f)",
                     label, epoch, state.best_epoch, state.best_accuracy)
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    check_finite_weights(model, f"{label} (epoch {state.best_epoch or state.epoch})")
    return FitResult(state.best_epoch, state.best_accuracy, state.best_loss, state.epoch, stopped,
                     history, warnings)
