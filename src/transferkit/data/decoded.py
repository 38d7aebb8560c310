"""Decoded-image cache: each image decoded and resized once, its crops and augmentation redone
from the cached pixels every epoch.

A multi-epoch image run otherwise decodes every JPEG/PNG and resizes it (PIL, antialiased)
on every access, although only the crop and the augmentation that follow differ between
epochs. :class:`DecodedImages` keeps, per image of one split, the RGB image after
``ImageTransform.resize`` (short side ``resize_size``) as uint8 [H, W, 3]; shapes vary with
the aspect ratio. The eval transform on a cached image is bit-for-bit the on-the-fly one: the
resize is the same PIL call, and a uint8 image survives the array round trip exactly.

One :class:`DecodedCache` per run holds the stores of every split within one memory budget:
an image that would take the cache past it is written to a memory-mapped file instead. That
file lives on a disk folder (the run folder), never in a RAM-backed temporary folder, and is
unlinked as soon as it is opened, so nothing is left behind, even after ``kill -9``. The file
grows in segments (``SEGMENT_MB``), each reserved with ``posix_fallocate`` before it is
mapped: a full disk is an error, not a SIGBUS.

DataLoader workers: a store is filled by the process that owns it. A worker process (its
memory is its own) decodes what is missing without storing it, so a loader with workers calls
:meth:`DecodedImages.fill` first (the workers decode, the main process stores); workers forked
afterwards read the cache (RAM pages are inherited, the file mapping is shared).
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from transferkit.data.transforms import image_resize, max_image_pixels, to_pil_rgb
from transferkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transferkit.data.bundle import Split
    from transferkit.models.spec import ImagePreprocessing

__all__ = ["DecodedCache", "DecodedImages", "load_item", "default_spill_dir", "ram_backed"]

log = logging.getLogger("transferkit")

# File systems whose files live in RAM: a spill file there saves no memory.
RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
# The spill file grows by this much at a time (or by one image, when larger).
SEGMENT_MB = 64


def ram_backed(path: Path) -> bool:
    """Whether ``path`` is on a file system held in RAM (tmpfs, ramfs), from /proc/self/mounts."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    target, best, fstype = str(Path(path).resolve()), "", ""
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, fstype = point, fields[2]
    return fstype in RAM_FILESYSTEMS


def default_spill_dir() -> Path:
    """Where a cache spills when nobody named a folder: the temporary folder, unless it lives in
    RAM, then the user's cache folder (``$XDG_CACHE_HOME/transferkit``)."""
    temp = Path(tempfile.gettempdir())
    if not ram_backed(temp):
        return temp
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transferkit"


def load_item(item: Any, max_pixels: int) -> Image.Image:
    """An image path or array -> RGB PIL image (:func:`to_pil_rgb`), a file that the scan
    decoded but that fails now reported as changed during the run.

    Raises:
        DataError: the item is not an image, or the file was changed or removed.
    """
    try:
        return to_pil_rgb(item, max_pixels)
    except Exception as exc:  # PIL raises many types for broken files
        if not isinstance(item, (str, os.PathLike)) or isinstance(exc, DataError):
            raise
        # The scan decoded this file with the same function, so it changed since then.
        raise DataError(
            f"The image {item} could be decoded when the data was scanned but not now "
            f"({type(exc).__name__}: {exc}); it was changed or removed during the run. Restore "
            "it (or remove it from the data) and run again."
        ) from exc


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


