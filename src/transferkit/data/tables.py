"""CSV/TSV/JSONL data: text with labels, or image paths with labels.

The modality follows the columns: a text column means text data, else a path column means
image data (paths relative to the table's folder, or absolute).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, cast

from transferkit.data.bundle import DataReport, format_list
from transferkit.data.readers import SPLIT_NAMES, Columns, Part, RawData, decode_text, read_bytes
from transferkit.errors import DataError

__all__ = ["TABLE_EXTENSIONS", "read_table", "find_split_files", "read_split_files"]

# Extension -> CSV delimiter (None: JSON lines, or a JSON array of objects for .json).
TABLE_EXTENSIONS: dict[str, str | None] = {
    ".csv": ",",
    ".tsv": "\t",
    ".tab": "\t",
    ".jsonl": None,
    ".ndjson": None,
    ".json": None,
}

# News articles and similar documents exceed csv's default 128 KiB field limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

_OPTIONS_HINT = (
    "Name the columns with --text-column NAME (text data), --path-column NAME (image paths) "
    "and --label-column NAME."
)


def _parse_rows(path: Path, text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """The header and the ``(row number, row)`` pairs of a table (1-based, header excluded)."""
    delimiter = TABLE_EXTENSIONS[path.suffix.lower()]
    rows: list[tuple[int, dict[str, Any]]] = []
    if delimiter is not None:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = [h.strip() for h in next(reader, [])]
        for number, values in enumerate(reader, start=1):
            if values and any(v.strip() for v in values):  # blank lines are not rows
                rows.append((number, dict(zip(header, values, strict=False))))
        return header, rows

    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path} is not valid JSON ({exc}). Fix the file or save it as JSON lines."
            ) from exc
        numbered = list(enumerate(records, start=1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"Line {number} of {path} is not valid JSON ({exc.msg}). Each line of a JSONL "
                    'file must be one JSON object, e.g. {"text": "great film", "label": "pos"}.'
                ) from exc
    header: list[str] = []
    for number, record in numbered:
        if not isinstance(record, dict):
            raise DataError(
                f"Record {number} of {path} is a {type(record).__name__}, not a JSON object. Write "
                'one object per record, e.g. {"text": "great film", "label": "pos"}.'
            )
        header.extend(k for k in record if k not in header)
        rows.append((number, record))
    return header, rows


def _find_column(header: list[str], name: str) -> str | None:
    # Exact match first; a unique case-insensitive match ("Text" for "text") is accepted too.
    if name in header:
        return name
    matches = [h for h in header if h.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    return "" if value is None else str(value)


def read_table(path: Path, columns: Columns, report: DataReport) -> tuple[str, Part]:
    """Read a CSV/TSV/JSONL table of texts or image paths with labels.

    Non-UTF-8 bytes are replaced (the affected rows are listed in ``report.replaced_text``);
    rows with an empty text, path or label are dropped and noted.

    Args:
        path: the table file.
        columns: the text, label and path column names.
        report: receives counts and notes.

    Returns:
        ``(modality, part)``; image items are absolute paths, not yet decoded.

    Raises:
        DataError: unknown file type, empty file, bad JSON, or missing columns.
    """
    if path.suffix.lower() not in TABLE_EXTENSIONS:
        raise DataError(
            f"{path} is not a data file transferkit reads (use .csv, .tsv, .jsonl or .json), nor a "
            "folder. Pass a folder of class sub-folders of images, or a table with a label column."
        )
    text, replaced = decode_text(read_bytes(path))
    report.n_scanned += 1
    header, rows = _parse_rows(path, text)
    if not header or not rows:
        raise DataError(
            f"{path} has no data rows. Write a header line (e.g. text,label) and one row per "
            "example."
        )

    label_col = _find_column(header, columns.label)
    text_col = _find_column(header, columns.text)
    path_col = _find_column(header, columns.path) if text_col is None else None
    missing = []
    if text_col is None and path_col is None:
        missing.append(f"no text column {columns.text!r} and no image path column {columns.path!r}")
    if label_col is None:
        missing.append(f"no label column {columns.label!r}")
    if missing:
        raise DataError(
            f"{path} has {' and '.join(missing)}; its columns are: {', '.join(header)}. "
            f"{_OPTIONS_HINT}"
        )
    label_col = cast(str, label_col)  # not None: the error above covers it

    if replaced:
        bad_rows = [n for n, row in rows if any("\ufffd" in str(v) for v in row.values())]
        report.replaced_text.extend([f"{path} (row {n})" for n in bad_rows] or [str(path)])

    modality = "text" if text_col is not None else "image"
    value_col = cast(str, text_col if text_col is not None else path_col)
    base = path.parent
    part = Part()
    no_value: list[int] = []
    no_label: list[int] = []
    for number, row in rows:
        value = _cell(row, value_col)
        label = _cell(row, label_col).strip()
        if not value.strip():
            no_value.append(number)
            continue
        if not label:
            no_label.append(number)
            continue
        if modality == "image":
            # Relative paths are relative to the table, so a dataset folder can move as a whole.
            value = os.path.abspath(os.path.join(base, os.path.expanduser(value.strip())))
        part.items.append(value)
        part.labels.append(label)
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
    if not part.items:
        raise DataError(
            f"{path} has no row with both a {value_col!r} value and a {label_col!r} label. Fill in "
            f"those columns. {_OPTIONS_HINT}"
        )
    return modality, part


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
    folder: Path, files: dict[str, Path], columns: Columns, report: DataReport
) -> RawData:
    """Read explicit ``train``/``val``/``test`` tables from one folder.

    Raises:
        DataError: the tables mix text and image data.
    """
    modalities: dict[str, str] = {}
    splits: dict[str, Part] = {}
    for name, path in files.items():
        modalities[name], splits[name] = read_table(path, columns, report)
    if len(set(modalities.values())) > 1:
        raise DataError(
            f"The split files in {folder} mix text and image paths ({modalities}). Give every "
            "split the same columns."
        )
    return RawData(modality=modalities["train"], splits=splits)
