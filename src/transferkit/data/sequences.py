"""Read-only sequences that stand for many items without a Python object per item.

A table of millions of image paths must not become millions of ``str`` objects (a 25-byte row
costs ~90 bytes as a ``str`` plus 8 for its list slot). ``LabelCodes`` holds string labels as
small integer codes; ``Chain`` joins sequences without copying them; ``TableCells`` (in
``table_cells.py``) holds image paths as places in their table. The helpers below treat these
and plain lists alike, so code that takes items or labels works on both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["LabelCodes", "Chain", "take", "select", "label_set", "label_indices", "as_codes",
           "bincount", "index_dtype", "as_index", "sequence_equal", "CHUNK"]

# Rows per step when a long array is processed in pieces: bounds the temporaries (an int64 copy
# of 2**16 rows is 0.5 MB) without Python overhead per row.
CHUNK = 1 << 16


def index_dtype(n: int, signed: bool = True) -> np.dtype:
    """The smallest integer type that holds ``0..n-1`` (signed: no wrap-around surprises)."""
    for dtype in ((np.int8, np.int16, np.int32) if signed else (np.uint8, np.uint16, np.uint32)):
        if n <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def bincount(values: Any, minlength: int = 0) -> np.ndarray:
    """``np.bincount`` of non-negative integers, in pieces: numpy converts its whole input to
    int64 first, 8 bytes per row for a label array of one byte per row.

    Example:
        >>> bincount(np.array([0, 2, 2], np.int8)).tolist()
        [1, 0, 2]
    """
    values = np.asarray(values)
    counts = np.zeros(minlength, dtype=np.int64)
    for start in range(0, len(values), CHUNK):
        part = np.bincount(values[start : start + CHUNK], minlength=len(counts))
        counts = np.pad(counts, (0, len(part) - len(counts))) + part
    return counts


class LabelCodes(Sequence[str]):
    """String labels held as ``names[codes[i]]``: one small integer per item.

    Indexing with an int gives the name; with a slice, an integer array or a boolean mask, another
    ``LabelCodes`` over the same names.

    Example:
        >>> labels = LabelCodes(np.array([1, 0, 1], np.uint8), ["cat", "dog"])
        >>> list(labels), labels[np.array([0, 2])] == ["dog", "dog"]
        (['dog', 'cat', 'dog'], True)
    """

    def __init__(self, codes: np.ndarray, names: Sequence[str]) -> None:
        self.codes = codes
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return self.names[int(self.codes[index])]
        return LabelCodes(self.codes[index], self.names)  # a slice is a view; arrays copy

    def __iter__(self) -> Iterator[str]:
        names = self.names
        for start in range(0, len(self.codes), CHUNK):
            yield from map(names.__getitem__, self.codes[start : start + CHUNK].tolist())

    def __eq__(self, other: object) -> bool:
        return sequence_equal(self, other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking and compared by value

    def __repr__(self) -> str:
        return f"LabelCodes({len(self)} labels, names={self.names[:5]})"

    @staticmethod
    def concat(parts: Sequence[Sequence[str]]) -> LabelCodes:
        """One ``LabelCodes`` of several label sequences, re-coded over the union of their names."""
        names: dict[str, int] = {}
        pieces = []
        for part in parts:
            codes, part_names = as_codes(part)
            lut = np.array([names.setdefault(n, len(names)) for n in part_names], dtype=np.int64)
            pieces.append(lut[codes] if len(lut) else codes.astype(np.int64))
        dtype = index_dtype(len(names), signed=False)
        return LabelCodes(np.concatenate([p.astype(dtype) for p in pieces]) if pieces
                          else np.zeros(0, dtype), list(names))


class Chain(Sequence[Any]):
    """Several sequences read as one, in order, without copying them.

    Example:
        >>> both = Chain([["a", "b"], ["c"]])
        >>> len(both), both[2], list(both[np.array([0, 2])])
        (3, 'c', ['a', 'c'])
    """

    def __init__(self, parts: Sequence[Sequence[Any]]) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])  # [P + 1]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            index = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(index)
            part = int(np.searchsorted(self.starts, index, side="right")) - 1
            return self.parts[part][index - int(self.starts[part])]
        positions = as_index(index, len(self))
        if len(positions) and np.any(np.diff(positions) < 0):
            return [self[int(i)] for i in positions]  # out of order: a plain list
        # In order: one lazy piece per part, so a table part is still read as a stream.
        cuts = np.searchsorted(positions, self.starts)
        return Chain([take(part, positions[a:b] - start) for part, start, a, b
                      in zip(self.parts, self.starts[:-1].tolist(), cuts[:-1], cuts[1:])])

    def __iter__(self) -> Iterator[Any]:
        for part in self.parts:
            yield from part

    def __eq__(self, other: object) -> bool:
        return sequence_equal(self, other)

    __hash__ = None  # type: ignore[assignment]


def sequence_equal(seq: Sequence[Any], other: object) -> bool:
    """``seq == other`` item by item, as lists compare (``NotImplemented`` for a non-sequence)."""
    if not isinstance(other, (list, tuple, Sequence)) or isinstance(other, str):
        return NotImplemented  # type: ignore[return-value]
    return len(seq) == len(other) and all(a is b or a == b for a, b in zip(seq, other))


def as_index(index: Any, n: int) -> np.ndarray:
    """A slice, boolean mask or integer sequence into ``n`` items as an array of positions
    (negative ones counted from the end).

    Raises:
        IndexError: a position out of range.
    """
    if isinstance(index, slice):
        return np.arange(*index.indices(n), dtype=np.int64)
    array = np.asarray(index)
    if array.dtype == bool:
        return np.flatnonzero(array)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"indices must be integers, a slice or a boolean mask, not {array.dtype}")
    array = np.where(array < 0, array + n, array)
    if array.min() < 0 or array.max() >= n:
        raise IndexError(f"indices out of range for {n} items")
    return array


def take(seq: Sequence[Any], positions: Iterable[int] | np.ndarray) -> Sequence[Any]:
    """The items of ``seq`` at ``positions``: a list for a list or tuple, else ``seq[array]`` (a lazy
    selection for ``TableCells``, ``Chain`` and ``LabelCodes``, a copy for a numpy array)."""
    if isinstance(seq, (list, tuple)):
        return [seq[i] for i in np.asarray(positions, dtype=np.int64).tolist()]
    return seq[np.asarray(positions, dtype=np.int64)]


def as_codes(labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(codes, names)`` with ``labels[i] == names[codes[i]]``; names in order of appearance."""
    if isinstance(labels, LabelCodes):
        return labels.codes, labels.names
    names: dict[str, int] = {}
    codes = [names.setdefault(label, len(names)) for label in labels]
    return np.asarray(codes, dtype=index_dtype(len(names), signed=False)), list(names)


