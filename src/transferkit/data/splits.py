"""Stratified, seeded train/val/test splits and few-shot (per-class) sampling.

Written by hand instead of with ``sklearn.model_selection.train_test_split`` because small
datasets are the point of transferkit: sklearn refuses classes with one example and test sets
smaller than the number of classes, while here every class simply keeps at least one training
example and the val/test sizes follow the requested fractions of the whole dataset.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from transferkit.config import check_fractions
from transferkit.data.sequences import CHUNK, bincount, index_dtype, select, take
from transferkit.errors import ConfigError

__all__ = ["stratified_split", "split_assignment", "sample_per_class", "duplicate_groups", "Copies",
           "find_copies", "copies_from_hashes", "key_hash", "item_hash"]

_U32 = next(code for code in "ILH" if array(code).itemsize == 4)  # array typecode of 4 bytes


def _target(n: int, fraction: float) -> int:
    # A non-zero fraction asks for at least one example: an empty val/test split breaks early
    # stopping and evaluation, while one example more or less barely changes training.
    if fraction <= 0 or n == 0:
        return 0
    return max(1, int(np.floor(n * fraction + 0.5 + 1e-9)))  # round half up: 4.5 -> 5, not 4


def _allocate(
    target: int, sizes: np.ndarray, capacity: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Spread ``target`` picks over classes in proportion to ``sizes``, at most ``capacity`` each.

    Largest-remainder rounding keeps the total exact; ties are broken by the seeded ``rng`` so
    that no class is always favoured.
    """
    target = int(min(target, capacity.sum()))
    take = np.zeros(len(sizes), dtype=np.int64)
    if target == 0:
        return take
    quota = target * sizes / sizes.sum()
    take = np.minimum(np.floor(quota).astype(np.int64), capacity)
    remaining = target - int(take.sum())
    order = np.lexsort((rng.random(len(sizes)), -(quota - np.floor(quota))))
    while remaining > 0:  # terminates: target <= capacity.sum()
        for c in order:
            if remaining == 0:
                break
            if take[c] < capacity[c]:
                take[c] += 1
                remaining -= 1
    return take


@dataclass(frozen=True)
class Copies:
    """Items that repeat an earlier one (the same text, ignoring surrounding white space, or the
    same file path): ``copies[i]`` repeats ``firsts[i]``, its group's first item. Both int64
    [D], ``copies`` ascending; D is the number of copies, not of items."""

    copies: np.ndarray
    firsts: np.ndarray

    @classmethod
    def none(cls) -> Copies:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_groups(cls, groups: Sequence[int] | np.ndarray) -> Copies:
        """From :func:`duplicate_groups`' form (each item's group's first position)."""
        groups = np.asarray(groups, dtype=np.int64)
        copies = np.flatnonzero(groups != np.arange(len(groups)))
        return cls(copies, groups[copies])

    def __len__(self) -> int:
        return len(self.copies)

    def groups(self, n: int) -> np.ndarray:
        """For each of ``n`` items, the position of its group's first item."""
        groups = np.arange(n)
        groups[self.copies] = self.firsts
        return groups


def key_hash(key: str) -> int:
    """32 bits of a hash of ``key``: only a hint (equal hashes are compared by key before they
    count as copies), kept small because a table's hashes are held one per row at once."""
    return hash(key) & 0xFFFFFFFF


def item_hash(item: str) -> int:
    """``key_hash`` of an item's key: the text or path without surrounding white space."""
    return key_hash(item.strip())


def find_copies(items: Sequence[Any]) -> Copies:
    """The copies among ``items``: strings equal up to surrounding white space (texts, file
    paths); anything else (in-memory images) is never a copy. A table's items bring the copies
    found while the table was read (``items.copies``).

    Example:
        >>> found = find_copies(["a", "b", " a", "c", "b"])
        >>> found.copies.tolist(), found.firsts.tolist()
        ([2, 4], [0, 1])
    """
    known = getattr(items, "copies", None)
    if isinstance(known, Copies):
        return known
    hashes = array(_U32)
    others = array("q")  # positions of items that are not strings
    for i, item in enumerate(items):
        if isinstance(item, str):
            hashes.append(item_hash(item))
        else:
            others.append(i)
    if not others:
        return copies_from_hashes(_u32(hashes), lambda positions: take(items, positions))
    keyed = np.delete(np.arange(len(items)), np.asarray(others, dtype=np.int64))
    found = copies_from_hashes(_u32(hashes), lambda positions: take(items, keyed[positions]))
    return Copies(keyed[found.copies], keyed[found.firsts])


