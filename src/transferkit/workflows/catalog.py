"""The folders transferkit wrote under some roots, each as one typed summary: what it is (run,
comparison, efficiency study, explorer), its model, strategy, data, status and headline metrics.

The dashboard's Runs page and anything else that lists runs reads folders through this module,
which reads them through the typed records (``TestMetrics``, ``EpochRecord``), so a field is
named once. Reading is cheap (a few small files per folder) and tolerant: a folder deleted or
half-written while it is read is skipped or summarised from what is there, never an error.

Example:
    >>> from transferkit.workflows import find_folders
    >>> [f.status for f in find_folders(["runs"])][:2]  # doctest: +SKIP
    ['running', 'finished']
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import RunFolderError
from ..io import runfolder as rf
from ..io.records import TestMetrics, read_test_metrics
from .compare import COMPARE_JSON, COMPARE_MD
from .efficiency_report import EFFICIENCY_JSON, EFFICIENCY_SUMMARY
from .freezing import FREEZING_JSON
from .lora_explorer import LORA_JSON
from .report import folder_kinds
from .transferability import TRANSFERABILITY_JSON

__all__ = ["STATUSES", "FolderSummary", "find_folders", "summarize_folder"]

#: running: a process trains it now; finished: it has its results; failed: it stopped on an
#: error (failure.json); interrupted: none of these (killed, or stopped with Ctrl-C: resumable).
STATUSES = ("running", "finished", "failed", "interrupted")

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on 1,000 folders
_MAX_DEPTH = 4  # roots/compare-x/runs/<strategy>: deeper folders are not transferkit's
_STUDY_FILES = {"compare": COMPARE_JSON, "efficiency": EFFICIENCY_JSON, "freezing": FREEZING_JSON,
                "lora": LORA_JSON, "transferability": TRANSFERABILITY_JSON}
_MARKERS = {rf.CONFIG, *_STUDY_FILES.values()}  # a folder holding one of these is transferkit's


@dataclass(frozen=True)
class FolderSummary:
    """One folder as the Runs page lists it.

    Attributes:
        path: the folder. kinds: what it holds (``run``, ``compare``, ``efficiency``, ``freezing``,
            ``lora``, ``transferability``); kind: the first of them.
        model, strategy, data: from the run's config or the study's summary (``None``: unknown).
        status: one of :data:`STATUSES`.
        accuracy, macro_f1, trainable_params, seconds: a run's test metrics (for a comparison,
            its best run's); ``None`` until there are some.
        epochs: epochs recorded so far (runs). modified: the newest modification time (epoch
            seconds) of the files read, to sort newest first. error: why a run failed.
        parent: the comparison or study folder a run belongs to (``None``: a run of its own).
    """

    path: Path
    kinds: tuple[str, ...]
    model: str | None = None
    strategy: str | None = None
    data: str | None = None
    status: str = "finished"
    accuracy: float | None = None
    macro_f1: float | None = None
    trainable_params: int | None = None
    seconds: float | None = None
    epochs: int | None = None
    modified: float = 0.0
    error: str | None = None
    parent: Path | None = None

    @property
    def kind(self) -> str:
        return self.kinds[0]

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.update(path=str(self.path), kinds=list(self.kinds), kind=self.kind,
                      parent=str(self.parent) if self.parent else None)
        return values


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # gone, or half-written by a writer that is not atomic
        return None


def _count_lines(path: Path) -> int | None:
    """Complete lines of metrics.jsonl (a partial last line is still being written)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data.count(b"\n")


# folder -> (modification times of config.yaml and test_metrics.json, config, metrics): a page
# that lists 1,000 runs every two seconds parses each file once, not on every request.
_parsed: dict[Path, tuple[tuple[int, int], dict[str, Any], TestMetrics | None]] = {}


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _parsed_run_files(folder: Path) -> tuple[dict[str, Any], TestMetrics | None]:
    stamp = (_mtime_ns(folder / rf.CONFIG), _mtime_ns(folder / rf.TEST_METRICS))
    cached = _parsed.get(folder)
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    try:
        config = yaml.load((folder / rf.CONFIG).read_text(encoding="utf-8"), Loader=_LOADER) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    metrics: TestMetrics | None = None
    if stamp[1]:
        try:
            metrics = read_test_metrics(folder / rf.TEST_METRICS)
        except (OSError, ValueError, RunFolderError):
            metrics = None
    _parsed[folder] = (stamp, config if isinstance(config, dict) else {}, metrics)
    return _parsed[folder][1], metrics


