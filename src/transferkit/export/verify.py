"""Verification: the exported file against the eager model on the run's own validation data."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch

from ..data import Split, load_data
from ..errors import ExportError, TransferkitError
from ..inference import Run
from ..train.loaders import make_loader

__all__ = ["Verification", "validation_split", "sample_batch", "check_parity", "accuracy_of",
           "DEFAULT_TOLERANCE"]

log = logging.getLogger("transferkit")

#: Largest absolute logit difference accepted for fp32 exports.
DEFAULT_TOLERANCE = 1e-4


@dataclass
class Verification:
    """How closely the exported file reproduces the eager model.

    Attributes:
        max_abs_diff: largest absolute difference between eager and exported logits.
        top1_agreement: share of examples with the same top-1 class.
        n: examples compared.
        tolerance: the largest ``max_abs_diff`` accepted.
        sample: ``validation`` (the run's validation split) or ``synthetic`` (data unavailable).
    """

    max_abs_diff: float
    top1_agreement: float
    n: int
    tolerance: float
    sample: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"verified on {self.n} {self.sample} examples: max |logit difference| "
                f"{self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}), top-1 agreement "
                f"{100 * self.top1_agreement:.1f}%")


def validation_split(run: Run) -> Split | None:
    """The run's validation split rebuilt from its config (same seed and fractions), or None.

    When the training data is gone (moved, deleted), a warning is logged and None returned;
    verification then runs on a synthetic batch.
    """
    cfg = run.config
    try:
        data = load_data(cfg.data_options)
    except (TransferkitError, OSError) as exc:
        log.warning("the run's data %s cannot be loaded (%s); verifying on synthetic inputs", cfg.data,
                    str(exc)[:200])
        return None
    return data.val if len(data.val) else None


def _synthetic(run: Run, n: int) -> Any:
    spec = run.model.spec
    if spec.modality == "image":
        assert spec.image is not None  # image models carry image preprocessing
        return torch.randn(n, 3, spec.image.crop_size, spec.image.crop_size, generator=torch.Generator().manual_seed(0))
    texts = [" ".join([label] * (1 + i % 4)) for i, label in enumerate((run.labels * n)[:n])]  # padded rows
    return dict(run.model.tokenizer()(texts, padding=True, truncation=True, max_length=spec.text.max_length,
                                      return_tensors="pt"))


def sample_batch(run: Run, split: Split | None, n: int) -> tuple[Any, str]:
    """Up to ``n`` preprocessed validation inputs (image [B, 3, H, W] or tokenizer dict), and
    ``"validation"`` or ``"synthetic"``."""
    if split is None:
        return _synthetic(run, n), "synthetic"
    subset = Split(split.items[:n], split.labels[:n])
    inputs, _ = next(iter(make_loader(run.model, subset, batch_size=n)))
    return inputs, "validation"


def check_parity(eager: torch.Tensor, exported: torch.Tensor, tolerance: float, sample: str,
                 what: str) -> Verification:
    """Compare logits [N, C]; raise ExportError when the largest difference exceeds ``tolerance``.

    Example:
        >>> check_parity(torch.zeros(2, 3), torch.zeros(2, 3), 1e-4, "validation", "ONNX").max_abs_diff
        0.0
    """
    eager, exported = eager.float().cpu(), exported.float().cpu()
    if eager.shape != exported.shape:
        raise ExportError(f"The {what} model returns logits of shape {tuple(exported.shape)}, the eager "
                          f"model {tuple(eager.shape)}; the export is broken and was not kept.")
    diff = float((eager - exported).abs().max()) if eager.numel() else 0.0
    agree = float((eager.argmax(1) == exported.argmax(1)).float().mean()) if eager.numel() else 1.0
    result = Verification(diff, agree, int(eager.shape[0]), tolerance, sample)
    if not diff <= tolerance:  # also catches NaN
        raise ExportError(
            f"The {what} model does not match the eager model: the largest absolute logit "
            f"difference on {result.n} {sample} examples is {diff:.3g}, above the tolerance "
            f"{tolerance:g} (top-1 agreement {100 * agree:.1f}%). The file was not kept. Raise "
            "--tolerance if this precision is acceptable, or try another --format or --opset."
        )
    return result


def accuracy_of(predict: Callable[[Any], torch.Tensor], run: Run, split: Split, batch_size: int = 32) -> float:
    """Accuracy over ``split`` of ``predict(inputs) -> logits [B, C]`` on preprocessed batches."""
    correct = 0
    for inputs, labels in _batches(run, split, batch_size):
        correct += int((predict(inputs).argmax(1) == labels).sum())
    return correct / max(len(split), 1)


def _batches(run: Run, split: Split, batch_size: int) -> Iterator[tuple[Any, torch.Tensor]]:
    yield from make_loader(run.model, split, batch_size=batch_size)
