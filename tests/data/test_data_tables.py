"""CSV/TSV/JSONL data: text and image paths, explicit split files, column errors, encodings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from transferkit.data import load_data
from transferkit.data.tables import read_column
from transferkit.errors import DataError


def _write_table(path: Path, rows: list[dict], fmt: str) -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ","
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


def _texts(label_counts: dict[str, int]) -> list[dict]:
    return [
        {"text": f"{lab}, item {i}", "label": lab}
        for lab, n in label_counts.items()
        for i in range(n)
    ]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_text_tables(tmp_path: Path, fmt: str) -> None:
    path = _write_table(tmp_path / f"data.{fmt}", _texts({"pos": 10, "neg": 10}), fmt)
    bundle = load_data(str(path), seed=0)
    assert bundle.modality == "text" and bundle.classes == ["neg", "pos"]
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (14, 3, 3)
    every = dict(
        zip(
            bundle.train.items + bundle.val.items + bundle.test.items,
            bundle.train.labels + bundle.val.labels + bundle.test.labels,
            strict=True,
        )
    )
    assert every["pos, item 3"] == 1 and every["neg, item 0"] == 0  # commas survive CSV quoting


def test_custom_column_names_and_json_array(tmp_path: Path) -> None:
    rows = [{"Review": f"r{i}", "stars": str(i % 3)} for i in range(12)]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    bundle = load_data(str(path), text_column="review", label_column="stars")  # case-insensitive
    assert bundle.classes == ["0", "1", "2"] and bundle.modality == "text"


def test_csv_of_image_paths(tmp_path: Path, helpers) -> None:
    rows = []
    for label in ("cat", "dog"):
        for i in range(6):
            helpers.write_png(tmp_path / "imgs" / f"{label}{i}.png")
            rows.append({"path": f"imgs/{label}{i}.png", "label": label})
    absolute = helpers.write_png(tmp_path / "elsewhere" / "abs.png")
    rows.append({"path": str(absolute), "label": "dog"})
    path = _write_table(tmp_path / "images.csv", rows, "csv")
    bundle = load_data(str(path))
    items = bundle.train.items + bundle.val.items + bundle.test.items
    assert bundle.modality == "image" and len(items) == 13
    assert str(absolute) in items and str(tmp_path / "imgs" / "cat0.png") in items


def test_missing_image_in_csv_counts_as_bad(tmp_path: Path, helpers) -> None:
    rows = [{"path": f"{i}.png", "label": "ab"[i % 2]} for i in range(30)]
    for i in range(29):
        helpers.write_png(tmp_path / f"{i}.png")
    bundle = load_data(str(_write_table(tmp_path / "d.csv", rows, "csv")))
    assert bundle.report.bad_files == [str(tmp_path / "29.png")]


@pytest.mark.parametrize(
    "rows, kwargs, fragments",
    [
        ([{"text": "a", "y": "1"}], {}, ["no label column 'label'", "text, y", "--label-column"]),
        (
            [{"body": "a", "label": "1"}],
            {},
            ["no text column 'text'", "image path column 'path'", "--text-column", "--path-column"],
        ),
        ([{"text": "a", "label": "1"}], {"label_column": "target"}, ["no label column 'target'"]),
        (
            [{"sentence": "a", "cls": "1"}],
            {},
            ["no text column", "and no label column", "sentence, cls"],
        ),
    ],
    ids=["no-label", "no-text-or-path", "wrong-label-option", "neither"],
)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_missing_columns(tmp_path: Path, rows, kwargs, fragments, fmt: str) -> None:
    path = _write_table(tmp_path / f"d.{fmt}", rows * 4, fmt)
    with pytest.raises(DataError) as err:
        load_data(str(path), **kwargs)
    for fragment in fragments:
        assert fragment in str(err.value)


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("empty.csv", "", "no data rows"),
        ("header.csv", "text,label\n", "no data rows"),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{oops\n', "Line 2"),
        ("list.jsonl", '["a", "x"]\n', "not a JSON object"),
        ("data.xlsx", "whatever", "not a data file"),
        ("one.csv", "text,label\na,x\nb,x\n", "at least two classes"),
        ("blank.csv", "text,label\n ,x\n,y\n", "no row with both"),
    ],
)
def test_bad_tables(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=fragment):
        load_data(str(tmp_path / name))


def test_empty_text_and_label_rows_are_dropped_and_noted(tmp_path: Path) -> None:
    rows = _texts({"a": 5, "b": 5}) + [
        {"text": "   ", "label": "a"},
        {"text": "no label", "label": ""},
    ]
    bundle = load_data(str(_write_table(tmp_path / "d.csv", rows, "csv")))
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 10
    notes = " ".join(bundle.report.notes)
    assert "1 row(s) with an empty text" in notes and "1 row(s) without a label" in notes


def test_non_utf8_csv_is_decoded_with_replacement(tmp_path: Path) -> None:
    lines = ["text,label"] + [f"fine {i},{'ab'[i % 2]}" for i in range(10)] + ["caf\xe9 cr\xe8me,a"]
    path = tmp_path / "latin1.csv"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    bundle = load_data(str(path))
    assert bundle.report.replaced_text == [f"{path} (row 11)"]
    assert "caf\ufffd cr\ufffdme" in bundle.train.items + bundle.val.items + bundle.test.items


@pytest.mark.parametrize("delimiter", [";", "|", "\t"])
def test_csv_written_with_another_delimiter(tmp_path: Path, delimiter: str) -> None:
    # Spreadsheets in locales whose decimal mark is the comma save "CSV" with semicolons: the
    # header line, which holds no comma, tells the delimiter; a quoted comma stays in its cell.
    rows = "".join(f'"film {i}, in short"{delimiter}{"ab"[i % 2]}\n' for i in range(10))
    path = tmp_path / "semi.csv"
    path.write_bytes((f"text{delimiter}label\n" + rows).encode("utf-8-sig"))
    bundle = load_data(str(path), seed=0)
    assert bundle.classes == ["a", "b"]
    items = bundle.train.items + bundle.val.items + bundle.test.items
    assert sorted(items) == sorted(f"film {i}, in short" for i in range(10))


def test_utf8_bom_and_long_fields(tmp_path: Path) -> None:
    long_text = "word " * 40000  # 200 kB: above csv's default field limit
    path = tmp_path / "bom.csv"
    rows = "".join(f'"{long_text}{i}",{"ab"[i % 2]}\n' for i in range(6))
    path.write_bytes(("text,label\n" + rows).encode("utf-8-sig"))
    bundle = load_data(str(path))
    assert bundle.classes == ["a", "b"] and not bundle.report.replaced_text


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
@pytest.mark.parametrize("present", [("train", "val", "test"), ("train", "test"), ("train", "val")])
def test_explicit_split_files(tmp_path: Path, fmt: str, present: tuple[str, ...]) -> None:
    sizes = {"train": 10, "val": 3, "test": 4}
    for split in present:
        rows = [
            {"text": f"{split} {lab} {i}", "label": lab}
            for lab in "xy"
            for i in range(sizes[split])
        ]
        _write_table(tmp_path / f"{split}.{fmt}", rows, fmt)
    bundle = load_data(str(tmp_path))
    for split in present:
        got = getattr(bundle, split)
        assert all(t.startswith(split) for t in got.items)
        if split != "train" or len(present) == 3:  # train shrinks when val/test is carved from it
            assert len(got) == 2 * sizes[split]
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == sum(
        2 * sizes[s] for s in present
    )
    missing = ({"val", "test"} - set(present)).pop() if len(present) == 2 else None
    if missing:  # carved from the train file, stratified
        assert len(getattr(bundle, missing)) == 3 and set(getattr(bundle, missing).labels) == {0, 1}
        assert all(t.startswith("train") for t in getattr(bundle, missing).items)


def test_split_files_without_train_is_an_error(tmp_path: Path) -> None:
    _write_table(tmp_path / "test.csv", _texts({"a": 2, "b": 2}), "csv")
    with pytest.raises(DataError, match="no train table"):
        load_data(str(tmp_path))


# -- one column, no labels: what predict reads from a table ------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_read_column_reads_one_column_without_labels(tmp_path: Path, fmt: str) -> None:
    rows = [{"id": "1", "Review": "good, very good"}, {"id": "2", "Review": " "}, {"id": "3", "Review": "bad"}]
    path = _write_table(tmp_path / f"new.{fmt}", rows, fmt)
    first = 1 if fmt == "jsonl" else 2  # a CSV's first data row is line 2, after the header
    assert read_column(path, "review") == [(first, "good, very good"), (first + 2, "bad")]  # case-insensitive


def test_read_column_bad_tables(tmp_path: Path) -> None:
    semicolons = tmp_path / "excel.csv"  # a spreadsheet's "CSV" in a comma-decimal locale, with a BOM
    semicolons.write_bytes("\ufefftext;score\ngreat;0,9\n".encode())
    assert read_column(semicolons, "text") == [(2, "great")]
    wide = tmp_path / "wide.csv"
    wide.write_text("text,id\nok,1\nbad, unquoted,2\n")
    with pytest.raises(DataError, match="Line 3 of .* has 3 fields but the header has 2"):
        read_column(wide, "text")
    with pytest.raises(DataError, match=r"no column 'body'; its columns are: text, id\. .* --column NAME"):
        read_column(wide, "body")
    empty = tmp_path / "empty.csv"
    empty.write_text("text\n\n  \n")
    with pytest.raises(DataError, match="no row with a 'text' value"):
        read_column(empty, "text")
    with pytest.raises(DataError, match="not a table"):
        read_column(tmp_path / "notes.txt", "text")
