"""``compare``: run several adaptation strategies on the same splits and tabulate the results.

Every strategy trains with :func:`transferkit.train` on the same data spec, seed and fractions,
so the splits are identical and the test accuracies are comparable. The comparison folder holds:

    DIR/
      runs/<strategy>/   one ordinary run folder per strategy
      compare.json       one object per strategy (accuracy, macro_f1, params, seconds, ...)
      compare.md         the same as a Markdown table, and which run is best
      val_accuracy.png   validation accuracy against cumulative epoch seconds, one line per strategy
      best               relative symlink to runs/<best strategy> (best.txt where symlinks fail)

All runs happen in this process, one after the other; see ``PEAK_MEMORY_NOTE`` for what the
memory column means.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import DataOptions, TrainConfig
from ..data import as_data_options
from ..errors import ConfigError, TransferkitError
from ..io import runfolder as rf
from ..io.atomic import atomic_write_json, atomic_write_text
from ..io.records import TestMetrics
from ..strategies import strategy_class, strategy_names
from ..train import train
from ..train.device import resolve_device
from ..train.plots import pyplot, save_figure
from ._common import options_for, trains_same_run
from .report_run import run_records

__all__ = ["compare", "CompareResult", "pick_best", "COMPARE_JSON", "COMPARE_MD", "COMPARE_PLOT"]

log = logging.getLogger("transferkit")

COMPARE_JSON = "compare.json"
COMPARE_MD = "compare.md"
COMPARE_PLOT = "val_accuracy.png"
BEST_LINK = "best"
BEST_TXT = "best.txt"
SKIPPED = "skipped (time budget)"

# Options that define *what* is compared, not how one strategy trains: compare sets them itself.
_RESERVED = {"model", "data", "strategy", "out"}

PEAK_MEMORY_NOTE = (
    "Peak memory is each run's resident-memory high-water mark: train() resets it when a run "
    "starts (Linux /proc/self/clear_refs), so a row is that strategy's own peak, including what "
    "the process already held (libraries, memory the allocator kept from earlier runs). Where the "
    "reset is not permitted it is the process's peak so far and never decreases down the table."
)


@dataclass
class CompareResult:
    """What :func:`compare` returns.

    Attributes:
        out_dir: the comparison folder.
        rows: one dict per strategy, in the order run (the content of compare.json).
        best: the best row (highest test accuracy, then macro-F1, then fewer trainable params).
        markdown: the content of compare.md.
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    best: dict[str, Any]
    markdown: str


def _check_strategies(names: Sequence[str] | None) -> list[str]:
    """The strategies to run, validated against the names registered right now."""
    known = strategy_names()  # read at call time: strategies can be registered later
    if names is None:
        return list(known)
    chosen = [n.strip() for n in names if n and n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        what = f"unknown strategy {', '.join(repr(n) for n in unknown)}" if unknown else "no strategy given"
        raise ConfigError(
            f"strategies: {what}; choose from {', '.join(known)} (comma-separated, e.g. "
            f"--strategies {','.join(known[:2])}), or leave --strategies out to compare them all."
        )
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"strategies: {', '.join(chosen)} names a strategy twice; list each once.")
    return chosen


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Training options shared by every run: TrainConfig fields other than the reserved ones."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(options) - (fields - _RESERVED))
    if bad:
        raise ConfigError(
            f"compare: {', '.join(bad)} cannot be passed to every run; give model, data and "
            "strategies as their own arguments, and any of these training options: "
            f"{', '.join(sorted(fields - _RESERVED))}."
        )
    return {k: v for k, v in options.items() if v is not None}


_ROW_METRICS = ("accuracy", "macro_f1", "trainable_params", "total_params", "seconds", "peak_memory_mb",
                "epochs_to_best")


def _row(strategy: str, run_dir: Path, status: str, metrics: TestMetrics | None) -> dict[str, Any]:
    """One line of compare.json; the numbers are the run's own test metrics (``None`` if it
    produced none)."""
    return {
        "strategy": strategy,
        "status": status,
        **{k: getattr(metrics, k) if metrics else None for k in _ROW_METRICS},
        "epochs": (metrics.epochs or None) if metrics else None,
        "run_dir": str(run_dir) if metrics else None,
    }