def label_set(labels: Sequence[str]) -> set[str]:
    """The distinct labels (without a pass of Python objects for ``LabelCodes``)."""
    if isinstance(labels, LabelCodes):
        used = np.flatnonzero(bincount(labels.codes, len(labels.names)))
        return {labels.names[i] for i in used.tolist()}
    return set(labels)


def label_indices(labels: Sequence[str], index: dict[str, int]) -> list[int] | np.ndarray:
    """Each label's class index: a list for a list, an array (smallest type) for ``LabelCodes``.

    Raises:
        KeyError: a label that ``index`` does not have.
    """
    if isinstance(labels, LabelCodes):
        lut = np.array([index.get(name, -1) for name in labels.names],
                       dtype=index_dtype(len(index) + 1))  # -1: a name no item may use
        out = lut[labels.codes]
        if (lut < 0).any() and (missing := np.flatnonzero(out < 0)).size:
            raise KeyError(labels[int(missing[0])])
        return out
    return [index[label] for label in labels]


def select(seq: Sequence[Any], mask: np.ndarray, value: Any = True) -> Sequence[Any]:
    """The items of ``seq`` whose ``mask`` entry is ``value``, in order: a list for a list, a
    lazy selection sharing ``mask`` for ``TableCells``, ``seq[mask == value]`` otherwise."""
    if isinstance(seq, (list, tuple)):
        return take(seq, np.flatnonzero(mask == value))
    if hasattr(seq, "select"):
        return seq.select(mask, value)
    return seq[mask == value]
