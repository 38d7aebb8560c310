"""Data that would be silently wrong: shifted CSV rows, duplicates across splits, images that pass
the scan but fail later, decompression bombs; and the training CLI's records of them."""

from __future__ import annotations

import io
import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli
from PIL import Image

from transferkit.config import DEFAULT_MAX_IMAGE_PIXELS, DataOptions
from transferkit.data import ImageDataset, build_image_transform, load_data, to_pil_rgb
from transferkit.data.splits import duplicate_groups, stratified_split
from transferkit.data.transforms import ImageTooLargeError, max_image_pixels, set_max_image_pixels
from transferkit.errors import DataError
from transferkit.models.spec import ImagePreprocessing


@pytest.fixture(autouse=True)
def _default_pixel_cap():
    """The pixel cap is PIL's process-wide setting: every test starts and ends at the default."""
    set_max_image_pixels(DEFAULT_MAX_IMAGE_PIXELS)
    yield
    set_max_image_pixels(DEFAULT_MAX_IMAGE_PIXELS)


def _texts(per_class: int = 10) -> list[str]:
    return [f"{label} example {i},{label}" for label in ("neg", "pos") for i in range(per_class)]


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- shifted CSV rows


@pytest.mark.parametrize("delimiter, suffix", [(",", ".csv"), ("\t", ".tsv"), (";", ".csv")])
def test_row_with_more_fields_than_header_names_its_line(tmp_path: Path, delimiter, suffix) -> None:
    rows = [r.replace(",", delimiter) for r in _texts()]
    # Line 1 header, line 2 a quoted cell spanning two lines (3), so the bad row is on line 5.
    lines = [f"text{delimiter}label", f'"two{delimiter}\nlines"{delimiter}pos', rows[0],
             f"great{delimiter} really great{delimiter}pos", *rows[1:]]
    path = _write_lines(tmp_path / f"t{suffix}", lines)
    with pytest.raises(DataError) as info:
        load_data(str(path))
    message = str(info.value)
    assert "Line 5 of" in message and "3 fields but the header has 2" in message
    assert "quote" in message.lower() and "--skip-bad-rows" in message


def test_skip_bad_rows_skips_and_counts(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "t.csv", ["text,label", *_texts()[:3], "a, b,pos", *_texts()[3:]])
    bundle = load_data(DataOptions(str(path), skip_bad_rows=True))
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 20
    assert bundle.report.bad_rows == [f"{path} (line 5)"]
    skipped = bundle.report.skipped_inputs()
    assert (skipped.bad_rows, skipped.bad_row_names) == (1, [f"{path} (line 5)"])
    assert any("skipped 1 row(s) with more fields than the header" in line for line in bundle.report.lines())
    assert not any(" b" in item for item in bundle.train.items + bundle.val.items + bundle.test.items)


def test_fewer_fields_still_drop_the_row_with_a_note(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "t.csv", ["text,label", *_texts(), "lonely text"])
    bundle = load_data(str(path))
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 20
    assert any("without a label" in note for note in bundle.report.notes)


# ----------------------------------------------------------------------------- duplicates


def _all(bundle) -> list[tuple[str, str]]:
    return [(name, item) for name in ("train", "val", "test") for item in getattr(bundle, name).items]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_copies_of_a_text_stay_in_one_split(tmp_path: Path, seed: int) -> None:
    unique = [f"{label} review {i},{label}" for label in ("neg", "pos") for i in range(20)]
    path = _write_lines(tmp_path / "t.csv", ["text,label", *unique, *unique[::2], *unique[::4]])
    bundle = load_data(str(path), seed=seed)
    where: dict[str, set[str]] = {}
    for split, item in _all(bundle):
        where.setdefault(item.strip(), set()).add(split)
    assert all(len(splits) == 1 for splits in where.values()), where
    assert bundle.report.duplicates == 20 + 10
    assert bundle.report.skipped_inputs().duplicates == 30
    assert any("30 duplicate example(s)" in line for line in bundle.report.lines())