def pick_best(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The best finished row: highest test accuracy, then macro-F1, then fewer trainable params.

    Example:
        >>> pick_best([{"status": "ok", "accuracy": 0.9, "macro_f1": 0.9, "trainable_params": 10},
        ...            {"status": "ok", "accuracy": 0.9, "macro_f1": 0.9, "trainable_params": 5}])["trainable_params"]
        5
    """
    done = [r for r in rows if r["status"] == "ok" and r["accuracy"] is not None
            and not math.isnan(r["accuracy"])]
    if not done:
        return None
    return max(done, key=lambda r: (r["accuracy"], r["macro_f1"] or 0.0, -(r["trainable_params"] or 0)))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], header: str, best: dict[str, Any] | None) -> str:
    """compare.md: a title line, the settings line, the table (best accuracy bold), best run."""
    top = max((r["accuracy"] for r in rows if r["status"] == "ok" and r["accuracy"] is not None), default=None)
    lines = [header, "",
             "| strategy | status | accuracy | macro-F1 | trainable params | total params | seconds "
             "| peak memory (MB) [1] | epochs to best | run |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        acc = _fmt(r["accuracy"])
        if top is not None and r["accuracy"] == top:
            acc = f"**{acc}**"
        run = Path(r["run_dir"]).name if r["run_dir"] else "-"
        status = f"{r['status']} (same run as {r['same_run_as']})" if r.get("same_run_as") else r["status"]
        lines.append(f"| {r['strategy']} | {status} | {acc} | {_fmt(r['macro_f1'])} | "
                     f"{_fmt(r['trainable_params'])} | {_fmt(r['total_params'])} | {_fmt(r['seconds'], 1)} | "
                     f"{_fmt(r['peak_memory_mb'], 1)} | {_fmt(r['epochs_to_best'])} | {run} |")
    lines.append("")
    if best is not None:
        lines.append(f"Best: **{best['strategy']}** (test accuracy {_fmt(best['accuracy'])}, macro-F1 "
                     f"{_fmt(best['macro_f1'])}, {_fmt(best['trainable_params'])} trainable params): "
                     f"`{BEST_LINK}` -> `runs/{best['strategy']}`.")
    lines += ["", "Best = highest test accuracy, ties broken by macro-F1, then by fewer trainable "
              "parameters. Chosen on the test split, the best row's test accuracy is an optimistic "
              "estimate of that strategy on new data (the more strategies and the smaller the test "
              "split, the more so): to report a figure, score the chosen run on data no run has seen "
              "(`transferkit evaluate best --data NEW`), or let `transferkit recommend` choose, which "
              "picks on validation and never reads the test split. Seconds are each run's total "
              "wall-clock time (loading, encoding, training, testing).", "", f"[1] {PEAK_MEMORY_NOTE}", ""]
    return "\n".join(lines)


def _plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Validation accuracy against cumulative epoch seconds; every phase of a run on one line."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    for r in rows:
        records = run_records(Path(r["run_dir"])) if r["run_dir"] and not r.get("same_run_as") else []
        if not records:
            continue
        xs, total = [], 0.0
        for rec in records:
            total += rec.seconds
            xs.append(total)
        ax.plot(xs, [rec.val_accuracy for rec in records], marker="o", markersize=3, label=r["strategy"])
    # Only per-epoch time is logged: model loading and the one-off feature encoding are not on the axis.
    ax.set(xlabel="cumulative epoch seconds (excluding loading and feature encoding)",
           ylabel="validation accuracy", title=title, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="strategy")
    save_figure(fig, path)


def _link_best(out_dir: Path, best: dict[str, Any]) -> None:
    """``DIR/best -> runs/<strategy>`` (relative, so the folder can move); best.txt as fallback."""
    target = Path("runs") / best["strategy"]
    link, tmp = out_dir / BEST_LINK, out_dir / f".{BEST_LINK}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a reader sees the old link or the new one
    except OSError as exc:  # e.g. filesystems or Windows accounts without symlink rights
        tmp.unlink(missing_ok=True)
        log.warning("could not create the symlink %s (%s); writing %s instead", link, exc, BEST_TXT)
        atomic_write_text(out_dir / BEST_TXT, str(best["run_dir"]) + "\n")


def _trained_twin(name: str, configs: dict[str, TrainConfig], rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished row of an earlier strategy whose run ``name`` would repeat exactly, if any."""
    for row in rows:
        if row["status"] == "ok" and not row.get("same_run_as") and trains_same_run(configs[row["strategy"]],
                                                                                    configs[name]):
            return row
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:500]


