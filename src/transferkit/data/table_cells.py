"""Image paths of a CSV/TSV table held as places in the file: ``TableCells``.

A table of image paths and labels *is* its paths, so holding them as Python strings costs about
3x the file (a 25-byte row becomes a ~90-byte ``str`` plus a list slot). ``TableCells`` holds the
table's layout and the byte offset of every ``STRIDE``-th kept row (8 bytes per 32 rows); an
item is read back when it is used: seek to the offset before it, parse at most ``STRIDE``
records and resolve the path as the first pass did. Which rows a ``TableCells`` shows is a
``_Rows``: a range, an index array, or the rows a shared mask marks with one value (the
train/val/test assignment: one byte per row for all three splits).

The first pass (``tables.py``) and these reads parse the file with the same line reader
(binary lines with their byte offsets, UTF-8 with the BOM dropped) and the same row rules.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from transferkit.data.sequences import (
    CHUNK,
    LabelCodes,
    as_index,
    index_dtype,
    sequence_equal,
)
from transferkit.data.splits import Copies, copies_from_hashes, item_hash
from transferkit.errors import DataError

__all__ = ["STRIDE", "CsvLayout", "TableCells", "PathTableBuilder", "records", "csv_cells",
           "resolve_path", "table_folder", "is_blank"]

# News articles and similar documents exceed csv's default 128 KiB field limit.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

STRIDE = 32  # kept rows per stored offset: a random read parses at most this many records
_READ_BATCH = 4096  # paths read per file opening while iterating
_BOM = codecs.BOM_UTF8
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # newline="" text mode ends a line at a lone \r too
# A relative cell without ".", "..", "~", "//" or a trailing "/" needs no normalising: the
# path is the folder + the cell, as os.path.abspath would make it (POSIX separators only).
_PLAIN_PATHS = os.sep == "/" and os.altsep is None


def _lines(f: IO[bytes], pos: int, errors: str, end: list[int]) -> Iterator[str]:
    """The decoded lines of a binary file from byte ``pos``; ``end[0]`` is the offset just past
    the last line handed out, so the caller knows where each csv record starts."""
    at_start = pos == 0
    for raw in f:
        if at_start:
            at_start = False
            if raw.startswith(_BOM):  # utf-8-sig: a BOM only at the very start is dropped
                pos += len(_BOM)
                raw = raw[len(_BOM) :]
                if not raw:
                    continue
        cr = raw.find(b"\r")
        if cr != -1 and not (cr == len(raw) - 2 and raw.endswith(b"\r\n")):  # not just a CRLF
            for piece in _LONE_CR.split(raw):
                if piece:
                    pos += len(piece)
                    end[0] = pos
                    yield piece.decode("utf-8", errors)
            continue
        pos += len(raw)
        end[0] = pos
        yield raw.decode("utf-8", errors)


def records(f: IO[bytes], start: int, delimiter: str, errors: str) -> Iterator[tuple[int, int, list[str]]]:
    """``(byte offset, first line number, cells)`` of each csv record of a binary file from byte
    ``start`` (lines counted from there, 1-based); a quoted cell may span lines.

    Example:
        >>> import io
        >>> list(records(io.BytesIO(b'a,b\\n"x\\ny",1\\n'), 0, ",", "strict"))
        [(0, 1, ['a', 'b']), (4, 2, ['x\\ny', '1'])]
    """
    f.seek(start)
    end = [start]
    reader = csv.reader(_lines(f, start, errors, end), delimiter=delimiter)
    offset, line = start, 0
    for values in reader:  # csv pulls whole lines and never reads past its record's last line
        yield offset, line + 1, values
        offset, line = end[0], reader.line_num


def is_blank(values: list[str]) -> bool:
    """A record with no cell or only empty cells: not a row."""
    return not values or not (values[0].strip() or any(map(str.strip, values)))


def _cell(values: list[str], at: tuple[int, ...]) -> str:
    for i in at:  # a repeated column name: the last such cell the row has, as dict(zip()) kept
        if i < len(values):
            return values[i]
    return ""  # fewer cells than the header: the rest are empty


@dataclass(frozen=True)
class CsvLayout:
    """Where a CSV/TSV table's value and label cells are: positions, last first."""

    delimiter: str
    width: int  # cells in the header; a wider row is refused or skipped
    value_at: tuple[int, ...]
    label_at: tuple[int, ...]

    @classmethod
    def of(cls, header: list[str], delimiter: str, value: str, label: str) -> CsvLayout:
        def at(name: str) -> tuple[int, ...]:
            return tuple(i for i in reversed(range(len(header))) if header[i] == name)
        return cls(delimiter, len(header), at(value), at(label))