def copies_from_hashes(hashes: np.ndarray, items_at: Callable[[np.ndarray], Iterable[str]]) -> Copies:
    """The copies among items whose ``item_hash`` values are ``hashes`` (uint32 [N]).

    Only items whose hash occurs more than once are read back, by ``items_at(positions)``
    (ascending positions, read in that order: a table reads them in one pass), and grouped by
    their exact key, so a hash collision never makes two different items copies.
    """
    repeated = _repeated_values(hashes)
    if not len(repeated):
        return Copies.none()
    candidates = _positions_of(hashes, repeated)
    first: dict[str, int] = {}
    copies, firsts = array("q"), array("q")
    for position, item in zip(candidates.tolist(), items_at(candidates), strict=True):
        found = first.setdefault(item.strip(), position)
        if found != position:
            copies.append(position)
            firsts.append(found)
    return Copies(np.array(copies, dtype=np.int64), np.array(firsts, dtype=np.int64))


def _repeated_values(hashes: np.ndarray) -> np.ndarray:
    """The values that occur more than once in ``hashes`` (sorted). A long array is sorted in
    32 slices of the hash range, each copied into an array of its exact size, so sorting needs
    1/32 of the array's memory beside it."""
    if len(hashes) <= 1 << 20:
        return _repeated_sorted(np.sort(hashes))
    sizes = sum(bincount(c >> 27, 32) for c in _chunks(hashes))
    found = []
    for top, size in enumerate(sizes.tolist()):
        part, filled = np.empty(size, hashes.dtype), 0
        for c in _chunks(hashes):
            piece = c[(c >> 27) == top]
            part[filled : filled + len(piece)] = piece
            filled += len(piece)
        part.sort()
        found.append(_repeated_sorted(part))
    return np.concatenate(found)


def _repeated_sorted(values: np.ndarray) -> np.ndarray:
    return np.unique(values[1:][values[1:] == values[:-1]])


