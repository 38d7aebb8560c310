"""Reading data from disk: folders of class sub-folders, explicit split folders and files.

Everything here returns a ``RawData``: items with *string* labels, either as one pool (to be
split later) or as explicit ``train``/``val``/``test`` parts. Turning labels into indices and
splitting happen in ``datasets.py``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.bundle import DataReport, format_list
from transferkit.data.sequences import Chain, LabelCodes, label_set, select
from transferkit.data.splits import Copies, find_copies
from transferkit.data.transforms import ImageTooLargeError, load_image_file
from transferkit.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "Columns",
    "image_inputs",
    "unreadable_images",
    "Part",
    "RawData",
    "decode_text",
    "read_bytes",
    "read_text_files",
    "drop_bad_images",
    "read_class_folder",
    "SPLIT_NAMES",
    "read_split_folders",
    "split_dirs",
]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
TEXT_EXTENSIONS = frozenset({".txt"})
# Folder names that mark explicit splits, mapped to the split they hold.
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_IGNORED_DIRS = {"__MACOSX", "__pycache__"}
# PIL releases the GIL while decoding, so a few threads overlap the decoding of many files.
_DECODE_THREADS = 4


@dataclass
class Columns:
    """Column names in CSV/TSV/JSONL data (the CLI's ``--text/--label/--path-column``)."""

    text: str = "text"
    label: str = "label"
    path: str = "path"


@dataclass
class Part:
    """Items with string labels (one explicit split, or all of the data).

    ``items`` is a list, or for a table of image paths a ``TableCells``; ``labels`` a list of
    names, or a ``LabelCodes`` beside ``TableCells`` (see ``sequences.py``).
    """

    items: Sequence[Any] = field(default_factory=list)
    labels: Sequence[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class RawData:
    """What a source holds before labels become indices and before splitting.

    Exactly one of ``pool`` (data without explicit splits) and ``splits`` (explicit ``train``
    and optionally ``val``/``test``) is set.
    """

    modality: str
    pool: Part | None = None
    splits: dict[str, Part] = field(default_factory=dict)

    def parts(self) -> list[Part]:
        """Every part, pool or explicit splits."""
        return [self.pool] if self.pool is not None else list(self.splits.values())

    def everything(self) -> Part:
        """All items of all parts in one ``Part``, in the order of ``parts()``; a table's items
        are joined with ``Chain``, not copied."""
        parts = self.parts()
        if len(parts) == 1:
            return Part(items=parts[0].items, labels=parts[0].labels)
        if all(isinstance(p.items, list) and isinstance(p.labels, list) for p in parts):
            return Part(items=[i for p in parts for i in p.items], labels=[y for p in parts for y in p.labels])
        return Part(items=Chain([p.items for p in parts]), labels=LabelCodes.concat([p.labels for p in parts]))


def decode_text(data: bytes) -> tuple[str, bool]:
    """Decode UTF-8 (a BOM is dropped), replacing invalid bytes instead of failing.

    Args:
        data: raw file content.

    Returns:
        ``(text, replaced)``: ``replaced`` is True when some bytes were not valid UTF-8.

    Example:
        >>> decode_text(b"caf\\xe9")
        ('caf\\ufffd', True)
    """
    try:
        return data.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return data.decode("utf-8-sig", errors="replace"), True


def read_bytes(path: str | os.PathLike) -> bytes:
    """The content of a file; an OS error (permissions, a vanished file) becomes a DataError."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DataError(
            f"Cannot read {path} ({exc.strerror or exc}). Check that the file exists and is "
            "readable."
        ) from exc


def read_text_files(paths: list[str], labels: list[str], report: DataReport) -> Part:
    """Read one document per file; non-UTF-8 files are counted, empty files dropped and noted.

    Args:
        paths: text files.
        labels: the label of each file.
        report: receives the counts.

    Returns:
        The texts (stripped) with their labels.
    """
    part = Part()
    empty: list[str] = []
    for path, label in zip(paths, labels, strict=True):
        text, replaced = decode_text(read_bytes(path))
        report.n_scanned += 1
        if replaced:
            report.replaced_text.append(path)
        text = text.strip()
        if not text:
            empty.append(path)
            continue
        part.items.append(text)
        part.labels.append(label)
    if empty:
        report.notes.append(f"dropped {len(empty)} empty text file(s): {format_list(empty)}")
    return part


def _decode_error(path: str) -> tuple[str, str] | None:
    """None if the image decodes as the datasets will decode it, else ``(kind, reason)`` with
    kind ``"too large"`` or ``"unreadable"``."""
    try:
        load_image_file(path)  # the datasets' own decode: a file accepted here cannot fail later
    except ImageTooLargeError as exc:
        return "too large", exc.reason
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return "unreadable", f"{type(exc).__name__}: {exc}"
    return None


def drop_bad_images(raw: RawData, report: DataReport, max_bad_fraction: float) -> None:
    """Decode every image path in ``raw`` (each distinct path once, as a stream); drop the
    broken or too large ones and record them in ``report``.

    Args:
        raw: image data whose items are paths; changed in place.
        report: receives ``n_scanned``, ``bad_files`` and ``too_large``.
        max_bad_fraction: above this share of skipped images, raise instead of skipping.

    Raises:
        DataError: more than ``max_bad_fraction`` of the images are unreadable or too large,
            or every image of a class is.
    """
    every = raw.everything()
    bad, scanned = _scan(every.items, find_copies(every.items))
    if not scanned:
        return
    report.n_scanned += scanned
    if not bad:
        return
    report.bad_files.extend(p for p in sorted(bad) if bad[p][0] == "unreadable")
    report.too_large.extend(f"{p} ({bad[p][1]})" for p in sorted(bad) if bad[p][0] == "too large")
    fraction = len(bad) / scanned
    if fraction > max_bad_fraction:
        examples = "; ".join(f"{p} ({bad[p][1]})" for p in sorted(bad)[:3])
        raise DataError(
            f"{len(bad)} of {scanned} images ({fraction:.1%}) cannot be used, more than the "
            f"{max_bad_fraction:.0%} that may be skipped (--max-bad-fraction). "
            f"Examples: {examples}. Remove or "
            "re-export the broken files (or fix the paths if they are missing), raise "
            "--max-image-pixels for images that are too large, or raise --max-bad-fraction if "
            "skipping them is fine."
        )
    report.notes.append(f"skipped {len(bad)} unusable image(s) of {scanned} ({fraction:.1%})")
    classes_before = set().union(*(label_set(part.labels) for part in raw.parts()))
    for part in raw.parts():
        keep = np.fromiter((not (isinstance(item, str) and item in bad) for item in part.items),
                           dtype=bool, count=len(part))
        if not keep.all():
            part.items, part.labels = select(part.items, keep), select(part.labels, keep)
    lost = classes_before - set().union(*(label_set(part.labels) for part in raw.parts()))
    if lost:
        raise DataError(
            f"Every image of class(es) {format_list(sorted(lost))} is unreadable or too large, so "
            f"nothing is left to learn them from. Skipped files: "
            f"{format_list([f'{p} ({bad[p][1]})' for p in sorted(bad)], 3)}. Replace them with "
            "readable images (or raise --max-image-pixels) or remove the class."
        )


def _scan(items: Sequence[Any], copies: Copies) -> tuple[dict[str, tuple[str, str]], int]:
    """Decode each distinct path among ``items`` once, a batch at a time (nothing holds all
    the paths): ``({bad path: (kind, reason)}, paths decoded)``."""
    bad: dict[str, tuple[str, str]] = {}
    scanned = 0
    with ThreadPoolExecutor(max_workers=_DECODE_THREADS) as pool:
        for batch in _batches(_distinct_paths(items, copies), 64 * _DECODE_THREADS):
            for path, error in zip(batch, pool.map(_decode_error, batch), strict=True):
                if error is not None:
                    bad[path] = error
            scanned += len(batch)
    return bad, scanned


def _distinct_paths(items: Sequence[Any], copies: Copies) -> Iterator[str]:
    repeats = iter(copies.copies.tolist())  # ascending
    repeat = next(repeats, -1)
    for i, item in enumerate(items):
        if i == repeat:
            repeat = next(repeats, -1)
        elif isinstance(item, str):
            yield item


def _batches(values: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(itertools.islice(values, size)):
        yield batch


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in _IGNORED_DIRS


def _files_under(folder: str) -> list[str]:
    """All visible files below ``folder`` (recursively), sorted so the order never varies."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if _visible(d)]
        found.extend(os.path.join(root, f) for f in files if _visible(f))
    return sorted(found)


def image_inputs(inputs: Sequence[Any]) -> list[Any]:
    """Images to predict: a folder becomes every image file below it (sorted); files and
    in-memory images stay as given.

    Example:
        >>> image_inputs(["cat.jpg"])
        ['cat.jpg']

    Raises:
        DataError: a folder holds no image file.
    """
    paths: list[Any] = []
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)) or not os.path.isdir(item):
            paths.append(item)
            continue
        found = [f for f in _files_under(item) if _ext(f) in IMAGE_EXTENSIONS]
        if not found:
            raise DataError(
                f"The folder {item} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}), "
                "in it or in its sub-folders; give image files, or a folder that holds them."
            )
        paths += found
    return paths