def csv_cells(
    rows: Iterator[tuple[int, int, list[str]]], layout: CsvLayout,
    on_wide: Callable[[int, list[str]], None] | None, numbered: int = 0,
) -> Iterator[tuple[int, int, str, str]]:
    """``(row number, byte offset, value cell, label cell)`` of each row of ``records``: blank
    records are no rows (not numbered); a row wider than the header goes to ``on_wide(line,
    cells)`` (which may raise) or, with None, is skipped. ``numbered``: rows already counted.

    The first pass and every later read of a table use this one function, so they agree on
    which rows exist; a row is kept when both cells are non-empty once stripped.
    """
    width, value_at, label_at = layout.width, layout.value_at, layout.label_at
    single = len(value_at) == len(label_at) == 1
    vi, li = (value_at[0], label_at[0]) if single else (0, 0)
    number = numbered
    for offset, line, values in rows:
        if is_blank(values):
            continue
        number += 1
        n = len(values)
        if n > width:
            if on_wide is not None:
                on_wide(line, values)
            continue
        if single:  # the usual table: each column named once
            yield number, offset, values[vi] if vi < n else "", values[li] if li < n else ""
        else:
            yield number, offset, _cell(values, value_at), _cell(values, label_at)


def resolve_path(cell: str, prefix: str) -> str:
    """The file a cell names: relative to the table's folder (``prefix``: absolute, ending in a
    separator) unless absolute, ``~`` expanded, normalised.

    Example:
        >>> resolve_path(" img/a.png", "/data/"), resolve_path("./img/../b.png", "/data/")
        ('/data/img/a.png', '/data/b.png')
    """
    value = cell.strip()
    if (_PLAIN_PATHS and value[:1] not in ("/", "~", ".", "") and value[-1] != "/"
            and "//" not in value and "/." not in value):
        return prefix + value  # what abspath returns, ~10x faster on millions of rows
    return os.path.abspath(os.path.join(prefix, os.path.expanduser(value)))


def table_folder(path: Path) -> str:
    """The folder a table's relative paths start from: absolute, ending in a separator."""
    return os.path.join(os.path.abspath(path.parent), "")


def _stamp(st: os.stat_result) -> tuple[int, int]:
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class _Table:
    """One table file as the first pass found it."""

    path: str
    layout: CsvLayout
    prefix: str  # the table's folder, absolute, ending in a separator
    offsets: np.ndarray  # int64 [ceil(n / STRIDE)]: byte offset of kept row k * STRIDE
    n: int  # kept rows
    stamp: tuple[int, int]  # size and mtime_ns when read: a changed file is refused

    def _changed(self, what: str = "changed after it was read") -> DataError:
        return DataError(
            f"The table {self.path} {what} (its image paths are read from it while training). "
            "Restore it as it was, or run again to read the new table."
        )

    def read(self, rows: list[int]) -> list[str]:
        """The paths of kept rows ``rows`` (ascending; repeats allowed), in one forward pass that
        seeks past stretches it does not need."""
        out: list[str] = []
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below; one open per batch of reads
        except OSError as exc:
            raise self._changed(f"cannot be read any more ({exc.strerror or exc})") from exc
        with f:
            if _stamp(os.fstat(f.fileno())) != self.stamp:
                raise self._changed()
            i = 0
            while i < len(rows):
                block = rows[i] // STRIDE
                kept = block * STRIDE
                found = records(f, int(self.offsets[block]), self.layout.delimiter, "replace")
                for _, _, value, label in csv_cells(found, self.layout, None):
                    if not (value.strip() and label.strip()):
                        continue  # a row the first pass dropped
                    if rows[i] == kept:
                        path = resolve_path(value, self.prefix)
                        while i < len(rows) and rows[i] == kept:
                            out.append(path)
                            i += 1
                        if i == len(rows) or rows[i] >= kept + STRIDE:
                            break  # the next one is past the next stored offset: seek to it
                    kept += 1
                else:
                    raise self._changed()  # the file ended before the row
        return out


