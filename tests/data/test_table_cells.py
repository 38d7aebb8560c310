"""TableCells: image paths of a CSV/TSV held as places in the file, read back when used.

The reads must give exactly what the first pass saw: quoted cells over several lines, a BOM,
invalid UTF-8, blank and skipped rows, CR line endings, paths relative to the table's folder."""

from __future__ import annotations

import codecs
import csv
import io
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import load_data
from transferkit.data.bundle import DataReport
from transferkit.data.readers import Columns
from transferkit.data.sequences import Chain, LabelCodes
from transferkit.data.table_cells import STRIDE, TableCells, records, resolve_path
from transferkit.data.tables import read_table
from transferkit.errors import DataError


def _read(path: Path, **options) -> tuple[TableCells, LabelCodes, DataReport]:
    report = DataReport()
    modality, part = read_table(path, Columns(), report, **options)
    assert modality == "image" and isinstance(part.items, TableCells)
    return part.items, part.labels, report


def _table(tmp_path: Path, rows: list[str], header: str = "path,label", name: str = "t.csv",
           prefix: bytes = b"", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(prefix + (newline.join([header, *rows]) + newline).encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- what is read back


def test_items_are_read_back_as_the_first_pass_saw_them(tmp_path: Path) -> None:
    rows = [f"img/{i:03d}.png,{'ab'[i % 2]}" for i in range(3 * STRIDE + 5)]
    cells, labels, _ = _read(_table(tmp_path, rows))
    expected = [str(tmp_path / "img" / f"{i:03d}.png") for i in range(len(rows))]
    assert len(cells) == len(rows) and list(cells) == expected
    assert [cells[i] for i in range(len(rows))] == expected  # random reads, each block
    assert cells[-1] == expected[-1] and list(labels) == ["ab"[i % 2] for i in range(len(rows))]
    with pytest.raises(IndexError):
        cells[len(rows)]


def test_quoted_cells_over_lines_bom_crlf_and_blank_rows(tmp_path: Path) -> None:
    """Offsets are where each record starts, also when a quoted cell spans lines."""
    rows = []
    for i in range(2 * STRIDE + 3):
        if i % 7 == 0:
            rows.append(f'"img/new\nline {i}.png",a')  # a path with a line break inside quotes
        elif i % 7 == 3:
            rows.append(f'"img/{i}, with comma.png","b"')
        else:
            rows.append(f"img/{i}.png,{'ab'[i % 2]}")
        if i % 5 == 0:
            rows.append("")  # blank lines are not rows
    path = _table(tmp_path, rows, prefix=codecs.BOM_UTF8, newline="\r\n")
    cells, _, _ = _read(path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        expected = [os.path.abspath(os.path.join(tmp_path, r[0])) for r in list(csv.reader(f))[1:] if r]
    assert list(cells) == expected
    assert [cells[i] for i in reversed(range(len(cells)))] == expected[::-1]
    assert cells[0] == str(tmp_path / "img" / "new\nline 0.png")


def test_invalid_utf8_is_replaced_the_same_way_when_read_back(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"path,label\n" + b"".join(b"img/caf\xe9%d.png,a\nimg/%d.png,b\n" % (i, i) for i in range(40)))
    cells, _, report = _read(path)
    assert cells[0] == str(tmp_path / "img" / "caf\ufffd0.png") and cells[1] == str(tmp_path / "img" / "0.png")
    assert list(cells)[78] == str(tmp_path / "img" / "caf\ufffd39.png")
    assert report.replaced_text[:2] == [f"{path} (row 1)", f"{path} (row 3)"]


def test_dropped_and_skipped_rows_are_skipped_when_read_back(tmp_path: Path) -> None:
    rows = []
    for i in range(3 * STRIDE):
        rows.append(f"img/{i}.png,a")
        rows.append(",b" if i % 3 == 0 else f"img/x{i}.png," if i % 3 == 1 else f"img/{i}.png,a,extra")
    cells, _, report = _read(_table(tmp_path, rows), skip_bad_rows=True)
    assert list(cells) == [str(tmp_path / "img" / f"{i}.png") for i in range(3 * STRIDE)]
    assert cells[2 * STRIDE + 1] == str(tmp_path / "img" / f"{2 * STRIDE + 1}.png")
    assert len(report.bad_rows) == STRIDE


def test_lone_cr_line_endings_and_tsv(tmp_path: Path) -> None:
    path = _table(tmp_path, [f"{i}.png\t{'ab'[i % 2]}" for i in range(50)], header="path\tlabel",
                  name="t.tsv", newline="\r")
    cells, labels, _ = _read(path)
    assert list(cells) == [str(tmp_path / f"{i}.png") for i in range(50)] and labels[49] == "b"
    assert cells[37] == str(tmp_path / "37.png")


@pytest.mark.parametrize("cell, expected", [
    ("img/a.png", "/data/img/a.png"),
    ("  img/a.png ", "/data/img/a.png"),
    ("./img/../a.png", "/data/a.png"),
    ("img//a.png", "/data/img/a.png"),
    ("/abs/a.png", "/abs/a.png"),
    (".hidden/a.png", "/data/.hidden/a.png"),
    ("img/", "/data/img"),
])
def test_paths_resolve_relative_to_the_tables_folder(cell: str, expected: str) -> None:
    assert resolve_path(cell, "/data/") == expected
    assert resolve_path(cell, "/data/") == os.path.abspath(os.path.join("/data", cell.strip()))


def test_relative_table_path_resolves_against_its_folder_not_a_later_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "sub").mkdir()
    _table(tmp_path / "sub", ["x/1.png,a", "x/2.png,b"])
    monkeypatch.chdir(tmp_path)
    cells, _, _ = _read(Path("sub/t.csv"))
    monkeypatch.chdir(tmp_path / "sub")
    assert list(cells) == [str(tmp_path / "sub" / "x" / "1.png"), str(tmp_path / "sub" / "x" / "2.png")]


def test_record_offsets_restart_parsing_anywhere() -> None:
    data = b'\xef\xbb\xbfa,b\r\n"x\ny",1\rz,"2\r\n3"\n\nlast,4'
    found = list(records(io.BytesIO(data), 0, ",", "strict"))
    assert [v for _, _, v in found] == [["a", "b"], ["x\ny", "1"], ["z", "2\r\n3"], [], ["last", "4"]]
    assert [line for _, line, _ in found] == [1, 2, 4, 6, 7]
    for k, (offset, _, _) in enumerate(found):
        assert [v for _, _, v in records(io.BytesIO(data), offset, ",", "strict")] == [v for _, _, v in found[k:]]


# ----------------------------------------------------------------------------- selections


def test_slices_index_arrays_masks_and_pickling(tmp_path: Path) -> None:
    n = 5 * STRIDE + 7
    cells, _, _ = _read(_table(tmp_path, [f"{i}.png,{i % 3}" for i in range(n)]))
    expected = [str(tmp_path / f"{i}.png") for i in range(n)]
    assert list(cells[10:20]) == expected[10:20] and list(cells[::-3]) == expected[::-3]
    picks = np.array([150, 3, 3, 77, -1])
    assert list(cells[picks]) == [expected[i] for i in picks] and cells[picks][2] == expected[3]
    which = np.arange(n, dtype=np.uint8) % 3
    for k in range(3):
        part = cells.select(which, k)
        assert len(part) == len(expected[k::3]) and list(part) == expected[k::3]
        assert [part[j] for j in range(0, len(part), 7)] == expected[k::3][::7]
        inner = part.select(np.arange(len(part)) % 2 == 0)  # a selection of a selection
        assert list(inner) == expected[k::6] and inner[-1] == expected[k::6][-1]
        assert list(part[np.arange(len(part))[::-2]]) == expected[k::3][::-2]  # many: listed once
    again = pickle.loads(pickle.dumps(cells.select(which, 1)[5:40]))  # what a DataLoader worker gets
    assert list(again) == expected[1::3][5:40]
    assert cells[:3] == expected[:3] and cells[:2] + ["x"] == expected[:2] + ["x"]
    assert expected[7] in cells and "nope" not in cells[:5]


def test_a_changed_table_is_refused_when_read_back(tmp_path: Path) -> None:
    path = _table(tmp_path, [f"{i}.png,a" for i in range(10)])
    cells, _, _ = _read(path)
    path.write_text("path,label\nother.png,a\n")
    with pytest.raises(DataError, match="changed after it was read"):
        cells[3]


def test_split_data_keeps_table_cells_and_compact_labels(tmp_path: Path, monkeypatch) -> None:
    from transferkit.data import datasets

    monkeypatch.setattr(datasets, "drop_bad_images", lambda raw, report, max_bad_fraction: None)  # no files
    rows = [f"img/{i}.png,{'cat' if i % 3 else 'dog'}" for i in range(300)] + ["img/5.png,cat"] * 2
    bundle = load_data(str(_table(tmp_path, rows)), seed=0)
    assert bundle.report.duplicates == 2
    for split in (bundle.train, bundle.val, bundle.test):
        assert isinstance(split.items, TableCells) and isinstance(split.labels, np.ndarray)
        assert split.labels.itemsize == 1
        for path, label in zip(split.items, split.labels.tolist(), strict=True):
            i = int(Path(path).stem)
            assert bundle.classes[label] == ("cat" if i % 3 else "dog")
    paths = list(bundle.train.items) + list(bundle.val.items) + list(bundle.test.items)
    assert len(paths) == 302 and len(set(paths)) == 300
    sub = bundle.train.subset([4, 0, 4])
    assert list(sub.items) == [bundle.train.items[4], bundle.train.items[0], bundle.train.items[4]]
    assert sub.labels.tolist() == [bundle.train.labels[4], bundle.train.labels[0], bundle.train.labels[4]]


def test_label_codes_and_chain() -> None:
    labels = LabelCodes(np.array([1, 0, 1, 2], np.uint8), ["cat", "dog", "eel"])
    assert list(labels) == ["dog", "cat", "dog", "eel"] and labels[3] == "eel"
    assert labels[1:3] == ["cat", "dog"] and labels[np.array([True, False, False, True])] == ["dog", "eel"]
    both = LabelCodes.concat([labels, ["eel", "fox"]])
    assert list(both) == ["dog", "cat", "dog", "eel", "eel", "fox"]
    chain = Chain([["a", "b"], ("c",), ["d", "e"]])
    assert list(chain) == ["a", "b", "c", "d", "e"] and chain[3] == "d" and chain[-1] == "e"
    assert list(chain[np.array([0, 3, 4])]) == ["a", "d", "e"] and chain[np.array([4, 0])] == ["e", "a"]


def test_random_tables_read_back_exactly(tmp_path: Path) -> None:
    """Random tables of awkward cells: every read gives what csv + os.path give for the file."""
    rng = random.Random(0)
    pieces = ["a", "b", " ", "/", "./", "../", "é", ",", '"', "\n", "\r\n", "x.png", "\t"]
    for trial in range(20):
        rows = []
        for i in range(rng.randint(1, 3 * STRIDE)):
            cell = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) + f"{i}.png"
            rows.append([cell, rng.choice(["a", "b", " ", ""])])
        path = tmp_path / f"r{trial}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator=rng.choice(["\n", "\r\n"])).writerows([["path", "label"], *rows])
        kept = [os.path.abspath(os.path.join(tmp_path, p.strip())) for p, y in rows if p.strip() and y.strip()]
        if not kept:
            continue
        cells, _, _ = _read(path)
        assert list(cells) == kept
        order = list(range(len(kept)))
        rng.shuffle(order)
        assert [cells[i] for i in order] == [kept[i] for i in order]
        assert list(cells[np.array(order)]) == [kept[i] for i in order]


def test_image_scan_decodes_each_distinct_path_once_and_drops_the_broken(tmp_path: Path, helpers,
                                                                         monkeypatch) -> None:
    from transferkit.data import readers

    for i in range(30):
        helpers.write_png(tmp_path / "img" / f"{i}.png")
    (tmp_path / "img" / "29.png").write_bytes(b"not an image")
    rows = [f"img/{i % 30}.png,{'ab'[i % 30 % 2]}" for i in range(90)]  # three copies of each
    decoded: list[str] = []
    decode = readers._decode_error
    monkeypatch.setattr(readers, "_decode_error", lambda path: decoded.append(path) or decode(path))
    bundle = load_data(str(_table(tmp_path, rows)), seed=0)
    assert sorted(decoded) == sorted(str(tmp_path / "img" / f"{i}.png") for i in range(30))
    assert bundle.report.bad_files == [str(tmp_path / "img" / "29.png")]
    assert bundle.report.n_scanned == 1 + 30 and bundle.report.duplicates == 58
    items = [item for split in (bundle.train, bundle.val, bundle.test) for item in split.items]
    assert isinstance(bundle.train.items, TableCells) and len(items) == 87
    assert str(tmp_path / "img" / "29.png") not in items
