"""``load_data`` and ``load_eval_split``: any data spec -> labelled, split data; torch datasets.

A data spec is a folder of class sub-folders (images, or .txt files), a folder with explicit
``train/ val/ test/`` sub-folders or ``train.csv/val.csv/test.csv`` files, a CSV/TSV/JSONL file
(texts or image paths with labels), or ``builtin:NAME``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from transferkit.config import DataOptions
from transferkit.data.builtin import BUILTIN_DATASETS, builtin_key, load_builtin
from transferkit.data.bundle import DataBundle, DataReport, Split, format_list
from transferkit.data.decoded import DecodedImages, load_item
from transferkit.data.readers import (
    Columns,
    Part,
    RawData,
    drop_bad_images,
    read_class_folder,
    read_split_folders,
    split_dirs,
)
from transferkit.data.sequences import LabelCodes, as_codes, label_indices, label_set
from transferkit.data.splits import (
    Copies,
    find_copies,
    sample_per_class,
    split_assignment,
)
from transferkit.data.tables import find_split_files, read_split_files, read_table
from transferkit.data.transforms import ImageTransform, max_image_pixels, set_max_image_pixels
from transferkit.errors import ConfigError, DataError

__all__ = ["load_data", "load_eval_split", "as_data_options", "check_data_source", "ImageDataset", "TextDataset"]

_BUILTIN_PREFIX = "builtin:"


def check_data_source(spec: str) -> None:
    """Fail fast when ``spec`` cannot be data: a path that does not exist or an unknown
    ``builtin:NAME``. Cheap (nothing is read), so ``train`` calls it before loading a model:
    a typo in ``--data`` costs no download.

    Raises:
        DataError: naming the spec and the kinds of data accepted.

    Example:
        >>> check_data_source("builtin:digits")
    """
    if spec.startswith(_BUILTIN_PREFIX):
        builtin_key(spec[len(_BUILTIN_PREFIX) :])
        return
    if not Path(os.path.expanduser(spec)).exists():
        raise DataError(
            f"The data path {spec!r} does not exist. Pass a folder of class sub-folders of images, "
            "a CSV/TSV/JSONL file with a label column, or builtin:NAME "
            f"(one of: {', '.join('builtin:' + n for n in BUILTIN_DATASETS)})."
        )


def _read_source(opts: DataOptions, report: DataReport, max_bad_fraction: float) -> RawData:
    """Dispatch a data spec to the reader for its kind; broken images are already dropped."""
    spec, skip_bad_rows = opts.data, opts.skip_bad_rows
    columns = Columns(opts.text_column, opts.label_column, opts.path_column)
    set_max_image_pixels(opts.max_image_pixels)  # before the scan decodes anything
    if spec.startswith(_BUILTIN_PREFIX):
        return load_builtin(spec[len(_BUILTIN_PREFIX) :], report)
    path = Path(os.path.expanduser(spec))
    check_data_source(spec)
    if path.is_file():
        modality, part = read_table(path, columns, report, skip_bad_rows=skip_bad_rows)
        raw = RawData(modality=modality, pool=part)
    elif files := find_split_files(path):
        raw = read_split_files(path, files, columns, report, skip_bad_rows=skip_bad_rows)
    elif dirs := split_dirs(path):
        raw = read_split_folders(path, dirs, report)
    else:
        modality, part = read_class_folder(path, report)
        raw = RawData(modality=modality, pool=part)
    if raw.modality == "image":
        drop_bad_images(raw, report, max_bad_fraction)
    return raw


def _shorten(item: Any, limit: int = 60) -> str:
    text = " ".join(str(item).split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _check_duplicates(raw: RawData, spec: str, report: DataReport) -> None:
    """Count copies of one example (same text or file path); refuse copies with different labels.

    Raises:
        DataError: an example appears with two or more labels.
    """
    every = raw.everything()
    found = find_copies(every.items)
    codes, names = as_codes(every.labels)
    conflicts = np.unique(found.firsts[codes[found.copies] != codes[found.firsts]]).tolist()
    if conflicts:
        def labels_of(first: int) -> str:
            members = np.append(found.copies[found.firsts == first], first)
            return " and ".join(sorted({names[c] for c in codes[members].tolist()}))
        shown = "; ".join(f"{_shorten(every.items[g])} labelled {labels_of(g)}" for g in conflicts[:3])
        more = f" (and {len(conflicts) - 3} more)" if len(conflicts) > 3 else ""
        raise DataError(
            f"The data {spec} has {len(conflicts)} example(s) that appear more than once with "
            f"different labels: {shown}{more}. One example cannot belong to two classes: fix the "
            "wrong labels, or remove the copies."
        )
    report.duplicates = len(found)
    if raw.pool is None and report.duplicates:
        _note_cross_split_copies(raw, report, found)


def _note_cross_split_copies(raw: RawData, report: DataReport, found: Copies) -> None:
    # Explicit splits are the user's: kept as given, but a test example that is also a training
    # example makes the test score optimistic, so say how many. ``found`` numbers the items of
    # raw.everything(): the splits one after the other, in the order of raw.splits.
    starts = np.cumsum([0] + [len(part) for part in raw.splits.values()]).tolist()
    where = {name: (starts[k], starts[k + 1]) for k, name in enumerate(raw.splits)}
    members = np.concatenate([found.copies, found.firsts])  # every item that has a copy
    groups = np.concatenate([found.firsts, found.firsts])  # its group (first position)
    lo, hi = where["train"]
    with_train = np.unique(groups[(members >= lo) & (members < hi)])
    for name in ("val", "test"):
        if name in where:
            lo, hi = where[name]
            inside = (members >= lo) & (members < hi) & np.isin(groups, with_train)
            shared = len(np.unique(members[inside]))
            if shared:
                report.notes.append(f"{shared} {name} example(s) also appear in the train split as "
                                    "given; remove them from one of the two for an honest score")


def _to_split(part: Part, index: dict[str, int]) -> Split:
    """A part with its labels as class indices (a table's items stay where they are)."""
    items = list(part.items) if isinstance(part.items, list) else part.items
    return Split(items=items, labels=label_indices(part.labels, index))


def _split_pool(
    split: Split, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Split, Split, Split]:
    which = split_assignment(split.labels, val_fraction=val_fraction, test_fraction=test_fraction,
                             seed=seed, copies=find_copies(split.items))
    return split.select(which, 0), split.select(which, 1), split.select(which, 2)


def _make_splits(
    raw: RawData,
    index: dict[str, int],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    report: DataReport,
) -> tuple[Split, Split, Split]:
    """Train/val/test from explicit parts, carving missing val/test from train, or from the pool."""
    if raw.pool is not None:
        return _split_pool(_to_split(raw.pool, index), val_fraction, test_fraction, seed)
    parts = raw.splits
    train = _to_split(parts["train"], index)
    if "val" in parts and "test" in parts:
        return train, _to_split(parts["val"], index), _to_split(parts["test"], index)
    if "val" not in parts and "test" not in parts:
        report.notes.append("only a train split is given: val and test are carved from it")
        return _split_pool(train, val_fraction, test_fraction, seed)
    if "val" not in parts:
        report.notes.append(f"no val split given: carved {val_fraction:.0%} of train (stratified)")
        train, val, _ = _split_pool(train, val_fraction, 0.0, seed)
        return train, val, _to_split(parts["test"], index)
    report.notes.append(f"no test split given: carved {test_fraction:.0%} of train (stratified)")
    train, _, test = _split_pool(train, 0.0, test_fraction, seed)
    return train, _to_split(parts["val"], index), test


def as_data_options(source: str | os.PathLike[str] | DataOptions, **options: Any) -> DataOptions:
    """``source`` as :class:`DataOptions`: a data spec with ``options`` (seed, per_class, ...), or
    a ``DataOptions`` with ``options`` replaced; validated either way.

    Example:
        >>> as_data_options("builtin:digits", per_class=5).per_class
        5
    """
    if isinstance(source, DataOptions):
        return dataclasses.replace(source.data_options, **options) if options else source.data_options
    return DataOptions(data=os.fspath(source), **options)


def label_variants(classes: Sequence[str]) -> list[list[str]]:
    """Groups of class names that differ only in case (``Spam``, ``spam``) or in how a number is
    written (``1``, ``1.0``: a spreadsheet saved some cells as decimals), in order: usually one
    class spelt two ways in a hand-labelled table, sometimes meant (letters ``A`` and ``a``).

    Example:
        >>> label_variants(["0", "0.0", "1", "Ham", "SPAM", "Spam", "ham", "spam", "tea"])
        [['0', '0.0'], ['Ham', 'ham'], ['SPAM', 'Spam', 'spam']]
    """
    groups: dict[str, list[str]] = {}
    for name in classes:
        try:
            number = float(name)
            key = repr(number) if math.isfinite(number) else name.casefold()
        except ValueError:
            key = name.casefold()
        groups.setdefault(key, []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def val_per_class(per_class: int, opts: DataOptions) -> int:
    """Validation examples kept per class when training keeps ``per_class``: the split's own
    proportion (``val_fraction`` against the training share), at least one.

    A few-shot run must look like a small dataset: selecting heads and epochs on a validation
    split many times the size of the training split (15% of MNIST is 750 images against 200
    for 20 per class) flatters every choice made on it and is not what a user with that little
    data has.

    Example:
        >>> val_per_class(20, DataOptions(data="builtin:digits"))  # 20 x 0.15 / 0.7
        4
    """
    if opts.val_fraction <= 0:
        return 0
    train_share = 1.0 - opts.val_fraction - opts.test_fraction
    return max(1, int(per_class * opts.val_fraction / train_share + 0.5))


def load_data(source: str | os.PathLike[str] | DataOptions, *, max_bad_fraction: float | None = None,
              **options: Any) -> DataBundle:
    """Load labelled data and split it into train/val/test (stratified, seeded).

    Args:
        source: a :class:`~transferkit.config.DataOptions`, or a data spec: a folder (class
            sub-folders, or explicit ``train/ val/ test/`` sub-folders or
            ``train.csv``/``val.csv``/``test.csv`` files), a CSV/TSV/JSONL file, or
            ``builtin:NAME`` (see ``BUILTIN_DATASETS``).
        max_bad_fraction: broken images up to this share are skipped and logged; above it,
            loading fails (default: ``DataOptions.max_bad_fraction``, 0.05).
        **options: DataOptions fields: ``seed`` (the same seed always gives the same splits),
            ``val_fraction`` and ``test_fraction`` (shares for validation and test when the data
            has no such split), ``per_class`` (keep at most this many training examples per
            class; val and test are untouched; subsets are nested: 5 per class is a subset of
            10), ``text_column``, ``label_column``, ``path_column`` (table columns; a text
            column means text data; image paths are relative to the table).

    Returns:
        A ``DataBundle``; ``classes`` are the sorted label names, every class is in ``train``.

    Raises:
        DataError: the data cannot be used (the message says why and how to fix it).
        ConfigError: an option is out of range.

    Example:
        >>> bundle = load_data("builtin:digits", seed=0, per_class=20)
        >>> bundle.classes[:3], len(bundle.train)
        (['0', '1', '2'], 200)
    """
    opts = as_data_options(source, **options)
    spec, seed, per_class = opts.data, opts.seed, opts.per_class
    val_fraction, test_fraction = opts.val_fraction, opts.test_fraction
    if max_bad_fraction is None:
        max_bad_fraction = opts.max_bad_fraction
    if isinstance(max_bad_fraction, bool) or not isinstance(max_bad_fraction, (int, float)) or not (
            0 <= max_bad_fraction <= 1):
        raise ConfigError(f"max_bad_fraction must be between 0 and 1, got {max_bad_fraction!r}.")
    report = DataReport()
    raw = _read_source(opts, report, max_bad_fraction)
    _check_duplicates(raw, spec, report)

    classes = sorted(set().union(*(label_set(part.labels) for part in raw.parts())))
    if len(classes) < 2:
        found = f"only the class {classes[0]!r}" if classes else "no labelled examples"
        raise DataError(
            f"The data {spec} has {found}; at least two classes are needed to train a classifier. "
            "Add examples of another class (another sub-folder, or other values in the label "
            "column)."
        )
    if variants := label_variants(classes):
        report.warnings.append(
            "labels that differ only in case or in how a number is written are separate classes: "
            f"{'; '.join(', '.join(g) for g in variants)}. If they name the same class, write them alike "
            "in the data (e.g. all in lower case, whole numbers without .0) and train again.")
    index = {name: i for i, name in enumerate(classes)}
    train, val, test = _make_splits(
        raw, index, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, report=report
    )
    counts = train.class_counts(len(classes))
    absent = [classes[i] for i, n in enumerate(counts) if n == 0]
    if absent:
        raise DataError(
            f"The class(es) {format_list(absent)} appear in the val/test data of {spec} but not "
            "in its train split, so the model could never learn them. Add training examples of "
            "those classes or remove them from val/test."
        )
    few = [classes[i] for i, n in enumerate(counts) if n == 1 and raw.pool is not None]
    if few:
        report.notes.append(
            f"class(es) with a single example, used for training only: {format_list(few)}"
        )
    if per_class is not None:
        before = len(train), len(val)
        train = train.subset(sample_per_class(train.labels, per_class, seed=seed))
        val = val.subset(sample_per_class(val.labels, val_per_class(per_class, opts), seed=seed))
        report.notes.append(
            f"per_class={per_class}: kept {len(train)} of {before[0]} training and {len(val)} of "
            f"{before[1]} validation examples"
        )
    report.notes.append(
        f"{raw.modality} data, {len(classes)} classes: "
        f"train {len(train)}, val {len(val)}, test {len(test)}"
    )
    return DataBundle(
        source=spec,
        modality=raw.modality,
        classes=classes,
        train=train,
        val=val,
        test=test,
        report=report,
    )


def _map_onto(part: Part, classes: list[str], spec: str) -> Split:
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(label_set(part.labels) - set(index))
    if unknown:
        hint = ""  # an unknown label spelt like a class (Business for business, 1.0 for 1): say which
        for group in label_variants([*classes, *unknown]):
            known, strays = [g for g in group if g in index], [g for g in group if g not in index]
            if known and strays:
                verb = "is" if len(strays) == 1 else "are"
                hint += f" {', '.join(strays)} {verb} spelt like the class {known[0]}; write it alike."
        raise DataError(
            f"The data {spec} has label(s) the run was not trained on: {format_list(unknown, 10)}.{hint} "
            f"The run's classes are: {format_list(classes, 50)}. Evaluate on data whose labels are "
            "among those classes (rename or remove the other rows or folders)."
        )
    return _to_split(part, index)


def load_eval_split(
    source: str | os.PathLike[str] | DataOptions,
    classes: list[str],
    *,
    same_as_training: bool = False,
    **options: Any,
) -> tuple[Split, DataReport]:
    """The data to evaluate a trained run on, with labels mapped onto the run's classes.

    Args:
        source: a data spec or :class:`~transferkit.config.DataOptions`, as for ``load_data``.
        classes: the run's class names, in the run's label order.
        same_as_training: ``source`` is the training data: return the test split ``load_data``
            made from it with the same seed and fractions, so the run is never scored on its
            own training examples.
        **options: DataOptions fields (the seed and fractions matter only with
            ``same_as_training``; the column names always).

    Returns:
        ``(split, report)``: without ``same_as_training``, the data's explicit test split
        (``test/`` or ``test.csv``) if it has one, else all of it.

    Raises:
        DataError: a label is not among ``classes``, or there is nothing to evaluate.

    Example:
        >>> split, _ = load_eval_split("builtin:digits", [str(d) for d in range(10)],
        ...                            same_as_training=True)
        >>> len(split)
        270
    """
    opts = as_data_options(source, **options)
    spec = opts.data
    if not classes:
        raise ConfigError("classes must list the run's class names (it is empty).")
    if same_as_training:
        bundle = load_data(opts, per_class=None)  # the test split does not depend on per_class
        # Check every class of the data, not only the test split's: a changed class set means
        # the split would differ from the one the run was trained with.
        _map_onto(Part(items=[], labels=bundle.classes), classes, spec)
        test = bundle.test
        names = (LabelCodes(test.labels, bundle.classes) if isinstance(test.labels, np.ndarray)
                 else [bundle.classes[i] for i in test.labels])
        part = Part(items=test.items, labels=names)
        report = bundle.report
        report.notes.append(
            f"evaluating on the test split of the training data ({len(part)} examples)"
        )
    else:
        report = DataReport()
        raw = _read_source(opts, report, opts.max_bad_fraction)
        if "test" in raw.splits:
            part = raw.splits["test"]
            report.notes.append(
                f"evaluating on the explicit test split of {spec} ({len(part)} examples)"
            )
        else:
            part = raw.everything()
            report.notes.append(f"evaluating on all of {spec} ({len(part)} examples)")
    if len(part) == 0:
        raise DataError(
            f"There is nothing to evaluate in {spec}: the split is empty. Use data with more "
            "examples (or a larger test_fraction when evaluating on the training data)."
        )
    return _map_onto(part, classes, spec), report


class ImageDataset(Dataset):
    """Image split -> ``(tensor [3, H, W], label)`` pairs, decoding files on access, or once
    with a decoded-image cache.

    Args:
        split: items are file paths or uint8 arrays (grey HxW or RGB HxWx3).
        transform: PIL RGB image -> tensor, e.g. ``build_image_transform(spec.image)``.
        cache: the split's :class:`~transferkit.data.decoded.DecodedImages`, made with the
            same preprocessing (``DecodedCache.store(split, spec.image)``): each image is then
            decoded and resized once, and only ``transform.finish`` (crop, augmentation,
            normalisation) runs per access. Requires an :class:`ImageTransform`.

    Example:
        >>> pre = ImagePreprocessing(256, 224, (0.5,) * 3, (0.5,) * 3)  # usually model.spec.image
        >>> ds = ImageDataset(Split([np.zeros((8, 8), np.uint8)], [0]), build_image_transform(pre))
        >>> ds[0][0].shape, ds[0][1]
        (torch.Size([3, 224, 224]), 0)
    """

    def __init__(self, split: Split, transform: Callable[..., torch.Tensor],
                 cache: DecodedImages | None = None) -> None:
        if cache is not None and (len(cache) != len(split) or not isinstance(transform, ImageTransform)):
            raise ConfigError(
                f"ImageDataset: a decoded-image cache of {len(cache)} images for a split of "
                f"{len(split)} with a {type(transform).__name__} transform; give the split's own "
                "store (DecodedCache.store(split, pre)) and build_image_transform(pre)."
            )
        self.split = split
        self.transform = transform
        self.cache = cache
        # The cap the data was scanned with, carried into DataLoader workers (a spawned worker
        # would otherwise start from the default).
        self.max_pixels = max_image_pixels()

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        label = int(self.split.labels[i])
        if self.cache is not None:
            # a PIL view of the cached uint8 [H, W, 3]: the same input the resize gave before
            image = Image.fromarray(self.cache.get(i), "RGB")
            return self.transform.finish(image), label  # type: ignore[attr-defined]
        return self.transform(load_item(self.split.items[i], self.max_pixels)), label


class TextDataset(Dataset):
    """Text split -> ``(text, label)`` pairs; tokenize per batch with ``TextCollator``.

    Example:
        >>> TextDataset(Split(["good film"], [1]))[0]
        ('good film', 1)
    """

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return str(self.split.items[i]), int(self.split.labels[i])