class _SpillFile:
    """An unlinked file on disk that grows in mapped segments; ``take(size)`` hands out a
    writable uint8 view of ``size`` fresh bytes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd: int | None = None
        self.size = 0  # bytes reserved in the file
        self.segments: list[mmap.mmap] = []
        self.free: memoryview | None = None  # the unused tail of the last segment

    def _open(self) -> int:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".decoded-", suffix=".tmp", dir=self.folder)
        os.unlink(name)  # the descriptor and the mappings keep the data; nothing left on exit
        return fd

    def _grow(self, need: int) -> None:
        step = max(SEGMENT_MB * 2**20, -(-need // mmap.ALLOCATIONGRANULARITY) * mmap.ALLOCATIONGRANULARITY)
        try:
            if self.fd is None:
                self.fd = self._open()
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(self.fd, self.size, step)
            else:
                os.ftruncate(self.fd, self.size + step)
            segment = mmap.mmap(self.fd, step, offset=self.size)
        except OSError as err:
            raise ConfigError(
                f"The decoded-image cache could not grow its spill file in {self.folder} by "
                f"{_megabytes(step)} ({err.strerror or err}); point --cache-dir at a writable folder on "
                "a disk with room, or raise the cache's memory budget."
            ) from err
        self.size += step
        self.segments.append(segment)
        self.free = memoryview(segment)

    def take(self, size: int) -> np.ndarray:
        if self.free is None or len(self.free) < size:
            self._grow(size)
        assert self.free is not None
        view, self.free = self.free[:size], self.free[size:]
        return np.frombuffer(view, dtype=np.uint8)

    def close(self) -> None:
        # The mappings close when the last array viewing them is gone; the descriptor now.
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:  # a run in a long-lived process (the dashboard) leaks no descriptor
        self.close()


class DecodedCache:
    """The memory budget of every decoded image one run caches, all splits together.

    Images are held in RAM while the total stays within ``limit_mb``; past it they go to one
    unlinked memory-mapped file in ``spill_dir`` (default :func:`default_spill_dir`; the runner
    passes the run folder, or ``--cache-dir``). ``in_memory_bytes`` never exceeds the limit.

    Example:
        >>> cache = DecodedCache(limit_mb=1.0)
        >>> store = cache.store(split, model.spec.image)  # doctest: +SKIP
        >>> ImageDataset(split, build_image_transform(model.spec.image), cache=store)  # doctest: +SKIP
    """

    def __init__(self, limit_mb: float = 2048, spill_dir: Path | None = None) -> None:
        if isinstance(limit_mb, bool) or not isinstance(limit_mb, (int, float)) or limit_mb < 0:
            raise ConfigError(f"the decoded-image cache budget must be >= 0 MB, got {limit_mb!r}.")
        self.limit_bytes = int(limit_mb * 2**20)
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.in_memory_bytes = 0  # held in RAM so far, every split together
        self.spilled_bytes = 0  # written to the spill file so far
        self._spill: _SpillFile | None = None
        self._stores: dict[tuple[int, int, str], tuple[Split, DecodedImages]] = {}

    def store(self, split: Split, pre: ImagePreprocessing) -> DecodedImages:
        """The store of ``split``'s images at ``pre``'s resize: made once, then the same one
        (the loaders of every epoch and phase of a run share it)."""
        key = (id(split), pre.resize_size, str(pre.interpolation).lower())
        found = self._stores.get(key)
        if found is None or found[0] is not split:  # the split is kept, so its id is not reused
            found = (split, DecodedImages(split.items, image_resize(pre), budget=self))
            self._stores[key] = found
        return found[1]

    def place(self, image: np.ndarray) -> np.ndarray:
        """``image`` (uint8, handed over: not changed afterwards) kept in RAM within the budget,
        else copied into the spill file; returns the array kept."""
        size = image.nbytes
        if self.in_memory_bytes + size <= self.limit_bytes:
            self.in_memory_bytes += size
            return image
        if self._spill is None:
            folder = self.spill_dir or default_spill_dir()
            self._spill = _SpillFile(folder)
            log.info("decoded-image cache: past its %s budget, images spill to %s",
                     _megabytes(self.limit_bytes), folder)
        out = self._spill.take(size).reshape(image.shape)
        out[...] = image
        self.spilled_bytes += size
        return out

    def close(self) -> None:
        """Forget every store and close the spill file (its space is freed with the last view)."""
        self._stores.clear()
        if self._spill is not None:
            self._spill.close()


class DecodedImages:
    """One split's images decoded and resized once: ``get(i)`` is item ``i`` as uint8
    [H, W, 3], exactly ``np.asarray(resize(to_pil_rgb(item)))``.

    Args:
        items: the split's items (file paths or uint8 arrays).
        resize: the deterministic first part of the transform (``ImageTransform.resize``).
        budget: the :class:`DecodedCache` whose memory budget and spill file hold the images
            (default: one of its own with the default budget).
        max_pixels: the pixel cap files are decoded with (default: PIL's current cap).

    Example:
        >>> store = DecodedImages([np.zeros((8, 8), np.uint8)], image_resize(pre))  # doctest: +SKIP
        >>> store.get(0).shape  # doctest: +SKIP
        (256, 256, 3)
    """

    def __init__(self, items: Sequence[Any], resize: Callable[[Image.Image], Image.Image], *,
                 budget: DecodedCache | None = None, max_pixels: int | None = None) -> None:
        self.items = items
        self.resize = resize
        self.budget = budget if budget is not None else DecodedCache()
        self.max_pixels = int(max_pixels or max_image_pixels())
        # [H, W, 3] uint8 per item: a RAM copy or a view of the spill file; None until decoded
        self.images: list[np.ndarray | None] = [None] * len(items)
        self.decodes = 0  # images decoded by this process (a test counts them)

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for a spawned DataLoader worker: the mappings cannot travel, and copying the
        # images would cost what the cache saves, so the worker gets an empty store (it decodes).
        state = dict(self.__dict__)
        state["images"] = [None] * len(self.items)
        state["budget"] = DecodedCache(0, self.budget.spill_dir)
        return state

    def decode(self, i: int) -> np.ndarray:
        """Item ``i`` decoded and resized now, not stored."""
        self.decodes += 1
        return np.array(self.resize(load_item(self.items[i], self.max_pixels)), dtype=np.uint8)  # own, writable

    def get(self, i: int) -> np.ndarray:
        """Item ``i`` as uint8 [H, W, 3]: from the cache, else decoded (and kept, in the
        process that owns the store; a DataLoader worker's copy would be lost with it)."""
        image = self.images[i]
        if image is not None:
            return image
        image = self.decode(i)
        if torch.utils.data.get_worker_info() is None:
            self.images[i] = self.budget.place(image)
        return image

    def missing(self) -> list[int]:
        """Positions not decoded yet."""
        return [i for i, image in enumerate(self.images) if image is None]

    def keep(self, i: int, image: np.ndarray) -> None:
        """Store item ``i``'s decoded image (uint8 [H, W, 3], handed over), decoded elsewhere:
        by a DataLoader worker or by another rank of a distributed run."""
        self.images[i] = self.budget.place(image)

    def decode_each(self, positions: Sequence[int], num_workers: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """``(i, image)`` for each position, decoded in ``num_workers`` DataLoader workers (0:
        here), not stored."""
        if num_workers <= 0:
            for i in positions:
                yield i, self.decode(i)
            return
        loader = DataLoader(_Decoding(self, list(positions)), batch_size=None, num_workers=num_workers)
        for i, image in loader:
            # a copy: a worker's tensor lives in shared memory, one descriptor each while held
            yield int(i), image.numpy().copy()

    def fill(self, num_workers: int = 0) -> int:
        """Decode every missing image now (in ``num_workers`` DataLoader workers; 0: here) and
        keep them; returns how many were decoded. Call before a loader with workers iterates,
        so that its workers read the cache instead of decoding."""
        todo = self.missing()
        for i, image in self.decode_each(todo, num_workers):
            self.keep(i, image)
        return len(todo)


class _Decoding(Dataset):
    """``(position, uint8 image)`` for the positions a store misses (decoded in workers)."""

    def __init__(self, store: DecodedImages, positions: list[int]) -> None:
        self.store, self.positions = store, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor]:
        i = self.positions[k]
        return i, torch.from_numpy(self.store.decode(i))