def _run_summary(folder: Path, kinds: tuple[str, ...], parent: Path | None) -> FolderSummary:
    config, metrics = _parsed_run_files(folder)
    failure = _json(folder / rf.FAILURE) if (folder / rf.FAILURE).is_file() else None
    if rf.is_running(folder):
        status = "running"
    elif metrics is not None:
        status = "finished"
    elif failure is not None:
        status = "failed"
    else:
        status = "interrupted"
    modified = max(_mtime(folder / rf.METRICS), _mtime(folder / rf.TEST_METRICS), _mtime(folder / rf.CONFIG))
    return FolderSummary(
        path=folder, kinds=kinds, model=config.get("model"), strategy=config.get("strategy"),
        data=_data_name(config.get("data")), status=status,
        accuracy=metrics.accuracy if metrics else None, macro_f1=metrics.macro_f1 if metrics else None,
        trainable_params=metrics.trainable_params if metrics else None,
        seconds=metrics.seconds if metrics else None, epochs=_count_lines(folder / rf.METRICS),
        modified=modified, error=(failure or {}).get("error") if isinstance(failure, dict) else None,
        parent=parent)


def _data_name(data: Any) -> str | None:
    if isinstance(data, dict):  # DataOptions written as a mapping
        return str(data.get("data")) if data.get("data") is not None else None
    return None if data is None else str(data)


def _compare_summary(folder: Path, kinds: tuple[str, ...]) -> FolderSummary:
    rows = _json(folder / COMPARE_JSON)
    rows = rows if isinstance(rows, list) else []
    runs = [_run_summary(d, ("run",), folder) for d in _compare_run_dirs(folder)]
    finished = [r for r in runs if r.accuracy is not None]
    best = max(finished, key=lambda r: (r.accuracy or 0.0, r.macro_f1 or 0.0), default=None)
    if any(r.status == "running" for r in runs):
        status = "running"
    elif (folder / COMPARE_MD).is_file():
        status = "finished"
    else:
        status = "interrupted"
    first = runs[0] if runs else None
    return FolderSummary(
        path=folder, kinds=kinds, model=first.model if first else None,
        strategy=f"{len(rows)} strategies" + (f", best {best.strategy}" if best else ""),
        data=first.data if first else None, status=status,
        accuracy=best.accuracy if best else None, macro_f1=best.macro_f1 if best else None,
        trainable_params=best.trainable_params if best else None,
        seconds=sum(r.get("seconds") or 0.0 for r in rows if isinstance(r, dict)) or None,
        modified=max([_mtime(folder / COMPARE_JSON), *(r.modified for r in runs)]))


def _compare_run_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(d for d in (folder / "runs").iterdir() if (d / rf.CONFIG).is_file())
    except OSError:
        return []


def _study_summary(folder: Path, kinds: tuple[str, ...]) -> FolderSummary:
    kind = kinds[0]
    data = _json(folder / _STUDY_FILES[kind])
    summary = _json(folder / EFFICIENCY_SUMMARY) if kind == "efficiency" else data
    summary = summary if isinstance(summary, dict) else {}
    finished = kind != "efficiency" or (folder / EFFICIENCY_SUMMARY).is_file()
    return FolderSummary(
        path=folder, kinds=kinds, model=summary.get("model"), strategy=None,
        data=_data_name(summary.get("data")), status="finished" if finished else "interrupted",
        seconds=summary.get("seconds"), modified=_mtime(folder / _STUDY_FILES[kind]))


def summarize_folder(folder: str | Path, parent: Path | None = None) -> FolderSummary | None:
    """The summary of one folder, or ``None`` when it holds nothing transferkit wrote (or has gone).

    Example:
        >>> summarize_folder("runs/efficientnet_lite0-full-20261127-120000").status  # doctest: +SKIP
        'finished'
    """
    folder = Path(folder)
    try:
        kinds = tuple(folder_kinds(folder))
        if not kinds and (folder / rf.CONFIG).is_file() and (folder / rf.LOG).is_file():
            kinds = ("run",)  # a run before its first epoch, or one that failed in it
    except OSError:
        return None
    if not kinds:
        return None
    if kinds[0] == "run":
        return _run_summary(folder, kinds, parent)
    if kinds[0] == "compare":
        return _compare_summary(folder, kinds)
    return _study_summary(folder, kinds)


def find_folders(roots: Iterable[str | Path]) -> list[FolderSummary]:
    """Every run, comparison, study and explorer folder under ``roots`` (a comparison's own runs
    included, with ``parent`` set), newest first.

    Example:
        >>> [f.kind for f in find_folders(["runs"])]  # doctest: +SKIP
        ['compare', 'run', 'run', 'efficiency']
    """
    found: list[FolderSummary] = []
    for root in roots:
        for folder in _candidate_folders(Path(root)):
            summary = summarize_folder(folder)
            if summary is None:
                continue
            found.append(summary)
            if summary.kind == "compare":
                found += [_run_summary(d, ("run",), folder) for d in _compare_run_dirs(folder)]
    return sorted(found, key=lambda s: s.modified, reverse=True)


def _candidate_folders(root: Path, depth: int = 0) -> Iterable[Path]:
    """Folders under ``root`` that may be transferkit's: a folder that is one is not descended into
    (a comparison lists its runs itself); symlinked folders are not followed (no cycles, and the
    dashboard never serves what lies outside its roots)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            names = set(os.listdir(entry.path))
        except OSError:
            continue
        if names & _MARKERS:
            yield Path(entry.path)
        elif depth + 1 < _MAX_DEPTH:
            yield from _candidate_folders(Path(entry.path), depth + 1)
