"""The containers that ``load_data`` returns: ``Split``, ``DataReport`` and ``DataBundle``.

They are plain dataclasses with no torch dependency, so the CLI and the run folder can use them
without importing the training stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transferkit.data.sequences import bincount, select, sequence_equal, take
from transferkit.io.records import SkippedInputs

__all__ = ["Split", "DataReport", "DataBundle", "format_list"]

# How many file names the log lists before it says "... and N more".
_MAX_LOGGED_PATHS = 50


def format_list(values: Sequence[Any], limit: int = 5) -> str:
    """Join the first ``limit`` values with commas and say how many were left out.

    Args:
        values: anything with a ``str``.
        limit: how many to show.

    Returns:
        ``"a, b, c"`` or ``"a, b, c, ... (7 more)"``; ``"(none)"`` when empty.

    Example:
        >>> format_list(["a", "b", "c"], limit=2)
        'a, b, ... (1 more)'
    """
    values = list(values)
    if not values:
        return "(none)"
    shown = ", ".join(str(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", ... ({len(values) - limit} more)"
    return shown


@dataclass(eq=False)
class Split:
    """One split of a dataset: parallel sequences of items and integer labels.

    Attributes:
        items: image file paths (``str``) or ``numpy`` uint8 arrays (HxW grey or HxWx3 RGB)
            for image data; strings for text data. A list, or for a table of image paths a
            ``TableCells`` (a read-only sequence of paths read from the table when used).
        labels: class indices into ``DataBundle.classes``: a list, or with ``TableCells`` items
            an integer numpy array (one or two bytes per item).

    Example:
        >>> split = Split(items=["a cat", "a dog"], labels=[0, 1])
        >>> len(split), split.subset([1]).items
        (2, ['a dog'])
    """

    items: Sequence[Any]
    labels: Sequence[int]

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Sequence[int]) -> Split:
        """A new split holding the given positions, in the given order."""
        return Split(items=take(self.items, indices), labels=take(self.labels, indices))

    def select(self, which: np.ndarray, value: int) -> Split:
        """The positions whose ``which`` entry is ``value``, in order (a table's items share
        ``which`` instead of copying positions: see ``splits.split_assignment``)."""
        return Split(items=select(self.items, which, value), labels=select(self.labels, which, value))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        return _same(self.items, other.items) and _same(self.labels, other.labels)

    def class_counts(self, num_classes: int) -> list[int]:
        """How many items each class index has (a list of length ``num_classes``)."""
        if isinstance(self.labels, np.ndarray):
            return bincount(self.labels, num_classes).tolist()
        counts = [0] * num_classes
        for label in self.labels:
            counts[label] += 1
        return counts


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return a == b
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return sequence_equal(a, b)


@dataclass
class DataReport:
    """What loading the data saw and skipped, for the run's log.

    Attributes:
        n_scanned: files looked at (images decoded, text files and tables read).
        bad_files: unreadable or corrupt images that were skipped.
        replaced_text: text files or rows (``file (row N)``) that were not valid UTF-8 and were
            decoded with replacement characters.
        too_large: images over the pixel cap that were skipped (``path (too large (W x H ...))``).
        bad_rows: table rows skipped by ``skip_bad_rows`` (``file (line N)``: more fields than
            the header).
        duplicates: examples that repeat an earlier one (same file path or same text); each
            group of copies is kept in one split.
        notes: human-readable lines (dropped rows, carved splits, split sizes, ...).
        warnings: what the data may have wrong that loading cannot decide (labels that differ
            only in case or number format); a run repeats them among its own warnings.

    Example:
        >>> report = DataReport(n_scanned=3, bad_files=["x.png"])
        >>> report.lines()[1]
        'data: skipped 1 unreadable or corrupt image(s):'
    """

    n_scanned: int = 0
    bad_files: list[str] = field(default_factory=list)
    replaced_text: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def skipped_inputs(self) -> SkippedInputs:
        """The counts and first names of what was skipped, repaired or grouped, for the run's
        records."""
        return SkippedInputs(
            unreadable_images=len(self.bad_files),
            non_utf8_texts=len(self.replaced_text),
            unreadable_image_names=self.bad_files[:_MAX_LOGGED_PATHS],
            non_utf8_text_names=self.replaced_text[:_MAX_LOGGED_PATHS],
            too_large_images=len(self.too_large),
            too_large_image_names=self.too_large[:_MAX_LOGGED_PATHS],
            bad_rows=len(self.bad_rows),
            bad_row_names=self.bad_rows[:_MAX_LOGGED_PATHS],
            duplicates=self.duplicates,
        )

    def lines(self) -> list[str]:
        """Lines to write into the run's log: counts, the skipped files, then the notes.

        Returns:
            A list of strings without trailing newlines.
        """
        out = [f"data: scanned {self.n_scanned} file(s)"]
        if self.bad_files:
            out.append(f"data: skipped {len(self.bad_files)} unreadable or corrupt image(s):")
            out.extend(_indented(self.bad_files))
        if self.replaced_text:
            out.append(
                f"data: {len(self.replaced_text)} text(s) were not valid UTF-8 and were decoded "
                "with replacement characters (a file saved in another encoding? Excel on Windows "
                "writes Windows-1252: save as 'CSV UTF-8', or convert it with "
                "iconv -f cp1252 -t utf-8 FILE > FILE-utf8.csv):"
            )
            out.extend(_indented(self.replaced_text))
        if self.too_large:
            out.append(f"data: skipped {len(self.too_large)} image(s) over the pixel cap "
                       "(raise --max-image-pixels to use them):")
            out.extend(_indented(self.too_large))
        if self.bad_rows:
            out.append(f"data: skipped {len(self.bad_rows)} row(s) with more fields than the header "
                       "(--skip-bad-rows; quote fields that contain the delimiter to keep them):")
            out.extend(_indented(self.bad_rows))
        if self.duplicates:
            out.append(f"data: {self.duplicates} duplicate example(s) (the same file path or text as "
                       "an earlier one); each group of copies is kept in one split")
        out.extend(f"data: warning: {warning}" for warning in self.warnings)
        out.extend(f"data: {note}" for note in self.notes)
        return out


def _indented(paths: list[str]) -> list[str]:
    lines = [f"  {p}" for p in paths[:_MAX_LOGGED_PATHS]]
    if len(paths) > _MAX_LOGGED_PATHS:
        lines.append(f"  ... and {len(paths) - _MAX_LOGGED_PATHS} more")
    return lines


@dataclass
class DataBundle:
    """A labelled dataset split three ways, ready for training.

    Attributes:
        source: the data spec as given (a path or ``builtin:NAME``).
        modality: ``"image"`` or ``"text"``.
        classes: sorted class names; label ``i`` means ``classes[i]``.
        train / val / test: the splits (``val`` or ``test`` may be empty for tiny data).
        report: what loading saw and skipped.

    Example:
        >>> bundle = DataBundle("x.csv", "text", ["neg", "pos"], Split(["ok"], [1]),
        ...                     Split([], []), Split([], []), DataReport())
        >>> bundle.num_classes
        2
    """

    source: str
    modality: str
    classes: list[str]
    train: Split
    val: Split
    test: Split
    report: DataReport

    @property
    def num_classes(self) -> int:
        """``len(classes)``: the number of outputs the head needs."""
        return len(self.classes)
