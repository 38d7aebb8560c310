"""CSV/TSV/JSONL data: text with labels, or image paths with labels.

The modality follows the columns: a text column means text data, else a path column means
image data (paths relative to the table's folder, or absolute).

Tables are read as a stream: only the value and label cells of each row are kept, so a table
of many columns (or a very long one) needs memory for what is kept, not for the file. The
image paths of a CSV/TSV are not kept either: a ``TableCells`` reads them back from the file
when they are used, and the labels are one-byte codes (``table_cells.py``), so a table of
paths and labels needs a few bytes per row.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import itertools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from transferkit.data.bundle import DataReport, format_list
from transferkit.data.readers import SPLIT_NAMES, Columns, Part, RawData
from transferkit.data.table_cells import (
    CsvLayout,
    PathTableBuilder,
    csv_cells,
    is_blank,
    records,
    resolve_path,
    table_folder,
)
from transferkit.errors import DataError

__all__ = ["TABLE_EXTENSIONS", "read_table", "read_column", "find_split_files", "read_split_files"]

# Extension -> CSV delimiter (None: JSON lines, or a JSON array of objects for .json).
TABLE_EXTENSIONS: dict[str, str | None] = {
    ".csv": ",",
    ".tsv": "\t",
    ".tab": "\t",
    ".jsonl": None,
    ".ndjson": None,
    ".json": None,
}
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}
# A .csv whose header has no comma but one of these was written with it (a spreadsheet in a
# locale whose decimal mark is the comma saves "CSV" with semicolons).
_OTHER_CSV_DELIMITERS = (";", "\t", "|")

_OPTIONS_HINT = (
    "Name the columns with --text-column NAME (text data), --path-column NAME (image paths) "
    "and --label-column NAME."
)

# Invalid UTF-8 is replaced (U+FFFD) while the stream decodes; this per-thread counter tells a
# replaced byte from a U+FFFD that the file really contains.
_replaced = threading.local()
_REPLACE_ERRORS = "transferkit-count-replace"


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    _replaced.count = getattr(_replaced, "count", 0) + 1
    return "\ufffd", exc.end  # type: ignore[attr-defined]


codecs.register_error(_REPLACE_ERRORS, _count_and_replace)


def _open_text(path: Path, binary: bool = False) -> IO[Any]:
    """The table as a text stream (UTF-8, BOM dropped, invalid bytes counted and replaced), or
    as bytes for ``table_cells.records`` (which decodes the same way, keeping byte offsets)."""
    try:
        if binary:
            return open(path, "rb")
        return open(path, encoding="utf-8-sig", errors=_REPLACE_ERRORS, newline="")
    except OSError as exc:
        raise DataError(
            f"Cannot read {path} ({exc.strerror or exc}). Check that the file exists and is "
            "readable."
        ) from exc


@dataclass
class _Reading:
    """What one pass over a table found besides its rows."""

    path: Path
    skip_bad_rows: bool
    header: list[str] = field(default_factory=list)
    bad_rows: list[str] = field(default_factory=list)  # "file (line N)"
    fffd_rows: list[int] = field(default_factory=list)  # rows holding U+FFFD
    stamp: os.stat_result | None = None  # of a CSV/TSV file as it was opened
    layout: CsvLayout | None = None  # of a CSV/TSV file, once its columns are known


def _too_many_fields(reading: _Reading, line: int, values: list[str], delimiter: str) -> None:
    """Skip-and-count, or refuse, a row with more fields than the header: with an unquoted
    delimiter in a cell, every later cell shifts and the label column holds something else."""
    if reading.skip_bad_rows:
        reading.bad_rows.append(f"{reading.path} (line {line})")
        return
    name = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
    shown = delimiter.join(values)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise DataError(
        f"Line {line} of {reading.path} has {len(values)} fields but the header has "
        f"{len(reading.header)} ({delimiter.join(reading.header)}): a cell probably holds an "
        f"unquoted {name}, which would shift the label column and train on a wrong label "
        f"({shown!r}). Put double quotes around cells that contain a {name} "
        f'(e.g. "good, really good",pos), or pass --skip-bad-rows to skip such rows (they are '
        "counted in the log)."
    )


def _json_error(path: Path, number: int, exc: json.JSONDecodeError) -> DataError:
    return DataError(
        f"Line {number} of {path} is not valid JSON ({exc.msg}). Each line of a JSONL "
        'file must be one JSON object, e.g. {"text": "great film", "label": "pos"}.'
    )


def _json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(number, record)`` of a JSON-lines file, or of a JSON array (which json reads whole)."""
    with _open_text(path) as stream:
        start = stream.read(4096).lstrip()
        stream.seek(0)
        if path.suffix.lower() == ".json" and start.startswith("["):
            try:
                records = json.load(stream)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path} is not valid JSON ({exc}). Fix the file or save it as JSON lines."
                ) from exc
            yield from enumerate(records, start=1)
            return
        for number, line in enumerate(stream, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _json_error(path, number, exc) from exc


def _json_rows(path: Path, reading: _Reading) -> Iterator[tuple[int, None, dict[str, Any]]]:
    """JSON records as rows ``(number, None, record)``, checked to be objects."""
    for number, record in _json_records(path):
        if not isinstance(record, dict):
            raise DataError(
                f"Record {number} of {path} is a {type(record).__name__}, not a JSON object. Write "
                'one object per record, e.g. {"text": "great film", "label": "pos"}.'
            )
        yield number, None, record


def _json_header(path: Path) -> list[str]:
    """Every key of a JSON table, in order of appearance: one pass that keeps nothing else."""
    seen: dict[str, None] = {}
    for _, _, record in _json_rows(path, _Reading(path, False)):
        seen.update(dict.fromkeys(record))
    return list(seen)


def _delimiter(path: Path) -> str | None:
    """The table's delimiter: by extension, except a .csv whose header line holds no comma but
    a semicolon, tab or pipe."""
    delimiter = TABLE_EXTENSIONS[path.suffix.lower()]
    if delimiter != ",":
        return delimiter
    with _open_text(path, binary=True) as f:
        header = f.readline(1 << 16).decode("utf-8", "replace")
    if "," in header:
        return delimiter
    return next((d for d in _OTHER_CSV_DELIMITERS if d in header), delimiter)


def _open_rows(
    path: Path, reading: _Reading, columns: Columns, stack: contextlib.ExitStack
) -> tuple[str, str, str, Iterator[tuple[int, int | None, str, str]]]:
    """``(modality, value column, label column, rows)`` of any table, rows as ``(number, byte
    offset or None, value cell, label cell)``, a stream; ``stack`` closes the file.

    The first row is read before the columns are checked, so an empty table or a refused first
    row is reported as such, whatever its columns.
    """
    delimiter = _delimiter(path)
    if delimiter is None:
        reading.header = _json_header(path)
        records_ = _json_rows(path, reading)
        first = next(records_, None)
    else:
        f = stack.enter_context(_open_text(path, binary=True))
        reading.stamp = os.fstat(f.fileno())
        records_ = records(f, 0, delimiter, _REPLACE_ERRORS)
        header = next(records_, None)
        reading.header = [h.strip() for h in header[2]] if header else []
        first, wide = _first_record(records_, reading, delimiter)
    if not reading.header or first is None:
        skipped = f" ({len(reading.bad_rows)} skipped: too many fields)" if reading.bad_rows else ""
        raise DataError(
            f"{path} has no data rows{skipped}. Write a header line (e.g. text,label) and one "
            "row per example."
        )
    modality, value_col, label_col = _columns(path, reading.header, columns)
    rows = itertools.chain([first], records_)  # C-level: no Python layer per row
    if delimiter is None:
        return modality, value_col, label_col, (
            (n, None, _cell(r, value_col), _cell(r, label_col)) for n, _, r in rows)
    reading.layout = CsvLayout.of(reading.header, delimiter, value_col, label_col)
    on_wide = functools.partial(_too_many_fields, reading, delimiter=delimiter)
    return modality, value_col, label_col, csv_cells(rows, reading.layout, on_wide, numbered=wide)


def _first_record(
    records_: Iterator[tuple[int, int, list[str]]], reading: _Reading, delimiter: str
) -> tuple[tuple[int, int, list[str]] | None, int]:
    """The first record that is a row (not blank; a wider one is refused or skipped and counted
    here), and how many wider rows came before it."""
    wide = 0
    for record in records_:
        _, line, values = record
        if is_blank(values):
            continue
        if len(values) <= len(reading.header):
            return record, wide
        wide += 1
        _too_many_fields(reading, line, values, delimiter)
    return None, wide


def _find_column(header: list[str], name: str) -> str | None:
    # Exact match first; a unique case-insensitive match ("Text" for "text") is accepted too.
    if name in header:
        return name
    matches = [h for h in header if h.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    return "" if value is None else str(value)


def _columns(path: Path, header: list[str], columns: Columns) -> tuple[str, str, str]:
    """``(modality, value column, label column)`` found in ``header``.

    Raises:
        DataError: no text or path column, or no label column.
    """
    label_col = _find_column(header, columns.label)
    text_col = _find_column(header, columns.text)
    path_col = _find_column(header, columns.path) if text_col is None else None
    missing = []
    if text_col is None and path_col is None:
        missing.append(f"no text column {columns.text!r} and no image path column {columns.path!r}")
    if label_col is None:
        missing.append(f"no label column {columns.label!r}")
    if label_col is None or (text_col is None and path_col is None):
        raise DataError(
            f"{path} has {' and '.join(missing)}; its columns are: {', '.join(header)}. "
            f"{_OPTIONS_HINT}"
        )
    if text_col is not None:
        return "text", text_col, label_col
    return "image", str(path_col), label_col


def read_table(
    path: Path, columns: Columns, report: DataReport, *, skip_bad_rows: bool = False
) -> tuple[str, Part]:
    """Read a CSV/TSV/JSONL table of texts or image paths with labels, as a stream.

    Non-UTF-8 bytes are replaced (the affected rows are listed in ``report.replaced_text``);
    rows with an empty text, path or label are dropped and noted. A CSV/TSV row with more
    fields than the header (an unquoted delimiter in a cell) is an error, or with
    ``skip_bad_rows`` skipped and listed in ``report.bad_rows``.

    Args:
        path: the table file.
        columns: the text, label and path column names.
        report: receives counts and notes.
        skip_bad_rows: skip rows with too many fields instead of refusing the table.

    Returns:
        ``(modality, part)``; image items are absolute paths, not yet decoded.

    Raises:
        DataError: unknown file type, empty file, bad JSON, missing columns, or a row with more
            fields than the header.

    Example:
        >>> modality, part = read_table(Path("reviews.csv"), Columns(), DataReport())  # doctest: +SKIP
        >>> modality, part.labels[:2]  # doctest: +SKIP
        ('text', ['pos', 'neg'])
    """
    if path.suffix.lower() not in TABLE_EXTENSIONS:
        raise DataError(
            f"{path} is not a data file transferkit reads (use .csv, .tsv, .jsonl or .json), nor a "
            "folder. Pass a folder of class sub-folders of images, or a table with a label column."
        )
    report.n_scanned += 1
    reading = _Reading(path, skip_bad_rows)
    replaced_before = getattr(_replaced, "count", 0)
    with contextlib.ExitStack() as stack:  # closes the file now, also when a row is refused
        modality, value_col, label_col, rows = _open_rows(path, reading, columns, stack)
        part, no_value, no_label = _collect(path, modality, reading, rows)
    report.bad_rows.extend(reading.bad_rows)
    if getattr(_replaced, "count", 0) != replaced_before:
        report.replaced_text.extend([f"{path} (row {n})" for n in reading.fffd_rows] or [str(path)])
    if no_value:
        what = "text" if modality == "text" else "image path"
        report.notes.append(
            f"{path}: dropped {len(no_value)} row(s) with an empty {what}: "
            f"rows {format_list(no_value)}"
        )
    if no_label:
        report.notes.append(
            f"{path}: dropped {len(no_label)} row(s) without a label: rows {format_list(no_label)}"
        )
    if not len(part.items):
        raise DataError(
            f"{path} has no row with both a {value_col!r} value and a {label_col!r} label. Fill in "
            f"those columns. {_OPTIONS_HINT}"
        )
    return modality, part


def read_column(path: Path, column: str, option: str = "--column") -> list[tuple[int, str]]:
    """``(row number, cell)`` of one column of a CSV/TSV/JSONL table, as training reads tables
    (delimiter, BOM, replaced bytes, a row wider than the header refused) but with no label
    column: what ``predict`` reads from a table. Rows whose cell is empty are left out.

    Raises:
        DataError: not a table, no data rows, no such column (``option`` names the fix), or a
            row with more fields than the header.

    Example:
        >>> read_column(Path("new_reviews.csv"), "text")[:1]  # doctest: +SKIP
        [(2, 'a great film')]
    """
    if path.suffix.lower() not in TABLE_EXTENSIONS:
        raise DataError(f"{path} is not a table transferkit reads (.csv, .tsv, .jsonl or .json).")
    reading = _Reading(path, False)
    delimiter = _delimiter(path)
    with contextlib.ExitStack() as stack:
        if delimiter is None:
            reading.header = _json_header(path)
            rows: Iterator[tuple[int, Any]] = ((n, r) for n, _, r in _json_rows(path, reading))
        else:
            f = stack.enter_context(_open_text(path, binary=True))
            found = records(f, 0, delimiter, _REPLACE_ERRORS)
            header = next(found, None)
            reading.header = [h.strip() for h in header[2]] if header else []
            rows = ((line, values) for _, line, values in found if not is_blank(values))
        name = _find_column(reading.header, column)
        if name is None:
            raise DataError(f"{path} has no column {column!r}; its columns are: "
                            f"{', '.join(reading.header) or 'none'}. Name the column to read with {option} NAME.")
        at = reading.header.index(name)
        cells = []
        for number, row in rows:
            if delimiter is not None and len(row) > len(reading.header):
                _too_many_fields(reading, number, row, delimiter)
            value = _cell(row, name) if delimiter is None else (row[at] if at < len(row) else "")
            if value.strip():
                cells.append((number, value))
    if not cells:
        raise DataError(f"{path} has no row with a {name!r} value; fill in that column.")
    return cells


def _collect(
    path: Path, modality: str, reading: _Reading, rows: Iterator[tuple[int, int | None, str, str]]
) -> tuple[Part, list[int], list[int]]:
    """Keep the value and label of each row: ``(part, rows without value, rows without label)``.

    A CSV/TSV of image paths goes into a ``PathTableBuilder``: its items become ``TableCells``
    and its labels ``LabelCodes``; other tables keep lists of strings.
    """
    paths = None
    if modality == "image" and reading.layout is not None and reading.stamp is not None:
        paths = PathTableBuilder(path, reading.layout, reading.stamp)
    items: list[str] = []
    labels: list[str] = []
    no_value: list[int] = []
    no_label: list[int] = []
    names: dict[str, str] = {}  # one string object per class, not one per row
    folder = table_folder(path)
    for number, offset, value, label in rows:
        label = label.strip()
        if "\ufffd" in value or "\ufffd" in label:
            reading.fffd_rows.append(number)
        if not value.strip():
            no_value.append(number)
        elif not label:
            no_label.append(number)
        elif paths is not None:
            paths.add(offset, value, label)  # type: ignore[arg-type]  # CSV rows have offsets
        else:
            # Relative paths are relative to the table, so a dataset folder can move as a whole.
            items.append(resolve_path(value, folder) if modality == "image" else value)
            labels.append(names.setdefault(label, label))
    if paths is not None:
        cells, codes = paths.finish()
        return Part(items=cells, labels=codes), no_value, no_label
    return Part(items=items, labels=labels), no_value, no_label


def find_split_files(folder: Path) -> dict[str, Path]:
    """``{"train": train.csv, ...}`` when ``folder`` holds explicit split tables, else ``{}``.

    Raises:
        DataError: val/test tables exist but no train table.
    """
    found: dict[str, Path] = {}
    for name in sorted(SPLIT_NAMES, key=lambda d: (d != SPLIT_NAMES[d], d)):
        for ext in TABLE_EXTENSIONS:
            candidate = folder / f"{name}{ext}"
            if candidate.is_file():
                found.setdefault(SPLIT_NAMES[name], candidate)
    if found and "train" not in found:
        raise DataError(
            f"{folder} holds {format_list([p.name for p in found.values()])} but no train table. "
            "Add train.csv (or .tsv/.jsonl) next to them, or pass the table file itself."
        )
    return found


def read_split_files(
    folder: Path, files: dict[str, Path], columns: Columns, report: DataReport, *,
    skip_bad_rows: bool = False,
) -> RawData:
    """Read explicit ``train``/``val``/``test`` tables from one folder.

    Raises:
        DataError: the tables mix text and image data.
    """
    modalities: dict[str, str] = {}
    splits: dict[str, Part] = {}
    for name, path in files.items():
        modalities[name], splits[name] = read_table(path, columns, report, skip_bad_rows=skip_bad_rows)
    if len(set(modalities.values())) > 1:
        raise DataError(
            f"The split files in {folder} mix text and image paths ({modalities}). Give every "
            "split the same columns."
        )
    return RawData(modality=modalities["train"], splits=splits)