def test_copies_of_an_image_path_stay_in_one_split(tmp_path: Path, helpers) -> None:
    rows = []
    for label in ("cat", "dog"):
        for i in range(12):
            helpers.write_png(tmp_path / label / f"{i}.png", (200, 30, 30) if label == "cat" else (30, 30, 200))
            rows += [f"{label}/{i}.png,{label}"] * (1 + i % 3)  # one, two or three copies
    path = _write_lines(tmp_path / "images.csv", ["path,label", *rows])
    bundle = load_data(str(path), seed=0)
    where: dict[str, set[str]] = {}
    for split, item in _all(bundle):
        where.setdefault(item, set()).add(split)
    assert len(where) == 24 and all(len(splits) == 1 for splits in where.values())
    assert bundle.report.duplicates == len(rows) - 24


def test_copies_with_different_labels_are_an_error(tmp_path: Path) -> None:
    lines = ["text,label", *_texts(), "neg example 3,pos", "  pos example 1 ,neg"]
    with pytest.raises(DataError) as info:
        load_data(str(_write_lines(tmp_path / "t.csv", lines)))
    message = str(info.value)
    assert "2 example(s) that appear more than once with different labels" in message
    assert "'neg example 3' labelled neg and pos" in message and "'pos example 1'" in message


def test_explicit_splits_keep_their_copies_and_say_so(tmp_path: Path) -> None:
    _write_lines(tmp_path / "train.csv", ["text,label", *_texts()])
    _write_lines(tmp_path / "test.csv", ["text,label", *_texts()[:3]])
    bundle = load_data(str(tmp_path))
    assert bundle.report.duplicates == 3 and len(bundle.test) == 3
    assert any("3 test example(s) also appear in the train split" in n for n in bundle.report.notes)


def test_grouping_without_copies_changes_no_split() -> None:
    labels = [i % 3 for i in range(50)]
    plain = stratified_split(labels, val_fraction=0.2, test_fraction=0.2, seed=4)
    grouped = stratified_split(labels, val_fraction=0.2, test_fraction=0.2, seed=4, groups=np.arange(50))
    assert plain == grouped
    assert duplicate_groups(["a", "b", " a", np.zeros(2), "b"]).tolist() == [0, 1, 0, 3, 1]


# ----------------------------------------------------------------------------- one decode function


def _jpeg_with_broken_exif(path: Path) -> Path:
    """An 8 x 4 JPEG whose EXIF says "rotate 90" and also holds a DateTime stored as a float:
    PIL opens and decodes it, but ImageOps.exif_transpose fails rewriting that EXIF block."""
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 8, 3), 200, np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    entries = [(0x0112, 3, 1, struct.pack(">HH", 6, 0)), (0x0132, 11, 1, b"\xe9`\xfc\xbd")]
    ifd = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", len(entries))
    ifd += b"".join(struct.pack(">HHI", *e[:3]) + e[3] for e in entries) + b"\x00" * 4
    payload = b"Exif\x00\x00" + ifd
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:])
    return path


