"""Training a linear head on cached features: AdamW epochs or a full-batch L-BFGS sweep.

Features are standardised with the training split's mean and std, which conditions both
solvers (L2-normalised sentence embeddings have tiny coordinates); the standardisation is then
folded into the head's weights, so the result is an ordinary ``nn.Linear`` on raw features:

    W' = W / std,   b' = b - W' @ mean

Both solvers and the standardiser read the features a slice of rows at a time
(``CachedFeatures.chunks``), so a memory-mapped cache is never copied whole into RAM. The
L-BFGS objective is the full-batch one, summed over slices: each slice adds its mean loss
weighted by its share of the rows, and its gradient, so the optimiser sees the same function;
with one slice (any split up to ``features.CHUNK_MB``) the sums are the full-batch expressions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from typing import Any, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..io.records import EpochRecord, Phase
from .class_balance import weighted_scores
from .features import Rows, chunk_rows
from .loop import FitResult, LoopSettings, fit
from .metrics_log import MetricsLog
from .progress import Progress

log = logging.getLogger("transferkit")

# Half-decade steps from 1e-4 to 10. Cached features, 4 seeds, refit after selection: the decade
# grid 1e-5..1e-1 fell 1.4 points short of a hand-made sklearn probe on TREC 20/class (0.609 vs
# 0.622); this grid reaches 0.621 and is at or above the decade grid on MNIST, digits, BBC News
# and TREC at 5 and 20 per class (benchmarks/probe_parity.py).
LBFGS_L2_GRID = tuple(round(10 ** (k / 2), 10) for k in range(-8, 3))
LBFGS_INIT_SEED = 0  # each L-BFGS solve starts from nn.Linear's initialisation drawn with this seed


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block.

    The L-BFGS head solve is thousands of small tensor operations, where thread hand-offs cost
    more than they save: a 400 x 1280, 10-class probe took 2.8 s on one thread and 55 s on two
    on a busy 2-core machine.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _seeded_linear(features: int, num_classes: int, seed: int) -> nn.Linear:
    """``nn.Linear(features, num_classes)`` with its usual initialisation (Kaiming-uniform weight,
    a = sqrt(5); bias uniform in +-1/sqrt(fan_in)) drawn from a generator of its own, so the
    solve is reproducible without touching the process's random state."""
    linear = nn.Linear(features, num_classes, device="meta").to_empty(device="cpu")  # nothing drawn yet
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(features) if features > 0 else 0.0
        nn.init.uniform_(linear.bias, -bound, bound, generator=generator)
    return linear


class StandardizedLinear(nn.Module):
    """``Linear((x - mean) / std)``; :meth:`folded` returns the equivalent plain Linear.

    ``seed``: initialise the Linear from that seed (else from the process's random state).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int, seed: int | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", mean)  # [F]
        self.register_buffer("std", std)  # [F]
        self.linear = (nn.Linear(mean.numel(), num_classes) if seed is None
                       else _seeded_linear(mean.numel(), num_classes, seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, F] -> [B, C]
        return self.linear((x - self.mean) / self.std)

    @torch.no_grad()
    def folded(self) -> nn.Linear:
        weight = self.linear.weight / self.std  # [C, F]
        bias = self.linear.bias - weight @ self.mean  # [C]
        head = nn.Linear(weight.shape[1], weight.shape[0])
        head.weight.copy_(weight)
        head.bias.copy_(bias)
        return head


def _mean_std(data: Rows, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and (unbiased) std of ``data``, [F] each, read a slice at a time.

    One slice: ``x.mean(0)``, ``x.std(0)`` as they are. Several: two passes accumulating in
    float64 (the sum, then the squared deviations from the mean), so no [N, F] temporary exists
    and the result matches the one-slice one to float32 rounding.
    """
    rows = rows or chunk_rows(data.dim)
    if len(data) <= rows:
        x = next(data.chunks(rows))[0]  # [N, F]
        return x.mean(0), x.std(0)
    total = torch.zeros(data.dim, dtype=torch.float64)
    for x, _ in data.chunks(rows):
        total += x.sum(0, dtype=torch.float64)
    mean = total / len(data)  # [F]
    squares = torch.zeros(data.dim, dtype=torch.float64)
    for x, _ in data.chunks(rows):
        squares += (x.double() - mean).pow_(2).sum(0)
    std = (squares / (len(data) - 1)).sqrt()
    return mean.float(), std.float()


