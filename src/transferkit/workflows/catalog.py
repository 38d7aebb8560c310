"""The folders transferkit wrote under some roots, each as one typed summary: what it is (run,
comparison, efficiency study, explorer, restoration comparison, denoiser run), its model, strategy,
data, status and headline metrics.

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
from ..restore import denoiser_train
from ..restore.compare_priors import (
    COMPARISON_FIGURE,
    COMPARISON_FILE,
    COMPARISON_TABLE,
)
from .compare import COMPARE_JSON, COMPARE_MD
from .efficiency_report import EFFICIENCY_JSON, EFFICIENCY_SUMMARY
from .freezing import FREEZING_JSON
from .lora_explorer import LORA_JSON
from .report import folder_kinds
from .transferability import TRANSFERABILITY_JSON

__all__ = ["RESTORE_KINDS", "STATUSES", "FolderSummary", "denoiser_run_details", "find_folders",
           "restore_comparison_details", "summarize_folder"]

#: running: a process trains it now; finished: it has its results; failed: it stopped on an
#: error (failure.json); interrupted: none of these (killed, or stopped with Ctrl-C: resumable).
STATUSES = ("running", "finished", "failed", "interrupted")

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on 1,000 folders
_MAX_DEPTH = 4  # roots/compare-x/runs/<strategy>: deeper folders are not transferkit's
_STUDY_FILES = {"compare": COMPARE_JSON, "efficiency": EFFICIENCY_JSON, "freezing": FREEZING_JSON,
                "lora": LORA_JSON, "transferability": TRANSFERABILITY_JSON}
#: Folders of `transferkit restore --compare-priors` and `transferkit denoiser train` (not in the
#: HTML report's folder_kinds: the report does not cover them; the dashboard's restore page does).
RESTORE_KINDS = ("restore-compare", "denoiser")
_MARKERS = {rf.CONFIG, *_STUDY_FILES.values(), COMPARISON_FILE, denoiser_train.RECORD}
# A denoiser run writes its record (denoiser.json) last; until then its folder holds train.log and
# metrics.jsonl, and train.log starts with this (the first line train_denoiser logs).
_DENOISER_LOG_START = b"denoiser train:"


@dataclass(frozen=True)
class FolderSummary:
    """One folder as the Runs page lists it.

    Attributes:
        path: the folder. kinds: what it holds (``run``, ``compare``, ``efficiency``, ``freezing``,
            ``lora``, ``transferability``, ``restore-compare``, ``denoiser``); kind: the first of them.
        model, strategy, data: from the run's config or the study's summary (``None``: unknown). A
            restoration comparison: the best prior, "N priors, best P (X dB)", the image; a denoiser
            run: where it started (``--from``), its strategy, its images folder.
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
        # a shallow copy: every field is a scalar, a path or a tuple of names (dataclasses.asdict's
        # deep copy was a fifth of listing 1,000 runs)
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(path=str(self.path), kinds=list(self.kinds), kind=self.kind,
                      parent=str(self.parent) if self.parent else None)
        return values


def _files(folder: Path) -> dict[str, os.DirEntry]:
    """The folder's files by name: one directory read answers every "is there a ..." question
    (the dashboard asks them of 1,000 folders every two seconds).

    Raises:
        OSError: the folder is gone or unreadable.
    """
    with os.scandir(folder) as entries:
        return {e.name: e for e in entries if e.is_file()}


def _entry_mtime_ns(files: dict[str, os.DirEntry], name: str) -> int:
    try:
        return files[name].stat().st_mtime_ns if name in files else 0
    except OSError:  # deleted since the directory was read
        return 0


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


def _parsed_run_files(folder: Path, files: dict[str, os.DirEntry]) -> tuple[dict[str, Any], TestMetrics | None]:
    stamp = (_entry_mtime_ns(files, rf.CONFIG), _entry_mtime_ns(files, rf.TEST_METRICS))
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


