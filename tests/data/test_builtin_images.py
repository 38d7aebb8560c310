"""builtin:textures, builtin:glyphs and builtin:faces: image sets made from files in packages."""

from __future__ import annotations

import importlib.util
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import BUILTIN_DATASETS, DataReport, load_data
from transferkit.data.builtin import _glyph_fonts, _letters_of, load_builtin
from transferkit.errors import DataError

_HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None
_needs_skimage = pytest.mark.skipif(
    not _HAS_SKIMAGE, reason="scikit-image not installed (pip install scikit-image)"
)

# name, classes, examples per class, image shape
CASES = [
    pytest.param(
        "textures", ["brick", "grass", "gravel", "starfield"], 256, (32, 32),
        marks=_needs_skimage, id="textures",
    ),
    pytest.param("glyphs", list("ABCDEFGHIJ"), 115, (28, 28), id="glyphs"),
    pytest.param("faces", ["face", "not-face"], 100, (25, 25), marks=_needs_skimage, id="faces"),
]


def _stack(name: str) -> tuple[np.ndarray, list[str], float]:
    start = time.perf_counter()
    raw = load_builtin(name, DataReport())
    seconds = time.perf_counter() - start
    assert raw.modality == "image" and raw.pool is not None
    return np.stack(raw.pool.items), list(raw.pool.labels), seconds


def test_the_image_sets_are_registered() -> None:
    assert {"textures", "glyphs", "faces"} <= set(BUILTIN_DATASETS)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(("name", "classes", "per_class", "shape"), CASES)
def test_loads_offline_with_counts_shapes_and_range(
    name: str, classes: list[str], per_class: int, shape: tuple[int, int]
) -> None:
    report = DataReport()
    raw = load_builtin(name, report)
    assert raw.pool is not None and any(n.startswith(f"builtin:{name}:") for n in report.notes)
    counts = Counter(raw.pool.labels)
    assert sorted(counts) == classes
    assert set(counts.values()) == {per_class} and per_class >= 100
    images = np.stack(raw.pool.items)
    assert images.dtype == np.uint8 and images.shape == (len(raw.pool), *shape)
    # Every image has contrast, but for a few of scikit-image's non-face patches: one is all
    # black and three more nearly flat in lfw_subset itself.
    flat = images.reshape(len(images), -1).std(axis=1) <= 1
    assert {label for label, f in zip(raw.pool.labels, flat) if f} <= {"not-face"}
    assert flat.sum() <= 5


@pytest.mark.parametrize(("name", "classes", "per_class", "shape"), CASES)
def test_deterministic_and_quick(
    name: str, classes: list[str], per_class: int, shape: tuple[int, int]
) -> None:
    first, labels_1, seconds_1 = _stack(name)
    second, labels_2, seconds_2 = _stack(name)
    assert labels_1 == labels_2 and np.array_equal(first, second)
    assert min(seconds_1, seconds_2) < 3


@_needs_skimage
def test_faces_are_stretched_to_the_full_byte_range() -> None:
    images, labels, _ = _stack("faces")
    assert images.min() == 0 and images.max() == 255  # lfw_subset is float 0..1
    assert labels[:100] == ["face"] * 100 and labels[100:] == ["not-face"] * 100


def test_glyph_classes_have_ink_and_fonts_differ() -> None:
    images, labels, _ = _stack("glyphs")
    for letter in "ABCDEFGHIJ":
        ink = images[np.array(labels) == letter].reshape(-1, 28 * 28).max(axis=1)
        assert (ink >= 200).all(), letter  # white on black: every image holds a stroke
    fonts = _glyph_fonts()
    assert len(fonts) >= 10
    drawn = {b"|".join(g.tobytes() for g in letters) for letters in fonts.values()}
    assert len(drawn) == len(fonts)  # no two fonts draw the same ten letters


@pytest.mark.parametrize(
    ("font", "usable"),
    [
        ("DejaVuSans.ttf", True),
        ("cmr10.ttf", True),
        ("LastResortHE-Regular.ttf", False),  # one placeholder for every letter
        ("STIXSizOneSymReg.ttf", False),  # no letters: draws nothing
        ("DejaVuSansDisplay.ttf", False),
        ("cmex10.ttf", False),  # delimiters on the ASCII codes
    ],
)
def test_fonts_without_the_letters_are_skipped(font: str, usable: bool) -> None:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / font
    if not path.is_file():
        pytest.skip(f"this matplotlib does not ship {font}")
    assert (_letters_of(path) is not None) == usable


def test_missing_scikit_image_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    for name in ("textures", "faces"):
        with pytest.raises(DataError, match=r"pip install scikit-image.*transferkit\[builtin\]"):
            load_builtin(name, DataReport())


@_needs_skimage
def test_load_data_splits_textures_few_shot() -> None:
    bundle = load_data("builtin:textures", seed=0, per_class=5)
    assert bundle.modality == "image" and bundle.classes == ["brick", "grass", "gravel", "starfield"]
    assert np.bincount(bundle.train.labels).tolist() == [5] * 4
    for split in (bundle.val, bundle.test):
        assert sorted(set(split.labels)) == [0, 1, 2, 3]
        assert split.items[0].shape == (32, 32) and split.items[0].dtype == np.uint8
    assert abs(len(bundle.test) - 0.15 * 1024) < 8  # the test split is never cut down