def _standardizer(train: Rows, num_classes: int, seed: int | None = None, rows: int | None = None,
                  mean_std: tuple[torch.Tensor, torch.Tensor] | None = None) -> StandardizedLinear:
    """A seeded ``StandardizedLinear`` on ``train``'s statistics (``mean_std``: already computed)."""
    mean, std = (t.clone() for t in mean_std) if mean_std is not None else _mean_std(train, rows)
    # Floor the std: a feature (nearly) constant on a few-shot training split would otherwise be
    # divided by ~0 and explode on validation data where it varies.
    std = std.clamp_min(0.1 * std.mean().item() + 1e-8)
    return StandardizedLinear(mean, std, num_classes, seed)


class _RowBatches(Dataset):
    """Cached rows as a map-style dataset whose DataLoader fetches a whole batch in one gather
    (``__getitems__``), a memory-mapped matrix read one batch at a time."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.tensor(positions, dtype=torch.long)
        return self.rows.gather(index), self.rows.labels[index]  # [B, F], [B]

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([position])
        return x[0], y[0]


def _as_batch(batch: Any) -> Any:
    return batch  # __getitems__ already returns the collated batch


def row_loader(rows: Rows, batch_size: int, generator: torch.Generator | None = None) -> DataLoader:
    """``(features [B, F], labels [B])`` batches of cached rows; shuffled when ``generator`` is
    given (the same draws as ``DataLoader(TensorDataset(...), shuffle=True, generator=...)``)."""
    return DataLoader(_RowBatches(rows), batch_size=batch_size, shuffle=generator is not None,
                      generator=generator, collate_fn=_as_batch)


@torch.no_grad()
def evaluate_head(head: nn.Module, data: Rows, rows: int | None = None,
                  class_weight: torch.Tensor | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``head`` on ``data``, a slice at a time; with
    ``class_weight`` [C], both weighted by each row's class (``class_balance.weighted_scores``).

    Returns:
        ``(loss, accuracy)``; with one slice, exactly ``F.cross_entropy(head(x), y)`` and
        ``(head(x).argmax(1) == y).float().mean()``.
    """
    if class_weight is not None and len(data):  # weighted means need the total weight: logits kept [N, C]
        parts = [(head(x), y) for x, y in data.chunks(rows)]
        accuracy, loss_w = weighted_scores(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), class_weight)
        return loss_w, accuracy
    n, loss, correct = len(data), 0.0, 0
    for x, y in data.chunks(rows):
        logits = head(x)  # [b, C]
        loss += F.cross_entropy(logits, y).item() * (len(y) / n)
        correct += int((logits.argmax(1) == y).sum())
    return loss, (torch.tensor(float(correct)) / n).item()  # a float32 mean, as torch's


def fit_head_adamw(
    train: Rows,
    val: Rows,
    num_classes: int,
    settings: LoopSettings,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    metrics_log: MetricsLog | None = None,
    progress: Progress | None = None,
    standardize: bool = True,
    phase: Phase = Phase.HEAD,
) -> tuple[nn.Linear, FitResult]:
    """Mini-batch AdamW on cached features with early stopping; returns the folded head.

    ``standardize=False`` trains a plain Linear on the raw features (used by the benchmark to
    compare like with like against the uncached loop).
    """
    head = _standardizer(train, num_classes)
    if not standardize:
        head.mean.zero_()
        head.std.fill_(1.0)
    train_loader = row_loader(train, batch_size, generator)
    val_loader = row_loader(val, 1024)
    cpu_settings = dataclasses.replace(settings, device=torch.device("cpu"), precision="fp32")
    result = fit(
        head, train_loader, val_loader, [{"params": list(head.linear.parameters()), "lr": lr}],
        cpu_settings, phase=phase, metrics_log=metrics_log, progress=progress,
    )
    return head.folded(), result