def _run_summary(folder: Path, kinds: tuple[str, ...], parent: Path | None,
                 files: dict[str, os.DirEntry] | None = None) -> FolderSummary:
    """``files``: the folder's :func:`_files`, when the caller has read them already."""
    if files is None:
        try:
            files = _files(folder)
        except OSError:
            files = {}
    config, metrics = _parsed_run_files(folder, files)
    failure = _json(folder / rf.FAILURE) if rf.FAILURE in files else None
    if rf.LOG in files and rf.is_running(folder):
        status = "running"
    elif metrics is not None or rf.WEIGHTS in files:
        # weights without test metrics: a run trained without scoring the test split (recommend's
        # race keeps such folders with --out); an interrupted run has a checkpoint, not weights
        status = "finished"
    elif failure is not None:
        status = "failed"
    else:
        status = "interrupted"
    modified = max(_entry_mtime_ns(files, name) for name in (rf.METRICS, rf.TEST_METRICS, rf.CONFIG)) / 1e9
    return FolderSummary(
        path=folder, kinds=kinds, model=config.get("model"), strategy=config.get("strategy"),
        data=_data_name(config.get("data")), status=status,
        accuracy=metrics.accuracy if metrics else None, macro_f1=metrics.macro_f1 if metrics else None,
        trainable_params=metrics.trainable_params if metrics else None,
        seconds=metrics.seconds if metrics else None,
        epochs=_count_lines(folder / rf.METRICS) if rf.METRICS in files else None,
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
        files = _files(folder)
        kinds = tuple(folder_kinds(folder, files)) + _restore_kinds(folder, files)
        if not kinds and rf.CONFIG in files and rf.LOG in files:
            kinds = ("run",)  # a run before its first epoch, or one that failed in it
    except OSError:
        return None
    if not kinds:
        return None
    if kinds[0] == "run":
        return _run_summary(folder, kinds, parent, files)
    if kinds[0] == "compare":
        return _compare_summary(folder, kinds)
    if kinds[0] == "restore-compare":
        return _restore_compare_summary(folder, kinds)
    if kinds[0] == "denoiser":
        return _denoiser_summary(folder, kinds, parent)
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
        if names & _MARKERS or _is_denoiser_log(Path(entry.path), names):
            yield Path(entry.path)
        elif depth + 1 < _MAX_DEPTH:
            yield from _candidate_folders(Path(entry.path), depth + 1)


# -- Restoration: prior comparisons and denoiser runs ---------------------------------------------
def _is_denoiser_log(folder: Path, names: set[str] | None = None) -> bool:
    """A denoiser run before its record: train.log written by train_denoiser, and no run config."""
    names = names if names is not None else {n for n in (denoiser_train.LOG, rf.CONFIG) if (folder / n).exists()}
    if denoiser_train.LOG not in names or rf.CONFIG in names:
        return False
    try:
        with open(folder / denoiser_train.LOG, "rb") as handle:
            return handle.read(len(_DENOISER_LOG_START)) == _DENOISER_LOG_START
    except OSError:
        return False


def _restore_kinds(folder: Path, files: dict[str, os.DirEntry]) -> tuple[str, ...]:
    kinds = []
    if COMPARISON_FILE in files:
        kinds.append("restore-compare")
    recorded = denoiser_train.RECORD in files and denoiser_train.is_denoiser_run(folder)
    if recorded or _is_denoiser_log(folder, set(files)):
        kinds.append("denoiser")
    return tuple(kinds)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _prior_rows(data: Any) -> list[dict[str, Any]]:
    """The comparison's rows that name a prior, best PSNR first (rows without a PSNR last)."""
    rows = data.get("priors") if isinstance(data, dict) else None
    rows = [r for r in rows if isinstance(r, dict) and r.get("prior")] if isinstance(rows, list) else []
    return sorted(rows, key=lambda r: -(_number(r.get("psnr")) if _number(r.get("psnr")) is not None else -1e9))


def _restore_compare_summary(folder: Path, kinds: tuple[str, ...]) -> FolderSummary:
    data = _json(folder / COMPARISON_FILE)
    problem = data.get("problem") if isinstance(data, dict) else None
    problem = problem if isinstance(problem, dict) else {}
    rows = _prior_rows(data)
    best = rows[0] if rows and _number(rows[0].get("psnr")) is not None else None
    strategy = f"{len(rows)} priors" + (f", best {best['prior']} ({_number(best['psnr']):.2f} dB)" if best else "")
    image = problem.get("image")
    seconds = sum(_number(r.get("seconds")) or 0.0 for r in rows)
    return FolderSummary(
        path=folder, kinds=kinds, model=str(best["prior"]) if best else None, strategy=strategy,
        data=Path(str(image)).name if image else None,
        status="finished" if isinstance(data, dict) else "interrupted",  # the json is written last
        seconds=seconds or None, modified=_mtime(folder / COMPARISON_FILE))


def _denoiser_record(folder: Path) -> dict[str, Any] | None:
    data = _json(folder / denoiser_train.RECORD)
    if not isinstance(data, dict) or data.get("kind") != denoiser_train.KIND:
        return None
    return data


def _denoiser_status(folder: Path, data: dict[str, Any] | None) -> str:
    """As a run's: train_denoiser holds the lock on train.log while it trains and writes
    failure.json when an error ends it."""
    if rf.is_running(folder):
        return "running"
    if data is not None and (folder / denoiser_train.WEIGHTS).is_file():
        return "finished"
    return "failed" if (folder / rf.FAILURE).is_file() else "interrupted"


def _denoiser_summary(folder: Path, kinds: tuple[str, ...], parent: Path | None) -> FolderSummary:
    data = _denoiser_record(folder)
    record = data.get("record") if data else None
    record = record if isinstance(record, dict) else {}
    config = data.get("config") if data else None
    config = config if isinstance(config, dict) else {}
    trainable = record.get("trainable_params")
    status = _denoiser_status(folder, data)
    failure = _json(folder / rf.FAILURE) if status == "failed" else None
    return FolderSummary(
        path=folder, kinds=kinds, model=record.get("from") or config.get("start"),
        strategy=record.get("strategy") or config.get("strategy"),
        data=str(config["images"]) if config.get("images") is not None else None,
        status=status, error=failure.get("error") if isinstance(failure, dict) else None,
        trainable_params=trainable if isinstance(trainable, int) else None,
        seconds=_number(record.get("seconds")),
        modified=max(_mtime(folder / denoiser_train.RECORD), _mtime(folder / denoiser_train.METRICS),
                     _mtime(folder / denoiser_train.LOG)),
        parent=parent)


def restore_comparison_details(folder: str | Path) -> dict[str, Any] | None:
    """What ``transferkit restore --compare-priors`` wrote, for a page: the problem, the rows best
    PSNR first (``best`` marks the first), and the file names of the figure, the clean and the
    degraded image (``None`` where missing). ``None`` when the folder holds no readable comparison.

    Example:
        >>> restore_comparison_details("runs/restore-compare-astro-20261130-091500")["best"]  # doctest: +SKIP
        'builtin:drunet'
    """
    folder = Path(folder)
    data = _json(folder / COMPARISON_FILE)
    if not isinstance(data, dict):
        return None
    problem = data.get("problem") if isinstance(data.get("problem"), dict) else {}
    rows = []
    for index, row in enumerate(_prior_rows(data)):
        image = row.get("image")
        rows.append({"prior": str(row["prior"]), "psnr": _number(row.get("psnr")), "ssim": _number(row.get("ssim")),
                     "seconds": _number(row.get("seconds")),
                     "image": image if isinstance(image, str) and (folder / image).is_file() else None,
                     "best": index == 0 and _number(row.get("psnr")) is not None})

    def present(name: str) -> str | None:
        return name if (folder / name).is_file() else None

    return {"problem": problem, "priors": rows, "best": rows[0]["prior"] if rows and rows[0]["best"] else None,
            "figure": present(COMPARISON_FIGURE), "clean": present("clean.png"),
            "degraded": present("degraded.png"), "table": present(COMPARISON_TABLE)}


def _step_records(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a denoiser run's metrics.jsonl (``step``, ``steps``, ``l1``, ``seconds``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    steps = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # still being written
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("step"), int):
            steps.append({k: value.get(k) for k in denoiser_train.StepRecord.__annotations__})
    return steps


def denoiser_run_details(folder: str | Path) -> dict[str, Any] | None:
    """A ``transferkit denoiser train`` run, for a page: its status, record (``None`` until it
    finishes: from, strategy, steps, seconds, parameter counts, PSNR before and after on fixed
    crops of the *training* images), config, and the logged steps (the loss curve). ``None`` when
    the folder is not a denoiser run.

    Example:
        >>> denoiser_run_details("runs/denoiser-drunet-full-20261130-091500")["record"]["strategy"]  # doctest: +SKIP
        'full'
    """
    folder = Path(folder)
    try:
        files = _files(folder)
    except OSError:
        return None
    if "denoiser" not in _restore_kinds(folder, files):
        return None
    data = _denoiser_record(folder)
    record = data.get("record") if data else None
    config = data.get("config") if data else None
    return {"status": _denoiser_status(folder, data), "record": record if isinstance(record, dict) else None,
            "config": config if isinstance(config, dict) else None, "steps": _step_records(folder / denoiser_train.METRICS),
            "weights": denoiser_train.WEIGHTS if (folder / denoiser_train.WEIGHTS).is_file() else None,
            "log": denoiser_train.LOG if (folder / denoiser_train.LOG).is_file() else None}
