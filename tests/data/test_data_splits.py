"""Stratified seeded splits, small classes, per_class sampling and option validation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import load_data
from transferkit.data.splits import sample_per_class, stratified_split
from transferkit.errors import ConfigError, DataError


def _labels(counts: dict[int, int]) -> list[int]:
    return [c for c, n in counts.items() for _ in range(n)]


@pytest.mark.parametrize(
    "counts, fractions, sizes",
    [
        ({0: 50, 1: 50}, (0.15, 0.15), (70, 15, 15)),
        ({0: 80, 1: 20}, (0.1, 0.2), (70, 10, 20)),
        ({0: 3, 1: 3, 2: 3, 3: 3}, (0.15, 0.15), (8, 2, 2)),  # sklearn refuses this one
        ({0: 1, 1: 1, 2: 10}, (0.25, 0.25), (6, 3, 3)),  # single-example classes stay in train
        ({0: 10, 1: 10}, (0.0, 0.2), (16, 0, 4)),
    ],
)
def test_split_sizes_and_every_class_in_train(counts, fractions, sizes) -> None:
    labels = _labels(counts)
    train, val, test = stratified_split(
        labels, val_fraction=fractions[0], test_fraction=fractions[1], seed=0
    )
    assert (len(train), len(val), len(test)) == sizes
    assert sorted(train + val + test) == list(range(len(labels)))  # a partition
    assert set(labels[i] for i in train) == set(counts)


def test_split_is_stratified() -> None:
    labels = _labels({0: 300, 1: 100, 2: 40})
    _, val, test = stratified_split(labels, val_fraction=0.2, test_fraction=0.1, seed=5)
    assert Counter(labels[i] for i in val) == {0: 60, 1: 20, 2: 8}
    assert Counter(labels[i] for i in test) == {0: 30, 1: 10, 2: 4}


def test_split_seed_determinism() -> None:
    labels = _labels({0: 40, 1: 40, 2: 40})
    a = stratified_split(labels, val_fraction=0.15, test_fraction=0.15, seed=7)
    assert a == stratified_split(labels, val_fraction=0.15, test_fraction=0.15, seed=7)
    assert a != stratified_split(labels, val_fraction=0.15, test_fraction=0.15, seed=8)


def test_per_class_is_nested_and_seeded() -> None:
    labels = _labels({0: 30, 1: 5, 2: 30})
    five, ten = (sample_per_class(labels, n, seed=1) for n in (5, 10))
    assert Counter(labels[i] for i in ten) == {0: 10, 1: 5, 2: 10}
    assert set(five) <= set(ten)
    assert five == sample_per_class(labels, 5, seed=1) != sample_per_class(labels, 5, seed=2)


def test_load_data_per_class_caps_train_and_val_in_proportion(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": "abc"[i % 3]} for i in range(300)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    full = load_data(str(path), seed=2)
    few = load_data(str(path), seed=2, per_class=14)
    assert Counter(few.train.labels) == {0: 14, 1: 14, 2: 14}
    # 14 training examples per class at the default 70/15/15 split: 14 x 0.15 / 0.7 = 3 for val.
    assert Counter(few.val.labels) == {0: 3, 1: 3, 2: 3}
    assert set(few.train.items) <= set(full.train.items) and set(few.val.items) <= set(full.val.items)
    assert few.test == full.test  # the measurement does not shrink
    assert any("per_class=14" in note and "validation" in note for note in few.report.notes)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"per_class": 0}, "per_class"),
        ({"per_class": -3}, "per_class"),
        ({"per_class": 2.5}, "per_class"),
        ({"val_fraction": 1.2}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "below 1"),
        ({"seed": -1}, "seed"),
        ({"max_bad_fraction": 2}, "max_bad_fraction"),
    ],
)
def test_bad_options_are_config_errors(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_data("builtin:digits", **kwargs)


# ----------------------------------------------------------------------------- copies by hash


def _reference_groups(items: list) -> list[int]:
    first: dict[str, int] = {}
    return [first.setdefault(x.strip(), i) if isinstance(x, str) else i for i, x in enumerate(items)]


@pytest.mark.parametrize("hash_fn", [None, lambda key: 7, lambda key: len(key) % 3],
                         ids=["real", "all-collide", "some-collide"])
def test_copies_are_exact_whatever_the_hashes(monkeypatch, hash_fn) -> None:
    """The hash only proposes candidates: forced collisions never make different items copies."""
    from transferkit.data import splits

    if hash_fn is not None:
        monkeypatch.setattr(splits, "key_hash", hash_fn)
    rng = np.random.default_rng(0)
    items: list = [f"text {int(i)}" + " " * int(rng.integers(0, 2)) for i in rng.integers(0, 40, 200)]
    items[5] = np.zeros(3)  # an in-memory image is never a copy
    found = splits.find_copies(items)
    assert splits.duplicate_groups(items).tolist() == _reference_groups(items)
    assert found.copies.tolist() == sorted(found.copies.tolist())
    assert all(items[c].strip() == items[f].strip() and f < c for c, f in zip(found.copies, found.firsts))


def test_long_hash_arrays_find_repeats_in_slices() -> None:
    from transferkit.data import splits

    rng = np.random.default_rng(1)
    hashes = rng.integers(0, 2**32, (1 << 20) + 5000, dtype=np.uint64).astype(np.uint32)
    hashes[-100:] = hashes[:100]  # planted repeats, beside the chance ones
    values, counts = np.unique(hashes, return_counts=True)
    assert splits._repeated_values(hashes).tolist() == values[counts > 1].tolist()


def test_colliding_table_rows_keep_their_copies_and_conflicts_exact(tmp_path: Path, monkeypatch) -> None:
    """A table's hashes are taken while it is read; with every hash equal the copies, their split
    and the conflicting-label error are still those of the exact paths."""
    from transferkit.data import datasets, splits

    monkeypatch.setattr(splits, "key_hash", lambda key: 1)
    monkeypatch.setattr(datasets, "drop_bad_images", lambda raw, report, max_bad_fraction: None)
    rows = [f"img/{i % 30}.png,{'ab'[i % 30 % 2]}" for i in range(60)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(["path,label", *rows]) + "\n")
    bundle = load_data(str(path), seed=0)
    assert bundle.report.duplicates == 30
    where = {}
    for name in ("train", "val", "test"):
        for item in getattr(bundle, name).items:
            where.setdefault(item, set()).add(name)
    assert len(where) == 30 and all(len(s) == 1 for s in where.values())
    path.write_text("\n".join(["path,label", *rows, "img/3.png,a", "./img/4.png,b", "img//5.png,a"]) + "\n")
    with pytest.raises(DataError) as info:
        load_data(str(path), seed=0)
    message = str(info.value)
    assert "3 example(s) that appear more than once with different labels" in message
    assert message.count("labelled a and b") == 3 and "(and" not in message