def unreadable_images(items: Sequence[Any]) -> dict[str, str]:
    """``{path: reason}`` for the image files among ``items`` that do not decode as the datasets
    decode them (broken, missing, over the pixel cap), in input order; in-memory images are not
    checked. Decodes on the pre-scan's threads.

    Example:
        >>> unreadable_images(["missing.png"])["missing.png"][:17]
        'FileNotFoundError'
    """
    paths = [os.fspath(item) for item in items if isinstance(item, (str, os.PathLike))]
    bad, _ = _scan(paths, find_copies(paths))
    return {path: reason for path, (_, reason) in bad.items()}


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def read_class_folder(folder: Path, report: DataReport) -> tuple[str, Part]:
    """Read a folder of class sub-folders: images (image modality) or ``.txt`` files (text).

    Images win when both kinds exist (a README.txt next to photos is not a dataset). Images
    are not decoded here; see ``drop_bad_images``.

    Args:
        folder: the folder whose sub-folders are the classes.
        report: receives counts and notes.

    Returns:
        ``(modality, part)``.

    Raises:
        DataError: no class sub-folders, no usable files, or a class folder without any.
    """
    class_dirs = sorted(e.name for e in os.scandir(folder) if e.is_dir() and _visible(e.name))
    if not class_dirs:
        loose = [f for f in os.listdir(folder) if _ext(f) in IMAGE_EXTENSIONS]
        hint = (
            f" It holds {len(loose)} image(s) directly: move each class's images into a "
            "sub-folder named after the class."
            if loose
            else ""
        )
        raise DataError(
            f"The folder {folder} has no class sub-folders.{hint} Lay the data out as "
            f"{folder}/<class>/<image> (e.g. cat/1.jpg, dog/2.jpg), or pass a CSV/TSV/JSONL file "
            "with a label column."
        )
    files = {c: _files_under(os.path.join(folder, c)) for c in class_dirs}
    images = {c: [f for f in fs if _ext(f) in IMAGE_EXTENSIONS] for c, fs in files.items()}
    texts = {c: [f for f in fs if _ext(f) in TEXT_EXTENSIONS] for c, fs in files.items()}
    if any(images.values()):
        modality, chosen, kind = (
            "image",
            images,
            "image files (" + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")",
        )
    elif any(texts.values()):
        modality, chosen, kind = "text", texts, ".txt files"
    else:
        raise DataError(
            f"The folder {folder} has class sub-folders ({format_list(class_dirs)}) but no image "
            f"files ({', '.join(sorted(IMAGE_EXTENSIONS))}) or .txt files in them. Put each "
            "class's images (or text files) in its sub-folder."
        )
    empty = [c for c in class_dirs if not chosen[c]]
    if empty:
        raise DataError(
            f"The class folder(s) {format_list([os.path.join(folder, c) for c in empty])} hold no "
            f"{kind}, while other classes do. Add examples to them or remove those folders."
        )
    loose = sorted(e.name for e in os.scandir(folder) if e.is_file() and _visible(e.name)
                   and _ext(e.name) in (IMAGE_EXTENSIONS if modality == "image" else TEXT_EXTENSIONS))
    if loose:  # beside the class folders: no class says what they are
        report.notes.append(f"left out {len(loose)} file(s) at the top of {folder}, outside every class folder: "
                            f"{format_list(loose, 5)}; move them into their class's folder to use them")
    paths = [p for c in class_dirs for p in chosen[c]]
    labels = [c for c in class_dirs for _ in chosen[c]]
    if modality == "text":
        return modality, read_text_files(paths, labels, report)
    return modality, Part(items=paths, labels=labels)