def compare(model: str, data: str | DataOptions, *, strategies: Sequence[str] | None = None,
            out: str | Path | None = None, time_budget: float | None = None,
            progress: bool | None = None, nproc: int | None = None, **options: Any) -> CompareResult:
    """Train ``model`` on ``data`` with several strategies on identical splits and compare them.

    Args:
        model: model spec, e.g. ``builtin:efficientnet_lite0``.
        data: data spec, e.g. ``builtin:mnist`` or a folder, or :class:`DataOptions` (splits,
            seed, per_class, ... shared by every run).
        strategies: strategy names (default: every registered strategy, in registry order).
        out: comparison folder (default ``runs/compare-<model>-<time>``); must be new or empty.
        time_budget: seconds for the whole comparison. Each strategy still to run gets an equal
            share of what is left (passed as its ``time_budget``);
            strategies reached after the budget is spent are marked skipped. The clock starts
            with the first strategy, which therefore always runs.
        progress: progress bars in each run (default: when stderr is a terminal).
        nproc: train each run data-parallel in this many local processes (see ``train``).
        **options: TrainConfig fields given to every run (epochs, lr, per_class, ...). ``epochs``
            is not given to feature-extraction and linear-probe, whose heads train on cached
            features with their own default (an epoch there costs milliseconds).

    A strategy whose run would repeat an earlier strategy's exactly (``linear-probe`` after
    ``feature-extraction`` with the default L-BFGS head) is not trained again: its row repeats
    that run's results, with ``same_run_as`` naming it and ``seconds`` None.

    Returns:
        A :class:`CompareResult`; the same content is in ``out``'s compare.json and compare.md.

    Raises:
        ConfigError: unknown strategy names or options, or a non-positive time budget.
        RunFolderError: ``out`` exists and is not empty.
        TransferkitError: every strategy failed (the first failure's error is raised).

    Example:
        >>> result = compare("builtin:efficientnet_lite0", "builtin:digits", per_class=10,
        ...                  strategies=["feature-extraction", "full"], epochs=3)  # doctest: +SKIP
        >>> result.best["strategy"], result.out_dir  # doctest: +SKIP
        ('full', PosixPath('runs/compare-efficientnet_lite0-20261127-120000'))
    """
    names = _check_strategies(strategies)
    shared = _check_options(options)
    if time_budget is not None and not time_budget > 0:
        raise ConfigError(f"time_budget: must be a positive number of seconds, got {time_budget!r}.")
    # Build every config before any training, so a bad option fails in a second, not after a run.
    data_fields = {f.name for f in dataclasses.fields(DataOptions)}
    options = as_data_options(data, **{k: v for k, v in shared.items() if k in data_fields})
    shared = {k: v for k, v in shared.items() if k not in data_fields}
    base = {**dataclasses.asdict(options), "model": model}
    configs = {name: TrainConfig(**base, strategy=name, **options_for(name, shared)) for name in names}
    resolve_device(next(iter(configs.values())).device)  # a device that is not there: before the folder
    out_dir = rf.new_empty_folder(Path(out) if out else rf.default_folder(model, kind="compare"),
                                  "Comparison folder", unique=not out)  # a default name: a folder of its own
    rows: list[dict[str, Any]] = []
    errors: list[TransferkitError] = []
    start: float | None = None
    for i, name in enumerate(names):
        run_dir = out_dir / "runs" / name
        twin = _trained_twin(name, configs, rows)
        if twin is not None:  # e.g. linear-probe after feature-extraction: the same run, not trained twice
            log.info("compare: %s trains the same run as %s; its row is that run's", name, twin["strategy"])
            rows.append({**twin, "strategy": name, "seconds": None, "same_run_as": twin["strategy"]})
            atomic_write_json(out_dir / COMPARE_JSON, rows)
            continue
        cfg = dataclasses.replace(configs[name], out=str(run_dir))
        if time_budget is not None:
            start = time.perf_counter() if start is None else start
            left = time_budget - (time.perf_counter() - start)
            if left <= 0:
                log.info("compare: %s skipped, the %.1f s time budget is spent", name, time_budget)
                rows.append(_row(name, run_dir, SKIPPED, None))
                continue
            # twins of an earlier strategy will take no time: the share is of those that train
            trains = [n for j, n in enumerate(names) if j >= i and not any(
                trains_same_run(configs[m], configs[n]) for m in names[:j])]
            cfg = dataclasses.replace(cfg, time_budget=left / max(1, len(trains)))
        log.info("compare: strategy %d/%d: %s", i + 1, len(names), name)
        if strategy_class(name).uses_feature_cache() and "epochs" in shared:
            log.info("compare: %s keeps its own epoch default (its head trains on cached features); "
                     "--epochs applies to the strategies that train the backbone", name)
        try:
            result = train(cfg, progress=progress, nproc=nproc)
        except TransferkitError as exc:  # bad input for this strategy only; the others still run
            log.warning("compare: %s failed: %s", name, _one_line(exc))
            errors.append(exc)
            rows.append(_row(name, run_dir, f"failed: {_one_line(exc)}", None))
        else:
            rows.append(_row(name, Path(result.run_dir).resolve(), "ok", result.metrics))
        atomic_write_json(out_dir / COMPARE_JSON, rows)  # a killed comparison keeps what finished
    best = pick_best(rows)
    first = configs[names[0]]
    header = (f"# Strategy comparison\n\nmodel: `{model}` · data: `{first.data}` · seed: {first.seed} · "
              f"per-class: {first.per_class or 'all'} · time budget: "
              f"{f'{time_budget:g} s' if time_budget is not None else 'none'}"
              + (f" · class weights: {first.class_weights}" if first.class_weights != "none" else ""))
    text = markdown_table(rows, header, best)
    atomic_write_json(out_dir / COMPARE_JSON, rows)
    atomic_write_text(out_dir / COMPARE_MD, text)
    if best is None:
        if errors:
            raise errors[0]
        raise TransferkitError(f"No strategy produced a test accuracy (see {out_dir / COMPARE_MD}); "
                               "give the data a test split (--test-fraction) or a larger --time-budget.")
    _plot(rows, out_dir / COMPARE_PLOT, f"{model} on {first.data}")
    _link_best(out_dir, best)
    return CompareResult(out_dir, rows, best, text)
