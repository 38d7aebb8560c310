"""Feature cache: run the frozen backbone once per split, keep the pooled features.

Feature extraction trains only the head, so re-running a frozen backbone every epoch (the usual
``for x, y in loader: model(x)``) repeats identical work. Here each split is encoded once into a
[N, F] float32 matrix, and the head trains on that matrix for as many epochs as it needs.

One :class:`FeatureCache` per run holds the matrices of every split it encodes (train, val,
test) within one memory budget (``--feature-cache-mb``): a split that would take the cache past
it is written to a memory-mapped file instead. That file lives on the run folder's disk (or
``--cache-dir``), never in a RAM-backed temporary folder (``/dev/shm``, a tmpfs ``/tmp``), where
"spilling" would use the very memory it is meant to spare. It is unlinked as soon as it is
mapped: the mapping keeps the data while the run needs it, and nothing is left on disk when the
process ends, even after ``kill -9``.

The solvers read the matrices a chunk of rows at a time (:meth:`CachedFeatures.chunks`), and
:class:`FeatureRows` names rows of several matrices (train + val, a CV fold) without copying
them, so memory stays bounded by the budget plus one chunk.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..data.decoded import default_spill_dir  # one owner: both caches spill alike
from ..errors import ConfigError
from ..registry import FEATURE_BACKENDS
from .device import autocast, move_to
from .progress import Progress

log = logging.getLogger("transferkit")

# The solvers read cached features in slices of at most this many MB ([rows, F] float32), so a
# memory-mapped matrix is never copied whole into RAM. 64 MB keeps a few-shot split (hundreds of
# rows) in one slice, where the chunked sums reduce to the full-batch expressions exactly.
CHUNK_MB = 64.0


def chunk_rows(dim: int, chunk_mb: float | None = None) -> int:
    """How many rows of a [N, ``dim``] float32 matrix fit in one slice of ``chunk_mb`` MB."""
    budget = (CHUNK_MB if chunk_mb is None else chunk_mb) * 2**20
    return max(1, int(budget // (4 * max(dim, 1))))


@dataclass
class CachedFeatures:
    """Pooled backbone features of one split: ``features`` [N, F] float32, ``labels`` [N] int64.

    ``spill_path``: the memory-mapped file that holds ``features`` when it spilled to disk (already
    unlinked: the mapping keeps its data while it is referenced).
    """

    features: torch.Tensor
    labels: torch.Tensor
    on_disk: bool = False
    spill_path: Path | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dim(self) -> int:
        """F, the feature width."""
        return int(self.features.shape[1]) if self.features.dim() == 2 else 0

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """The rows at ``positions`` [k], copied into RAM: [k, F] float32."""
        return self.features[positions].float()

    def chunks(self, rows: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(features [b, F], labels [b])`` slices in order, at most ``rows`` rows each."""
        rows = rows or chunk_rows(self.dim)
        for start in range(0, len(self), rows):
            yield self.features[start : start + rows].float(), self.labels[start : start + rows]