def split_dirs(folder: Path) -> dict[str, Path]:
    """``{"train": ..., "val": ..., "test": ...}`` when the sub-folders are explicit splits.

    Only when ``train`` exists and every sub-folder is a split name: a class that happens to
    be called ``test`` among other classes must stay a class.
    """
    subdirs = [e.name for e in os.scandir(folder) if e.is_dir() and _visible(e.name)]
    if not subdirs or any(d not in SPLIT_NAMES for d in subdirs):
        return {}
    if "train" not in subdirs:
        # val/ or test/ holding class folders but no train/: a split layout missing its train.
        nested = [d for d in subdirs if any(e.is_dir() for e in os.scandir(folder / d))]
        if nested:
            raise DataError(
                f"The folder {folder} has split folder(s) {format_list(sorted(nested))} with class "
                f"sub-folders but no train/ folder. Add {folder}/train/<class>/... or pass the "
                "split folder you meant."
            )
        return {}
    found: dict[str, Path] = {}
    # "val" wins over "valid"/"validation" when several exist (canonical names sort first).
    for d in sorted(subdirs, key=lambda d: (d != SPLIT_NAMES[d], d)):
        found.setdefault(SPLIT_NAMES[d], folder / d)
    return found


def read_split_folders(folder: Path, dirs: dict[str, Path], report: DataReport) -> RawData:
    modalities: dict[str, str] = {}
    splits: dict[str, Part] = {}
    for name, path in dirs.items():
        has_classes = any(e.is_dir() and _visible(e.name) for e in os.scandir(path))
        if name != "train" and not has_classes:
            report.notes.append(f"{path} has no class sub-folders; {name} is carved from train")
            continue
        modalities[name], splits[name] = read_class_folder(path, report)
    if len(set(modalities.values())) > 1:
        raise DataError(
            f"The splits in {folder} mix images and text ({modalities}). Use one kind of data "
            "in train/, val/ and test/."
        )
    return RawData(modality=modalities["train"], splits=splits)