class _Rows:
    """Which kept rows of a table a ``TableCells`` shows, in its order."""

    def __len__(self) -> int:
        raise NotImplementedError

    def at(self, positions: np.ndarray) -> np.ndarray:
        """Table rows (int64) at ``positions`` (valid, non-negative)."""
        raise NotImplementedError

    def chunks(self) -> Iterator[np.ndarray]:
        """Table rows in order, at most ``CHUNK`` at a time."""
        raise NotImplementedError


class _Range(_Rows):
    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def at(self, positions: np.ndarray) -> np.ndarray:
        return positions.astype(np.int64) + self.start

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(self.start, self.stop, CHUNK):
            yield np.arange(start, min(start + CHUNK, self.stop), dtype=np.int64)


class _Array(_Rows):
    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def at(self, positions: np.ndarray) -> np.ndarray:
        return self.rows[positions].astype(np.int64)

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.rows), CHUNK):
            yield self.rows[start : start + CHUNK].astype(np.int64)


class _Mask(_Rows):
    """The positions of ``parent`` whose ``mask`` is ``value``; ``marks[b]`` is the parent
    position of member ``b * STRIDE``, so a random read scans at most one stretch of the mask."""

    def __init__(self, parent: _Rows, mask: np.ndarray, value: Any) -> None:
        self.parent, self.mask, self.value = parent, mask, value
        marks, count = [], 0
        for start in range(0, len(mask), CHUNK):
            hits = np.flatnonzero(mask[start : start + CHUNK] == value)
            marks.append(hits[(-count) % STRIDE :: STRIDE] + start)
            count += len(hits)
        self.marks = np.concatenate(marks) if marks else np.zeros(0, np.int64)
        self.n = count

    def __len__(self) -> int:
        return self.n

    def _member(self, j: int) -> int:
        block, rank = divmod(j, STRIDE)
        lo = int(self.marks[block])
        hi = int(self.marks[block + 1]) if block + 1 < len(self.marks) else len(self.mask)
        return lo + int(np.flatnonzero(self.mask[lo:hi] == self.value)[rank])

    def at(self, positions: np.ndarray) -> np.ndarray:
        if len(positions) > max(64, self.n // STRIDE):  # many: list every member once instead
            dtype = index_dtype(len(self.mask), signed=False)
            members = [rows.astype(dtype) for rows in self.chunks()]
            return np.concatenate(members or [np.zeros(0, dtype)])[positions].astype(np.int64)
        local = np.array([self._member(j) for j in positions.tolist()], dtype=np.int64)
        return self.parent.at(local)

    def chunks(self) -> Iterator[np.ndarray]:
        done = 0
        for rows in self.parent.chunks():
            keep = self.mask[done : done + len(rows)] == self.value
            done += len(rows)
            yield rows[keep]


class TableCells(Sequence[str]):
    """Image paths of a table, read from the file when used (see the module docstring).

    ``len``, ``cells[i]`` (a path), ``cells[slice | index array | bool mask]`` (another
    ``TableCells``, nothing read), iteration (one forward pass), ``select(mask, value)`` and
    pickling (nothing open is held: each read opens the file, so DataLoader workers read their
    own). ``copies`` is set by the reader: the copies among the rows (``splits.Copies``).
    ``+`` gives a list of every path, for small tables.

    Example:
        >>> cells = read_table(Path("photos.csv"), Columns(), DataReport())[1].items  # doctest: +SKIP
        >>> cells[0], len(cells[:10])  # doctest: +SKIP
        ('/data/photos/img/0001.png', 10)
    """

    copies: Copies | None = None

    def __init__(self, table: _Table, rows: _Rows | None = None) -> None:
        self.table = table
        self.rows = _Range(0, table.n) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        n = len(self)
        if isinstance(index, (int, np.integer)):
            i = int(index) + (n if index < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {index} out of range for {n} rows")
            return self.table.read(self.rows.at(np.array([i])).tolist())[0]
        if isinstance(index, slice) and index.step in (None, 1) and isinstance(self.rows, _Range):
            start, stop, _ = index.indices(n)
            return TableCells(self.table, _Range(self.rows.start + start, self.rows.start + max(start, stop)))
        rows = self.rows.at(as_index(index, n)).astype(index_dtype(self.table.n, signed=False))
        return TableCells(self.table, _Array(rows))

    def __iter__(self) -> Iterator[str]:
        for rows in self.rows.chunks():
            for start in range(0, len(rows), _READ_BATCH):
                yield from self._read(rows[start : start + _READ_BATCH])

    def _read(self, rows: np.ndarray) -> list[str]:
        if not len(rows) or np.all(rows[1:] >= rows[:-1]):
            return self.table.read(rows.tolist())
        order = np.argsort(rows, kind="stable")  # read in file order, hand out in this one
        paths = self.table.read(rows[order].tolist())
        out = [""] * len(rows)
        for k, position in enumerate(order.tolist()):
            out[position] = paths[k]
        return out

    def select(self, mask: np.ndarray, value: Any = True) -> TableCells:
        """The items whose ``mask`` entry is ``value``, in order; ``mask`` is shared, not copied."""
        if len(mask) != len(self):
            raise ValueError(f"mask of {len(mask)} for {len(self)} rows")
        return TableCells(self.table, _Mask(self.rows, mask, value))

    def __eq__(self, other: object) -> bool:
        return sequence_equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[Any]) -> list[Any]:
        return list(self) + list(other)

    def __radd__(self, other: Sequence[Any]) -> list[Any]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"TableCells({self.table.path!r}, {len(self)} of {self.table.n} rows)"


_U32 = next(code for code in "ILH" if array(code).itemsize == 4)  # array typecode of 4 bytes


class PathTableBuilder:
    """Collects an image-path table in the first pass: the offset of every ``STRIDE``-th kept
    row, a label code per row, and a 32-bit hash of each path (copies are found from these
    right after the pass, so the paths are never held)."""

    def __init__(self, path: Path, layout: CsvLayout, stamp: os.stat_result) -> None:
        self.path, self.layout, self.stamp = path, layout, _stamp(stamp)
        self.prefix = table_folder(path)
        self.offsets = array("q")
        self.codes = array("B")  # widened to 2 or 4 bytes past 256 or 65536 label names
        self.hashes = array(_U32)
        self.names: dict[str, int] = {}
        self.n = 0

    def add(self, offset: int, value: str, label: str) -> None:
        """One kept row: its record's byte offset, its value cell and its (stripped) label."""
        if not self.n % STRIDE:
            self.offsets.append(offset)
        code = self.names.get(label)
        if code is None:
            code = self.names[label] = len(self.names)
            if code >= 1 << (8 * self.codes.itemsize):
                self.codes = array("H" if code < 1 << 16 else _U32, self.codes)
        self.codes.append(code)
        self.hashes.append(item_hash(resolve_path(value, self.prefix)))
        self.n += 1

    def finish(self) -> tuple[TableCells, LabelCodes]:
        """The paths (with their ``copies`` found) and the labels."""
        offsets = np.frombuffer(self.offsets, dtype=np.int64) if self.n else np.zeros(0, np.int64)
        table = _Table(os.path.abspath(self.path), self.layout, self.prefix, offsets, self.n, self.stamp)
        cells = TableCells(table)
        hashes = _as_array(self.hashes)
        cells.copies = copies_from_hashes(hashes, lambda positions: cells[positions])
        del hashes
        self.hashes = array(_U32)  # 4 bytes per row, needed no longer
        return cells, LabelCodes(_as_array(self.codes), list(self.names))


def _as_array(values: array) -> np.ndarray:
    """An unsigned array.array as a numpy array over the same memory (no copy)."""
    dtype = np.dtype(f"u{values.itemsize}")
    return np.frombuffer(values, dtype=dtype) if len(values) else np.zeros(0, dtype)