@torch.no_grad()
def penalized_cross_entropy(weight: torch.Tensor, bias: torch.Tensor,
                            slices: Iterable[tuple[torch.Tensor, torch.Tensor]], n: int,
                            l2: float, class_weight: torch.Tensor | None = None,
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The L-BFGS head's objective, mean CE over ``n`` rows + l2/2 * ||W||^2, and its gradient.

    The gradient is written out, not left to autograd: a solve is hundreds of calls on small
    matrices whose cost is dispatch, and autograd's graph tripled it (glyphs 5/class, 56
    cross-validation solves: 2.6 s of closures by autograd, 0.9 s by hand).
    d(mean CE)/dz = (softmax(z) - onehot(y)) / n for logits z [b, C].

    Args:
        weight, bias: [C, F], [C].
        slices: ``(x [b, F], y [b])`` parts of the ``n`` rows, standardised.
        class_weight: [C] weights of each row's CE by its label (``None``: 1); they average about
            1 over the rows (``class_balance``), so the sum is still divided by ``n``.

    Returns:
        ``(loss, d loss / d weight [C, F], d loss / d bias [C])``.
    """
    grad_w, grad_b = l2 * weight, torch.zeros_like(bias)
    total = 0.5 * l2 * weight.pow(2).sum()
    for x, y in slices:
        log_p = torch.addmm(bias, x, weight.t()).log_softmax(1)  # [b, C]
        row_weight = None if class_weight is None else class_weight[y][:, None] / n  # [b, 1]
        picked = log_p.gather(1, y[:, None])  # [b, 1]
        total -= (picked.sum() / n) if row_weight is None else (row_weight * picked).sum()
        residual = log_p.exp_()  # [b, C]: softmax, then minus the one-hot labels
        residual[torch.arange(len(y)), y] -= 1.0
        if row_weight is None:
            residual /= n
        else:
            residual *= row_weight
        grad_w.addmm_(residual.t(), x)
        grad_b += residual.sum(0)
    return total, grad_w, grad_b


def _lbfgs(head: StandardizedLinear, data: Rows, l2: float, rows: int | None = None,
           max_iter: int = 500, class_weight: torch.Tensor | None = None) -> None:
    """Full-batch multinomial logistic regression: min CE + l2/2 * ||W||^2 (strong Wolfe).

    The loss and its gradient are summed over slices of ``rows`` rows of ``data``: slice ``k``
    of ``b_k`` rows adds ``(b_k / N) * mean CE_k`` (exactly the full-batch mean CE in total), so
    memory holds one slice [b, F], never the [N, F] matrix or its standardised copy.
    """
    optimizer = torch.optim.LBFGS(
        head.linear.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
        tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe",
    )
    n, rows = len(data), rows or chunk_rows(data.dim)
    weight, bias = head.linear.weight, head.linear.bias  # [C, F], [C]

    def standardized(x: torch.Tensor) -> torch.Tensor:  # [b, F] -> [b, F], as head() computes it
        return (x - head.mean) / head.std

    # Data that fits one slice is read and standardised once for the whole solve (the closure runs
    # hundreds of times; a view's rows would be gathered again each time); larger data is re-read
    # per call.
    whole = [(standardized(x), y) for x, y in data.chunks(rows)] if n <= rows else None

    @torch.no_grad()
    def closure() -> torch.Tensor:
        slices = whole or ((standardized(x), y) for x, y in data.chunks(rows))
        total, weight.grad, bias.grad = penalized_cross_entropy(weight, bias, slices, n, l2, class_weight)
        return total

    optimizer.step(closure)


def fit_head_lbfgs(
    train: Rows,
    val: Rows,
    num_classes: int,
    metrics_log: MetricsLog | None = None,
    grid: tuple[float, ...] = LBFGS_L2_GRID,
    class_weight: torch.Tensor | None = None,
) -> tuple[nn.Linear, dict[str, Any]]:
    """L-BFGS logistic regression for each L2 strength in ``grid``; keep the best on validation.

    Runs on one thread (see :func:`one_thread`) and starts every solve from the same seeded
    initialisation; the process's thread count and random state are left as they were.

    Returns:
        The folded head and ``{"l2", "val_accuracy", "val_loss"}`` of the chosen strength.
    """
    best: dict[str, Any] = {"val_accuracy": -1.0, "val_loss": float("inf")}
    with one_thread():
        mean_std = _mean_std(train)  # the same for every strength: read the features once
        for step, l2 in enumerate(grid, start=1):
            start = time.perf_counter()
            head = _standardizer(train, num_classes, seed=LBFGS_INIT_SEED, mean_std=mean_std)
            with torch.enable_grad():
                _lbfgs(head, train, l2, class_weight=class_weight)
            train_loss, train_acc = evaluate_head(head, train, class_weight=class_weight)
            val_loss, val_acc = evaluate_head(head, val, class_weight=class_weight)
            record = EpochRecord(Phase.HEAD_LBFGS, step, train_loss, train_acc, val_loss, val_acc,
                                 seconds=time.perf_counter() - start, l2=l2)
            better = record.val_accuracy > best["val_accuracy"] or (
                record.val_accuracy == best["val_accuracy"] and record.val_loss < best["val_loss"])
            record.improved = better
            if metrics_log is not None:
                metrics_log.append(record)
            log.info("head-lbfgs l2=%g: val accuracy %.4f, val loss %.4f", l2, record.val_accuracy, record.val_loss)
            if better:
                best = {"l2": l2, "val_accuracy": record.val_accuracy, "val_loss": record.val_loss,
                        "head": head.folded()}
    head_out = best.pop("head")
    return head_out, best


@torch.no_grad()
def temper_head(head: nn.Linear, train: Rows, energy: float, chunk: int | None = None) -> float:
    """Divide ``head``'s logits by a temperature so its mean training loss is ``energy`` x ln(C).

    A probe fitted to convergence on a few-shot split interpolates it (N examples in F > N
    dimensions): its training loss is ~0, so LP-FT's fine-tune phase gets almost no gradient and
    ends where the probe was. Scaling the weights and bias by ``1 / T`` keeps every prediction
    (the argmax is unchanged) but restores a moderate loss, which the backbone then reduces by
    adapting its features under a head that already points the right way (Ren et al., ICLR 2023,
    "How to prepare your task head for finetuning"). A probe whose loss is already at or above
    the target is left as it is.

    Args:
        head: the fitted probe, ``Linear(F, C)``; scaled in place.
        train: the cached training features it was fitted on.
        energy: target loss as a share of ln(C), the loss of a uniform guess; in (0, 1).
        chunk: rows per matmul, so memory-mapped features are read a slice at a time (default:
            ``features.CHUNK_MB`` worth).

    Returns:
        The factor applied to the weights and bias (``1 / T``; 1.0 when left as it is).

    Example:
        >>> import torch
        >>> from transferkit.train.features import CachedFeatures
        >>> x, y = torch.eye(4), torch.arange(4)
        >>> head = torch.nn.Linear(4, 4); _ = head.weight.data.copy_(20 * torch.eye(4)); _ = head.bias.data.zero_()
        >>> scale = temper_head(head, CachedFeatures(x, y), energy=0.5)
        >>> round(F.cross_entropy(head(x), y).item() / math.log(4), 3), bool(scale < 1)
        (0.5, True)
    """
    logits = torch.cat([head(x) for x, _ in train.chunks(chunk)])  # [N, C]
    labels = train.labels
    target = energy * math.log(logits.shape[1])

    def loss(scale: float) -> float:
        return F.cross_entropy(scale * logits, labels).item()

    if loss(1.0) >= target:
        return 1.0
    # loss(0) = ln C > target > loss(1): bisect for a crossing (continuity suffices; the loss
    # need not be monotone in the scale).
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if loss(mid) > target else (low, mid)
    scale = 0.5 * (low + high)
    head.weight.mul_(scale)
    head.bias.mul_(scale)
    return scale

