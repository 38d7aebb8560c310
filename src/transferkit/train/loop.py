"""The training loop: AdamW, warmup + cosine, clipping, mixed precision, early stopping.

One loop serves every phase: a linear head on cached features [N, F] and a whole network on
images or token batches. What differs (which parameters train, BatchNorm modes) is decided by the
caller through the parameter groups and the ``on_epoch_start`` callback.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .device import autocast, batch_size_of, move_to
from .progress import Progress
from .runfolder import MetricsLog
from .schedule import warmup_cosine

log = logging.getLogger("transferkit")


@dataclass
class LoopSettings:
    """Hyperparameters of one optimisation phase."""

    epochs: int
    weight_decay: float
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    patience: int = 5
    amp: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class FitResult:
    """What a phase produced: the best epoch's weights are already loaded into the model."""

    best_epoch: int
    best_val_accuracy: float
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]]


@torch.no_grad()
def predict_logits(
    model: nn.Module, loader: Iterable[Any], device: torch.device, amp: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` in eval mode over ``loader``; return float32 logits [N, C] and labels [N]."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for inputs, targets in loader:
        with autocast(device, amp):
            out = model(move_to(inputs, device))
        logits.append(out.float().cpu())
        labels.append(targets.cpu())
    model.train(was_training)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def _evaluate(model: nn.Module, loader: Iterable[Any], settings: LoopSettings) -> tuple[float, float]:
    """Validation (accuracy, mean cross-entropy)."""
    logits, labels = predict_logits(model, loader, settings.device, settings.amp)
    if labels.numel() == 0:
        return float("nan"), float("nan")
    loss = F.cross_entropy(logits, labels).item()
    return (logits.argmax(1) == labels).float().mean().item(), loss


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    param_groups: list[dict[str, Any]],
    settings: LoopSettings,
    *,
    phase: str,
    metrics_log: MetricsLog | None = None,
    progress: Progress | None = None,
    on_epoch_start: Callable[[nn.Module, int], None] | None = None,
) -> FitResult:
    """Train ``model`` with early stopping on validation accuracy; restore the best weights.

    Args:
        model: maps a batch of inputs to logits [B, C].
        train_loader / val_loader: yield ``(inputs, labels)``; inputs a tensor or a dict of tensors.
        param_groups: AdamW parameter groups, each with its peak ``lr``.
        settings: epochs, weight decay, warmup, clipping, patience, precision, device.
        phase: name written into every metrics record (``head``, ``full``, ...).
        metrics_log: receives one record per epoch.
        on_epoch_start: called after ``model.train()`` each epoch, e.g. to keep frozen BatchNorm
            layers in eval mode.

    Returns:
        A :class:`FitResult`; the model holds the best epoch's weights.
    """
    progress = progress or Progress(False)
    optimizer = torch.optim.AdamW(param_groups, weight_decay=settings.weight_decay)
    peak_lrs = [g["lr"] for g in optimizer.param_groups]
    total_steps = max(1, settings.epochs * len(train_loader))
    warmup_steps = int(settings.warmup_fraction * total_steps)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    best = {"acc": -1.0, "loss": float("inf"), "epoch": 0, "state": None}
    history: list[dict[str, Any]] = []
    step, stale = 0, 0
    bar = progress.epochs(settings.epochs, phase)
    epoch = 0
    for epoch in range(1, settings.epochs + 1):
        start = time.perf_counter()
        model.train()
        if on_epoch_start is not None:
            on_epoch_start(model, epoch)
        seen, loss_sum, correct = 0, 0.0, 0
        for inputs, targets in progress.batches(train_loader, f"{phase} {epoch}", len(train_loader)):
            for group, peak in zip(optimizer.param_groups, peak_lrs):
                group["lr"] = peak * warmup_cosine(step, total_steps, warmup_steps)
            inputs, targets = move_to(inputs, settings.device), targets.to(settings.device)
            with autocast(settings.device, settings.amp):
                logits = model(inputs)
            loss = F.cross_entropy(logits.float(), targets, label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
            optimizer.step()
            step += 1
            n = batch_size_of(inputs)
            seen += n
            loss_sum += loss.item() * n
            correct += int((logits.argmax(1) == targets).sum())
        val_acc, val_loss = _evaluate(model, val_loader, settings)
        record = {
            "phase": phase, "epoch": epoch, "train_loss": loss_sum / max(1, seen),
            "train_accuracy": correct / max(1, seen), "val_loss": val_loss, "val_accuracy": val_acc,
            "lr": optimizer.param_groups[-1]["lr"], "seconds": time.perf_counter() - start,
        }
        history.append(record)
        if metrics_log is not None:
            metrics_log.append(record)
        bar.update(epoch, {k: record[k] for k in ("train_loss", "val_loss", "val_accuracy")})
        # Accuracy decides; among equal accuracies the lower validation loss wins.
        if val_acc > best["acc"] or (val_acc == best["acc"] and val_loss < best["loss"]):
            best.update(acc=val_acc, loss=val_loss, epoch=epoch, state=copy.deepcopy(model.state_dict()))
            stale = 0
        else:
            stale += 1
            if stale >= settings.patience:
                break
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    stopped = epoch < settings.epochs
    if stopped:
        log.info("%s: early stop after epoch %d; best epoch %d (val accuracy %.4f)",
                 phase, epoch, best["epoch"], best["acc"])
    return FitResult(best["epoch"], best["acc"], best["loss"], epoch, stopped, history)