def test_broken_exif_orientation_is_decoded_upright_by_scan_and_loader(tmp_path: Path, helpers) -> None:
    root = helpers.make_image_folder(tmp_path / "imgs", {"a": 6, "b": 6})
    odd = _jpeg_with_broken_exif(root / "a" / "phone.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about the corrupt tag
        assert to_pil_rgb(str(odd)).size == (4, 8)  # turned upright: 8 x 4 -> 4 x 8
        bundle = load_data(str(root), val_fraction=0.0, test_fraction=0.0)
        assert str(odd) in bundle.train.items and not bundle.report.bad_files
        dataset = ImageDataset(bundle.train, lambda image: np.asarray(image))
        assert {dataset[i][0].shape[-1] for i in range(len(dataset))} == {3}


def test_scan_skips_what_the_loader_could_not_convert(tmp_path: Path, helpers, monkeypatch) -> None:
    """A LAB image with a PIL that cannot convert LAB to RGB (older versions): open() and load()
    work, conversion fails. The scan must find that, not the first epoch."""
    root = helpers.make_image_folder(tmp_path / "imgs", {"a": 25, "b": 25})
    lab = root / "a" / "lab.tif"
    Image.new("LAB", (8, 8), (128, 128, 128)).save(lab, "TIFF")
    convert = Image.Image.convert

    def no_lab(self, mode=None, *args, **kwargs):
        if self.mode == "LAB":
            raise ValueError("conversion from LAB to RGB not supported")
        return convert(self, mode, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", no_lab)
    bundle = load_data(str(root))
    assert bundle.report.bad_files == [str(lab)]
    assert bundle.report.skipped_inputs().unreadable_images == 1
    dataset = ImageDataset(bundle.train, lambda image: np.asarray(image))
    assert len([dataset[i] for i in range(len(dataset))]) == len(bundle.train)  # no crash mid-epoch


@pytest.mark.parametrize("mode, fmt, value", [
    ("LAB", "TIFF", (128, 128, 128)), ("CMYK", "JPEG", (0, 0, 0, 0)), ("P", "PNG", 3),
    ("I;16", "PNG", 65535), ("LA", "PNG", (90, 10)), ("1", "PNG", 1), ("YCbCr", "JPEG", (128, 128, 128)),
])
def test_unusual_modes_decode_to_rgb(tmp_path: Path, mode: str, fmt: str, value) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new(mode, (6, 5), value).save(path, fmt)
    image = to_pil_rgb(str(path))
    assert image.mode == "RGB" and image.size == (6, 5)


# ----------------------------------------------------------------------------- decompression bombs


@pytest.mark.parametrize("cap", [5_000, 3_000])  # below PIL's warning zone, and past its 2x error
def test_image_over_the_pixel_cap_is_too_large_not_unreadable(tmp_path: Path, helpers, cap: int) -> None:
    root = helpers.make_image_folder(tmp_path / "imgs", {"a": 25, "b": 25})
    big = helpers.write_png(root / "a" / "big.png", size=80)  # 6,400 pixels
    bundle = load_data(DataOptions(str(root), max_image_pixels=cap))
    assert max_image_pixels() == cap  # set explicitly from the option
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_IMAGE_PIXELS  # PIL's guard never drops below its default
    assert not bundle.report.bad_files and len(bundle.report.too_large) == 1
    entry = bundle.report.too_large[0]
    assert entry.startswith(str(big)) and "too large" in entry and f"limit {cap:,}" in entry
    assert "80 x 80 = 6,400 pixels" in entry  # from the header, before PIL's guard
    assert "raise --max-image-pixels" in entry
    assert bundle.report.skipped_inputs().too_large_images == 1
    assert str(big) not in bundle.train.items + bundle.val.items + bundle.test.items


def test_too_many_large_images_is_an_error_saying_so(tmp_path: Path, helpers) -> None:
    root = helpers.make_image_folder(tmp_path / "imgs", {"a": 5, "b": 5}, ext=".png")
    for i in range(3):
        helpers.write_png(root / "b" / f"huge{i}.png", size=60)
    with pytest.raises(DataError) as info:
        load_data(DataOptions(str(root), max_image_pixels=1_000))
    assert "huge0.png (too large (60 x 60 = 3,600 pixels, limit 1,000; raise --max-image-pixels))" in str(info.value)


def test_too_large_even_when_warnings_are_errors(tmp_path: Path, helpers) -> None:
    big = helpers.write_png(tmp_path / "big.png", size=80)  # 6,400 pixels: PIL's warning zone
    set_max_image_pixels(5_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # python -W error turns PIL's warning into an exception
        with pytest.raises(ImageTooLargeError, match="too large .*limit 5,000"):
            to_pil_rgb(str(big))


def test_a_cap_under_the_models_crop_still_crops(tmp_path: Path, helpers) -> None:
    # PIL checks its guard on every crop too: with the cap as PIL's guard, 1,000 pixels failed
    # on the 224 x 224 centre crop of an 8 x 8 image the cap had let through (a traceback).
    small = helpers.write_png(tmp_path / "small.png")  # 8 x 8 = 64 pixels
    set_max_image_pixels(1_000)
    pre = ImagePreprocessing(resize_size=256, crop_size=224, mean=(0.5,) * 3, std=(0.5,) * 3,
                             interpolation="bilinear")
    assert build_image_transform(pre)(to_pil_rgb(str(small))).shape == (3, 224, 224)


def test_max_image_pixels_is_checked() -> None:
    with pytest.raises(Exception, match="max_image_pixels"):
        DataOptions("x.csv", max_image_pixels=0)


# ----------------------------------------------------------------------------- the CLI


def test_cli_shifted_row_is_one_paragraph(capsys, tmp_path: Path, tiny_bert_dir) -> None:
    path = _write_lines(tmp_path / "t.csv", ["text,label", *_texts()[:4], "good, very good,pos", *_texts()[4:]])
    code, _, err = run_cli(capsys, "train", "--model", f"hf:{tiny_bert_dir}", "--data", path,
                           "--out", tmp_path / "r")
    assert_clean_error(code, err, "Line 6 of", "--skip-bad-rows", "quote")
    assert not (tmp_path / "r").exists()


def test_cli_records_duplicates_and_skipped_rows(capsys, tmp_path: Path, tiny_bert_dir) -> None:
    from conftest import write_sentiment_csv

    path = write_sentiment_csv(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    _write_lines(path, [*lines, *lines[1:6], "bad, row,pos"])  # five copies, one shifted row
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, "-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", path,
                           "--out", out, "--epochs", "1", "--skip-bad-rows")
    assert code == 0, err
    skipped = json.loads((out / "test_metrics.json").read_text())["skipped"]
    assert skipped["duplicates"] == 5 and skipped["bad_rows"] == 1
    log = (out / "train.log").read_text()
    assert "5 duplicate example(s)" in log and "(line 37)" in log
    assert "skip_bad_rows: true" in (out / "config.yaml").read_text()


def test_cli_help_lists_the_new_options(capsys) -> None:
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0 and "--skip-bad-rows" in out and "--max-image-pixels" in out


# ----------------------------------------------------------------------------- streaming tables

_PEAK_RSS_SCRIPT = """
import resource, sys
from pathlib import Path
from transferkit.data.bundle import DataReport
from transferkit.data.readers import Columns
from transferkit.data.tables import read_table

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, after every import
modality, part = read_table(Path(sys.argv[1]), Columns(), DataReport())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(modality, len(part), (after - before) * 1024)
"""


def test_large_table_is_read_as_a_stream(tmp_path: Path) -> None:
    """A 240 MB table of image paths, labels and a long caption: reading it keeps the paths and
    labels (~30 MB of Python strings), not the file, its decoded text or a dict per row."""
    import subprocess
    import sys

    rows, caption = 200_000, "a long caption, " * 75  # ~1.2 kB per row
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("path,label,caption\n")
        f.writelines(f'img/{i:07d}.png,class{i % 10},"{caption}"\n' for i in range(rows))
    size = path.stat().st_size
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS_SCRIPT, str(path)], capture_output=True,
                          text=True, timeout=300, check=True)
    modality, n, growth = done.stdout.split()
    assert (modality, int(n)) == ("image", rows)
    assert int(growth) < size / 5, f"peak RSS grew by {int(growth) / 2**20:.0f} MB reading {size / 2**20:.0f} MB"


_SPLIT_RSS_SCRIPT = """
import resource, sys
from transferkit.data import datasets

# The paths name no files: stop before the image scan opens them (everything else is load_data's).
datasets.drop_bad_images = lambda raw, report, max_bad_fraction: None
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, after every import
bundle = datasets.load_data(sys.argv[1], seed=0)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, bundle.report.duplicates, *bundle.classes)
for split in (bundle.train, bundle.val, bundle.test):
    print(len(split))
    for i in (0, 1, len(split) // 3, len(split) - 1):
        print(split.items[i], bundle.classes[split.labels[i]])
"""


def _write_paths_table(path: Path, rows: int) -> None:
    """``img/0000000.png,class0`` rows, written as one fixed 23-byte layout filled by numpy."""
    row = np.frombuffer(b"img/0000000.png,class0\n", np.uint8)
    with path.open("wb") as f:
        f.write(b"path,label\n")
        for start in range(0, rows, 1 << 20):
            i = np.arange(start, min(rows, start + (1 << 20)))
            block = np.tile(row, (len(i), 1))
            for digit in range(7):
                block[:, 10 - digit] = 48 + i // 10**digit % 10
            block[:, 21] = 48 + i % 10
            f.write(block.tobytes())
        f.write(b"img/0000003.png,class3\nimg/0000004.png,class4\n")  # two copies


def test_table_of_paths_is_read_and_split_in_a_fraction_of_its_size(tmp_path: Path) -> None:
    """A 184 MB table of only image paths and labels (8M rows): reading it, finding its copies
    and splitting it keep the paths in the file (byte offsets, one-byte label codes, a 32-bit
    hash per row while copies are found), not as 8M strings (issue 13: +18.9x the file before)."""
    import subprocess
    import sys

    rows = 8_000_000
    path = tmp_path / "paths.csv"
    _write_paths_table(path, rows)
    size = path.stat().st_size
    done = subprocess.run([sys.executable, "-c", _SPLIT_RSS_SCRIPT, str(path)], capture_output=True,
                          text=True, timeout=300, check=True)
    head, *lines = done.stdout.splitlines()
    growth, duplicates, *classes = head.split()
    assert int(duplicates) == 2 and classes == [f"class{k}" for k in range(10)]
    sizes = [int(line) for line in lines[::5]]
    assert sum(sizes) == rows + 2 and sizes[0] > 0.65 * rows  # the 70/15/15 split
    for line in (line for k, line in enumerate(lines) if k % 5):
        item, label = line.split()
        i = int(Path(item).stem)
        assert item == str(tmp_path / "img" / f"{i:07d}.png") and label == f"class{i % 10}"
    assert int(growth) < size / 3, f"peak RSS grew by {int(growth) / 2**20:.0f} MB for {size / 2**20:.0f} MB"


def test_labels_that_differ_only_in_case_or_number_format_are_named_in_a_warning(tmp_path, digit_folder, tiny_bert_dir) -> None:
    import csv

    import transferkit as tk

    table = tmp_path / "labels.csv"
    with table.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(36):  # " spam" is stripped; the case is kept, so four classes
            writer.writerow([f"good great film {i}" if i % 2 else f"bad terrible film {i}",
                             ("Spam", "spam ", "ham", "Ham", "2", "2.0")[i % 6]])
    bundle = load_data(str(table))
    assert bundle.classes == ["2", "2.0", "Ham", "Spam", "ham", "spam"]
    assert bundle.report.warnings == [
        "labels that differ only in case or in how a number is written are separate classes: 2, 2.0; Ham, ham; "
        "Spam, spam. If they name the same class, write them alike in the data (e.g. all in lower case, whole "
        "numbers without .0) and train again."]
    assert any(line.startswith("data: warning: labels that differ only in case") for line in bundle.report.lines())
    run = tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(table), out=str(tmp_path / "run")))
    assert bundle.report.warnings[0] in json.loads((run.run_dir / "test_metrics.json").read_text())["warnings"]
    assert load_data(str(digit_folder)).report.warnings == []  # distinct names: nothing to say
