"""Stratified, seeded train/val/test splits and few-shot (per-class) sampling.

Written by hand instead of with ``sklearn.model_selection.train_test_split`` because small
datasets are the point of transferkit: sklearn refuses classes with one example and test sets
smaller than the number of classes, while here every class simply keeps at least one training
example and the val/test sizes follow the requested fractions of the whole dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from transferkit.config import check_fractions
from transferkit.errors import ConfigError

__all__ = ["stratified_split", "sample_per_class", "duplicate_groups"]


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


def duplicate_groups(items: Sequence[Any]) -> np.ndarray:
    """For each item, the position of its first copy: the same text (ignoring surrounding
    white space) or the same file path. Arrays (built-in images) are each their own group.

    Example:
        >>> duplicate_groups(["a", "b", " a", "c"]).tolist()
        [0, 1, 0, 3]
    """
    first: dict[str, int] = {}
    groups = np.arange(len(items))
    for i, item in enumerate(items):
        if isinstance(item, str):
            groups[i] = first.setdefault(item.strip(), i)
    return groups


def _split_groups(
    labels: Sequence[Any], groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[int], list[int], list[int]]:
    # Split the first copies, then every copy follows its first: copies of one example never
    # land in two splits (a test example seen in training flatters the test score).
    firsts = np.flatnonzero(groups == np.arange(len(groups)))
    parts = stratified_split([labels[i] for i in firsts], val_fraction=val_fraction,
                             test_fraction=test_fraction, seed=seed)
    which = np.empty(len(groups), dtype=np.int64)  # 0 train, 1 val, 2 test, by position
    for split_id, positions in enumerate(parts):
        which[firsts[positions]] = split_id
    which = which[groups]
    return tuple(np.flatnonzero(which == k).tolist() for k in range(3))  # type: ignore[return-value]


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
    check_fractions(val_fraction, test_fraction)
    if groups is not None and len(np.unique(np.asarray(groups))) < len(groups):
        return _split_groups(labels, np.asarray(groups), val_fraction, test_fraction, seed)
    labels_arr = np.asarray(list(labels))
    n = len(labels_arr)
    if n == 0:
        return [], [], []
    classes, inverse = np.unique(labels_arr, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(classes))
    rng = np.random.default_rng(seed)
    test_take = _allocate(_target(n, test_fraction), sizes, sizes - 1, rng)
    val_take = _allocate(_target(n, val_fraction), sizes, sizes - 1 - test_take, rng)

    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    # Positions grouped by class, in order (a stable argsort is one pass instead of one per class).
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(sizes)[:-1])
    for c, positions in enumerate(by_class):
        perm = rng.permutation(positions)
        t, v = int(test_take[c]), int(val_take[c])
        test.extend(perm[:t].tolist())
        val.extend(perm[t : t + v].tolist())
        train.extend(perm[t + v :].tolist())
    return sorted(train), sorted(val), sorted(test)


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
    labels_arr = np.asarray(list(labels))
    if len(labels_arr) == 0:
        return []
    _, inverse = np.unique(labels_arr, return_inverse=True)
    sizes = np.bincount(inverse)
    # A seed stream separate from stratified_split's, so this draw does not mirror that one.
    rng = np.random.default_rng([int(seed), 1])
    keep: list[int] = []
    for positions in np.split(np.argsort(inverse, kind="stable"), np.cumsum(sizes)[:-1]):
        keep.extend(rng.permutation(positions)[:per_class].tolist())
    return sorted(keep)