class FeatureRows:
    """Rows of one or more cached matrices, read without copying the matrices.

    ``FeatureRows([train, val])`` is train followed by val; ``.take(index)`` a subset of that (a
    cross-validation fold), in the order of ``index``. Only the labels ([N] int64) are held; the
    features are gathered a slice at a time by :meth:`chunks` and :meth:`gather`, so a pool of
    memory-mapped splits costs no RAM of its own.

    Example:
        >>> a = CachedFeatures(torch.zeros(2, 3), torch.tensor([0, 1]))
        >>> b = CachedFeatures(torch.ones(1, 3), torch.tensor([1]))
        >>> rows = FeatureRows([a, b]).take(torch.tensor([2, 0]))
        >>> rows.gather(torch.arange(2))[:, 0].tolist(), rows.labels.tolist()
        ([1.0, 0.0], [1, 0])
    """

    def __init__(self, parts: Sequence[CachedFeatures], index: torch.Tensor | None = None) -> None:
        self.parts = tuple(parts)
        sizes = torch.tensor([len(p) for p in self.parts], dtype=torch.long)  # [P]
        self._ends = torch.cumsum(sizes, 0)  # [P]: one past each part's last row in the pool
        self.index = torch.arange(int(self._ends[-1])) if index is None else index.long()  # [N] pool rows
        self.labels = torch.cat([p.labels for p in self.parts])[self.index]  # [N]

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def dim(self) -> int:
        """F, the feature width."""
        return max(p.dim for p in self.parts)

    def take(self, positions: torch.Tensor) -> FeatureRows:
        """The rows at ``positions`` of this view, as a view."""
        return FeatureRows(self.parts, self.index[positions])

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """The rows at ``positions`` [k] of this view, copied into RAM: [k, F] float32."""
        pool_rows = self.index[positions]  # [k]
        part_of = torch.searchsorted(self._ends, pool_rows, right=True)  # [k]: which part holds each
        out = torch.empty(len(pool_rows), self.dim, dtype=torch.float32)
        for p in part_of.unique().tolist():
            mine = part_of == p
            start = int(self._ends[p]) - len(self.parts[p])
            out[mine] = self.parts[p].gather(pool_rows[mine] - start)
        return out

    def chunks(self, rows: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(features [b, F], labels [b])`` slices in order, at most ``rows`` rows each."""
        rows = rows or chunk_rows(self.dim)
        for start in range(0, len(self), rows):
            positions = torch.arange(start, min(start + rows, len(self)))
            yield self.gather(positions), self.labels[start : start + rows]


Rows = CachedFeatures | FeatureRows  # what the head solvers read


class FeatureCache:
    """The memory budget of every feature matrix one run caches, all splits together.

    Matrices are held in RAM while the total stays within ``limit_mb``; one that would pass it is
    memory-mapped from an unlinked file in ``spill_dir`` (default :func:`default_spill_dir`; the
    runner passes the run folder, or ``--cache-dir``).

    Example:
        >>> cache = FeatureCache(limit_mb=1.0)
        >>> cache.allocate(100, 1024)[1], cache.allocate(200, 1024)[1] is not None  # 0.4 MB, then 0.8 MB
        (None, True)
    """

    def __init__(self, limit_mb: float = 2048, spill_dir: Path | None = None) -> None:
        self.limit_bytes = int(limit_mb * 2**20)
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.in_memory_bytes = 0  # held in RAM so far, every split together
        self.spilled: list[Path] = []  # spill files made (already unlinked)

    def allocate(self, n: int, dim: int) -> tuple[torch.Tensor, Path | None]:
        """A [n, dim] float32 buffer: in RAM within the budget, else memory-mapped on disk.

        Returns:
            The buffer and the spill file's path (``None`` when in RAM).
        """
        size = n * dim * 4
        if self.in_memory_bytes + size <= self.limit_bytes:
            self.in_memory_bytes += size
            return torch.empty(n, dim, dtype=torch.float32), None
        folder = self.spill_dir or default_spill_dir()
        array, path = _map_spill_file(folder, n, dim)
        self.spilled.append(path)
        log.info("feature cache: %d x %d (%s) spills to %s; %s of the %s budget (all splits) in memory",
                 n, dim, _megabytes(size), folder, _megabytes(self.in_memory_bytes), _megabytes(self.limit_bytes))
        return torch.from_numpy(array), path


def _map_spill_file(folder: Path, n: int, dim: int) -> tuple[np.memmap, Path]:
    """Map a new [n, dim] float32 file in ``folder``, its space reserved, then unlink it.

    The space is reserved with ``posix_fallocate``: a full disk is an error here, not a SIGBUS
    when a page of the mapping is first written. The name is hidden and ends in ``.tmp``, so a
    run folder's cleanup of temporary files covers the instant between creating and unlinking.
    """
    size = n * dim * 4
    path: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".features-", suffix=".tmp", dir=folder)
        path = Path(name)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
            array = np.memmap(path, dtype=np.float32, mode="r+", shape=(n, dim))
        finally:
            os.close(fd)
            path.unlink()  # the mapping keeps the data alive; nothing is left behind on exit
    except OSError as err:
        raise ConfigError(
            f"The feature cache could not write its {_megabytes(size)} spill file for a {n} x {dim} "
            f"feature matrix in {path or folder} ({err.strerror or err}); point --cache-dir at a "
            f"writable folder on a disk with room, or raise --feature-cache-mb to keep more in memory."
        ) from err
    return array, path


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 / 10 else f"{size / 2**10:.1f} KB"


@torch.no_grad()
def extract_features(
    model: nn.Module,
    batches: Iterable[tuple[Any, torch.Tensor, torch.Tensor]],
    n: int,
    device: torch.device,
    *,
    precision: str = "fp32",
    compile: bool = False,
    limit_mb: float = 2048,
    spill_dir: Path | None = None,
    cache: FeatureCache | None = None,
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
        cache: the run's :class:`FeatureCache`, shared by every split it encodes, so one budget
            covers them all; without it, a cache of its own from ``limit_mb`` and ``spill_dir``.
        limit_mb, spill_dir: that cache's budget and spill folder (unused with ``cache``).
        encode: runs the backbone instead of ``model.forward_features`` (CPU inputs -> [B, F]),
            from a ``FEATURE_BACKENDS`` factory (``--backend onnxruntime``).
        compile: run ``model.forward_features`` under torch.compile (``--compile``).

    Returns:
        CachedFeatures with rows in the split's original order.
    """
    progress = progress or Progress(False)
    cache = cache or FeatureCache(limit_mb, spill_dir)
    model.eval()
    forward = torch.compile(model.forward_features) if compile else model.forward_features
    features: torch.Tensor | None = None
    labels = torch.empty(n, dtype=torch.long)
    spill_path: Path | None = None
    for inputs, targets, index in progress.batches(batches, desc):
        if encode is not None:
            out = encode(inputs)  # [B, F]
        else:
            with autocast(device, precision):
                out = forward(move_to(inputs, device))  # [B, F]
        out = out.float().cpu()
        if features is None:
            features, spill_path = cache.allocate(n, out.shape[1])
        features[index] = out
        labels[index] = targets
    if features is None:  # empty split
        features = torch.empty(0, 0)
    return CachedFeatures(features, labels, spill_path is not None, spill_path)


def _torch_backend(model: nn.Module, loader: Any, device: torch.device, *, examples: int | None = None) -> None:
    """``--backend torch``: no separate encoder; ``extract_features`` runs the model itself."""
    return None


FEATURE_BACKENDS.add("torch", _torch_backend)
