"""Image folders: class sub-folders, explicit split folders, bad inputs, broken images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.data import DataBundle, load_data
from transferkit.errors import DataError


def _all_items(bundle: DataBundle) -> list:
    return bundle.train.items + bundle.val.items + bundle.test.items


def test_class_folders_load_and_split(image_folder) -> None:
    root = image_folder({"cat": 10, "dog": 10, "emu": 10})
    bundle = load_data(str(root), seed=0)
    assert bundle.modality == "image"
    assert bundle.classes == ["cat", "dog", "emu"]
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (20, 5, 5)
    assert sorted(_all_items(bundle)) == sorted(str(p) for p in root.rglob("*.png"))
    # Labels follow the sorted class order: every cat file has label 0.
    for item, label in zip(bundle.train.items, bundle.train.labels, strict=True):
        assert Path(item).parent.name == bundle.classes[label]
    assert bundle.report.n_scanned == 30 and not bundle.report.bad_files


@pytest.mark.parametrize("ext", [".PNG", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif"])
def test_image_extensions_case_insensitive(tmp_path: Path, helpers, ext: str) -> None:
    from PIL import Image

    for label in ("a", "b"):
        for i in range(3):
            path = tmp_path / "d" / label / f"{i}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            fmt = {".PNG": "PNG", ".tif": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(
                ext, ext[1:].upper()
            )
            Image.new("RGB", (6, 6), (i * 40, 0, 0)).save(path, format=fmt)
    (tmp_path / "d" / "a" / "notes.md").write_text("not an image")  # ignored
    bundle = load_data(str(tmp_path / "d"))
    assert len(_all_items(bundle)) == 6


def test_nested_files_and_hidden_entries(tmp_path: Path, helpers) -> None:
    root = helpers.make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    helpers.write_png(root / "a" / "more" / "deep.png")  # class folders are read recursively
    helpers.write_png(root / ".thumbs" / "x.png")  # hidden folder: not a class
    bundle = load_data(str(root))
    assert bundle.classes == ["a", "b"] and len(_all_items(bundle)) == 9
    assert not any("left out" in note for note in bundle.report.notes)


def test_images_beside_the_class_folders_are_left_out_and_said_so(tmp_path: Path, helpers) -> None:
    root = helpers.make_image_folder(tmp_path / "d", {"a": 4, "b": 4})
    helpers.write_png(root / "stray.png")
    helpers.write_png(root / ".hidden.png")
    (root / "README.txt").write_text("about these photos")  # not an image: an image dataset's own file
    bundle = load_data(str(root))
    assert len(_all_items(bundle)) == 8
    assert [n for n in bundle.report.notes if "left out" in n] == [
        f"left out 1 file(s) at the top of {root}, outside every class folder: stray.png; move them into "
        "their class's folder to use them"]


@pytest.mark.parametrize(
    "layout, expected",
    [
        ({"train": 10, "val": 3, "test": 4}, (10, 3, 4)),
        ({"train": 10, "validation": 3}, None),  # test carved from train
        ({"train": 10, "test": 4}, None),  # val carved from train
        ({"train": 10}, None),  # both carved
    ],
)
def test_explicit_split_folders(tmp_path: Path, helpers, layout: dict[str, int], expected) -> None:
    root = tmp_path / "d"
    for split, n in layout.items():
        helpers.make_image_folder(root / split, {"x": n, "y": n})
    bundle = load_data(str(root), seed=1)
    sizes = (len(bundle.train), len(bundle.val), len(bundle.test))
    if expected is not None:
        assert sizes == tuple(2 * n for n in expected)
    assert sum(sizes) == sum(2 * n for n in layout.values())
    assert all(len(s) > 0 for s in (bundle.train, bundle.val, bundle.test))
    if "test" in layout:  # an explicit test split is used as is
        assert all("/test/" in item for item in bundle.test.items)
    if "val" not in layout and "validation" not in layout:
        assert any("carved" in note for note in bundle.report.notes)


def test_class_named_test_among_classes_is_a_class(image_folder) -> None:
    root = image_folder({"train": 5, "test": 5, "other": 5})
    assert load_data(str(root)).classes == ["other", "test", "train"]


def test_class_only_in_test_split_is_an_error(tmp_path: Path, helpers) -> None:
    helpers.make_image_folder(tmp_path / "d" / "train", {"x": 5, "y": 5})
    helpers.make_image_folder(tmp_path / "d" / "test", {"x": 2, "z": 2})
    with pytest.raises(DataError, match="'?z'? .*not in its train split"):
        load_data(str(tmp_path / "d"))


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda root, h: None, "does not exist"),
        (lambda root, h: root.mkdir(), "no class sub-folders"),
        (lambda root, h: h.write_png(root / "loose.png"), "holds 1 image(s) directly"),
        (lambda root, h: [(root / c).mkdir(parents=True) for c in ("a", "b")], "no image files"),
        (
            lambda root, h: (h.make_image_folder(root, {"a": 3, "b": 3}), (root / "empty").mkdir()),
            "empty",
        ),
        (lambda root, h: h.make_image_folder(root, {"only": 6}), "at least two classes"),
        (lambda root, h: h.make_image_folder(root / "test", {"a": 2, "b": 2}), "no train/ folder"),
    ],
    ids=[
        "missing",
        "no-classes",
        "loose-images",
        "no-images",
        "empty-class",
        "one-class",
        "only-test",
    ],
)
def test_bad_folders(tmp_path: Path, helpers, build, fragment: str) -> None:
    root = tmp_path / "d"
    build(root, helpers)
    with pytest.raises(DataError) as err:
        load_data(str(root))
    assert fragment in str(err.value)
    if fragment == "empty":  # the message names the empty class folder
        assert str(root / "empty") in str(err.value)


def test_truncated_image_is_skipped_and_counted(tmp_path: Path, helpers) -> None:
    root = helpers.make_image_folder(tmp_path / "d", {"a": 20, "b": 20})
    bad = helpers.write_truncated_jpeg(root / "a" / "broken.jpg")
    bundle = load_data(str(root))
    assert bundle.report.bad_files == [str(bad)]
    assert str(bad) not in _all_items(bundle)
    assert len(_all_items(bundle)) == 40 and bundle.report.n_scanned == 41
    assert any("skipped 1 unreadable" in line for line in bundle.report.lines())


def test_too_many_bad_images_is_an_error(tmp_path: Path, helpers) -> None:
    root = helpers.make_image_folder(tmp_path / "d", {"a": 20, "b": 20})
    for i in range(3):
        helpers.write_truncated_jpeg(root / "b" / f"broken{i}.jpg")
    (root / "a" / "garbage.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError) as err:
        load_data(str(root))
    message = str(err.value)
    assert "4 of 44 images (9.1%)" in message and "broken0.jpg" in message
    # A higher tolerance lets the same data load, with the broken files listed.
    assert len(load_data(str(root), max_bad_fraction=0.1).report.bad_files) == 4


def test_class_with_only_broken_images_is_an_error(tmp_path: Path, helpers) -> None:
    root = helpers.make_image_folder(tmp_path / "d", {"a": 30, "b": 30})
    helpers.write_truncated_jpeg(root / "c" / "x.jpg")
    with pytest.raises(DataError, match="Every image of class"):
        load_data(str(root))


def test_text_class_folders(tmp_path: Path) -> None:
    for label in ("neg", "pos"):
        (tmp_path / "d" / label).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "d" / label / f"{i}.txt").write_text(f"{label} review {i}\n")
    (tmp_path / "d" / "pos" / "latin1.txt").write_bytes("caf\xe9 ok".encode("latin-1"))
    (tmp_path / "d" / "neg" / "blank.txt").write_text("  \n")
    bundle = load_data(str(tmp_path / "d"))
    texts = _all_items(bundle)
    assert bundle.modality == "text" and len(texts) == 11
    assert "caf\ufffd ok" in texts and "neg review 0" in texts
    assert bundle.report.replaced_text == [str(tmp_path / "d" / "pos" / "latin1.txt")]
    assert any("empty text file" in note for note in bundle.report.notes)


def test_seeded_folder_splits_are_reproducible(image_folder) -> None:
    root = image_folder({"a": 12, "b": 9})
    first, again, other = (load_data(str(root), seed=s) for s in (3, 3, 4))
    assert first.test.items == again.test.items and first.train.items == again.train.items
    assert first.test.items != other.test.items
    assert np.bincount(first.test.labels).min() >= 1