def _positions_of(hashes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Ascending positions whose hash is one of ``values`` (sorted, not empty)."""
    found = []
    for start, chunk in zip(range(0, len(hashes), CHUNK), _chunks(hashes)):
        at = np.minimum(np.searchsorted(values, chunk), len(values) - 1)
        found.append(np.flatnonzero(values[at] == chunk) + start)
    return np.concatenate(found)


def _chunks(values: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _u32(values: array) -> np.ndarray:
    return np.frombuffer(values, dtype=np.uint32) if len(values) else np.zeros(0, np.uint32)


def duplicate_groups(items: Sequence[Any]) -> np.ndarray:
    """For each item, the position of its first copy: the same text (ignoring surrounding
    white space) or the same file path. Arrays (built-in images) are each their own group.

    Example:
        >>> duplicate_groups(["a", "b", " a", "c"]).tolist()
        [0, 1, 0, 3]
    """
    return find_copies(items).groups(len(items))


def _class_positions(labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(inverse, sizes)``: each item's class rank among the sorted distinct labels (smallest
    integer type) and the size of each class. Class indices (small non-negative integers) take
    a path without sorting or an int64 copy: one byte per row for under 128 classes."""
    array_ = labels if isinstance(labels, np.ndarray) else np.asarray(list(labels))
    if (array_.dtype.kind in "iu" and len(array_) and int(array_.min()) >= 0
            and int(array_.max()) < 1 << 16):
        counts = bincount(array_)
        present = counts > 0
        if present.all():  # every index 0..C-1 used (the classes of a pool): ranks are the labels
            return array_, counts
        lut = (np.cumsum(present) - 1).astype(index_dtype(int(present.sum())))
        return lut[array_], counts[present]
    classes, inverse = np.unique(array_, return_inverse=True)
    return inverse.reshape(-1), np.bincount(inverse.reshape(-1), minlength=len(classes))


def _members(inverse: np.ndarray, c: int) -> np.ndarray:
    """Ascending positions of class ``c`` (uint32 when they fit: half the memory of int64)."""
    dtype = index_dtype(len(inverse), signed=False)
    return np.concatenate([(np.flatnonzero(chunk == c) + start).astype(dtype)
                           for start, chunk in zip(range(0, len(inverse), CHUNK), _chunks(inverse))])


def split_assignment(
    labels: Sequence[Any], *, val_fraction: float, test_fraction: float, seed: int,
    copies: Copies | None = None,
) -> np.ndarray:
    """Which split each position goes to: uint8 [N], 0 train, 1 val, 2 test (see
    :func:`stratified_split`, which lists the positions of each). With ``copies``, the first
    items are split and every copy follows its first: copies of one example never land in two
    splits (a test example seen in training flatters the test score).

    Example:
        >>> split_assignment([0] * 4 + [1] * 4, val_fraction=0.25, test_fraction=0.25, seed=0).tolist()
        [0, 2, 1, 0, 2, 0, 1, 0]
    """
    check_fractions(val_fraction, test_fraction)
    if copies is None or not len(copies):
        return _assign(labels, val_fraction, test_fraction, seed)
    firsts = np.ones(len(labels), dtype=bool)
    firsts[copies.copies] = False
    which = np.empty(len(labels), dtype=np.uint8)
    which[firsts] = _assign(select(labels, firsts), val_fraction, test_fraction, seed)
    which[copies.copies] = which[copies.firsts]
    return which


def _assign(labels: Sequence[Any], val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    inverse, sizes = _class_positions(labels)
    n = len(inverse)
    which = np.zeros(n, dtype=np.uint8)
    if n == 0:
        return which
    rng = np.random.default_rng(seed)
    test_take = _allocate(_target(n, test_fraction), sizes, sizes - 1, rng)
    val_take = _allocate(_target(n, val_fraction), sizes, sizes - 1 - test_take, rng)
    for c in range(len(sizes)):
        positions = _members(inverse, c)
        rng.shuffle(positions)  # the order rng.permutation gives, without a second copy
        t, v = int(test_take[c]), int(val_take[c])
        which[positions[:t]] = 2
        which[positions[t : t + v]] = 1
    return which


def stratified_split(
    labels: Sequence[int], *, val_fraction: float, test_fraction: float, seed: int,
    groups: Sequence[int] | np.ndarray | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """Split positions 0..n-1 into train/val/test, keeping class proportions.

    Every class keeps at least one training example; a class with a single example goes to
    train only. The same labels and seed always give the same split. With ``groups``, the
    positions of one group (copies of one example, see :func:`duplicate_groups`) go to one
    split; without copies the split is the same as without ``groups``.

    Args:
        labels: the label of each item (any hashable, sortable values).
        val_fraction: share of all items for validation.
        test_fraction: share of all items for testing.
        seed: random seed.
        groups: for each item, the position of its group's first item (copies share a label).

    Returns:
        ``(train, val, test)``: sorted lists of positions.

    Example:
        >>> train, val, test = stratified_split([0] * 10 + [1] * 10, val_fraction=0.2,
        ...                                     test_fraction=0.2, seed=0)
        >>> len(train), len(val), len(test)
        (12, 4, 4)
    """
    copies = None if groups is None else Copies.from_groups(groups)
    which = split_assignment(labels, val_fraction=val_fraction, test_fraction=test_fraction,
                             seed=seed, copies=copies)
    return tuple(np.flatnonzero(which == k).tolist() for k in range(3))  # type: ignore[return-value]


def sample_per_class(labels: Sequence[int], per_class: int, *, seed: int) -> list[int]:
    """Pick at most ``per_class`` positions of each class, at random but reproducibly.

    The picks are nested: the 5 examples chosen with ``per_class=5`` are among the 10 chosen
    with ``per_class=10`` (same seed), so sample-efficiency curves only ever add data.

    Args:
        labels: the label of each item.
        per_class: the most examples to keep per class (>= 1).
        seed: random seed.

    Returns:
        Sorted positions to keep.

    Example:
        >>> len(sample_per_class([0, 0, 0, 1, 1, 1], 2, seed=0))
        4
    """
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ConfigError(
            f"per_class must be a whole number of at least 1 (examples kept per class for "
            f"training), got {per_class!r}. Leave it unset to use all training data."
        )
    inverse, sizes = _class_positions(labels)
    if len(inverse) == 0:
        return []
    # A seed stream separate from stratified_split's, so this draw does not mirror that one.
    rng = np.random.default_rng([int(seed), 1])
    keep: list[int] = []
    for c in range(len(sizes)):
        positions = _members(inverse, c)
        rng.shuffle(positions)
        keep.extend(positions[:per_class].tolist())
    return sorted(keep)
