"""Feature cache: run the frozen backbone once per split, keep the pooled features.

Feature extraction trains only the head, so re-running a frozen backbone every epoch (the usual
``for x, y in loader: model(x)``) repeats identical work. Here each split is encoded once into a
[N, F] float32 matrix, held in memory or, above a size limit, in a memory-mapped file on disk,
and the head trains on that matrix for as many epochs as it needs.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..registry import FEATURE_BACKENDS
from .device import autocast, move_to
from .progress import Progress

log = logging.getLogger("transferkit")


@dataclass
class CachedFeatures:
    """Pooled backbone features of one split: ``features`` [N, F] float32, ``labels`` [N] int64."""

    features: torch.Tensor
    labels: torch.Tensor
    on_disk: bool = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _allocate(n: int, dim: int, limit_mb: float, spill_dir: Path | None) -> tuple[torch.Tensor, bool]:
    """A [n, dim] float32 buffer in memory, or memory-mapped on disk when over ``limit_mb``."""
    if n * dim * 4 <= limit_mb * 2**20:
        return torch.empty(n, dim, dtype=torch.float32), False
    folder = spill_dir or Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="features-", suffix=".f32", dir=folder)
    array = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, dim))
    Path(path).unlink()  # the mapping keeps the data alive; nothing is left behind on exit
    import os

    os.close(fd)
    log.info("feature cache of %d x %d spills to disk (%.0f MB > %d MB)", n, dim, n * dim * 4 / 2**20, limit_mb)
    return torch.from_numpy(array), True


@torch.no_grad()
def extract_features(
    model: nn.Module,
    batches: Iterable[tuple[Any, torch.Tensor, torch.Tensor]],
    n: int,
    device: torch.device,
    *,
    amp: bool = True,
    limit_mb: float = 2048,
    spill_dir: Path | None = None,
    progress: Progress | None = None,
    desc: str = "features",
    encode: Callable[[Any], torch.Tensor] | None = None,
) -> CachedFeatures:
    """Encode a split with ``model.forward_features`` in eval mode.

    Args:
        model: a TransferModel (its backbone is run, not its head).
        batches: yields ``(inputs, labels, indices)``; ``indices`` place each row, so batches may
            come in any order (text is batched by length to avoid padding).
        n: number of examples in the split.
        device: where the backbone runs.
        limit_mb: above this many MB the matrix lives in a memory-mapped temporary file.
        encode: runs the backbone instead of ``model.forward_features`` (CPU inputs -> [B, F]),
            from a ``FEATURE_BACKENDS`` factory (``--backend onnxruntime``).

    Returns:
        CachedFeatures with rows in the split's original order.
    """
    progress = progress or Progress(False)
    model.eval()
    features: torch.Tensor | None = None
    labels = torch.empty(n, dtype=torch.long)
    on_disk = False
    for inputs, targets, index in progress.batches(batches, desc):
        if encode is not None:
            out = encode(inputs)  # [B, F]
        else:
            with autocast(device, amp):
                out = model.forward_features(move_to(inputs, device))  # [B, F]
        out = out.float().cpu()
        if features is None:
            features, on_disk = _allocate(n, out.shape[1], limit_mb, spill_dir)
        features[index] = out
        labels[index] = targets
    if features is None:  # empty split
        features = torch.empty(0, 0)
    return CachedFeatures(features, labels, on_disk)


def _torch_backend(model: nn.Module, loader: Any, device: torch.device) -> None:
    """``--backend torch``: no separate encoder; ``extract_features`` runs the model itself."""
    return None


FEATURE_BACKENDS.add("torch", _torch_backend)
