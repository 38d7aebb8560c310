"""Layer freezing explorer: what freezing 0, 1, 2, ... layer groups from the bottom leaves to train.

The counts come from the model's own layer groups (``surgery.group_parameter_counts``), so they
are exactly what ``set_trainable_groups`` makes trainable. With data, each depth also gets a
short real run: ``last-n`` with the groups above the frozen ones training, ``full`` when nothing
is frozen and ``linear-probe`` (the L-BFGS head on cached features) when every backbone group is.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import surgery
from ..config import DataOptions, TrainConfig
from ..data import as_data_options, load_data
from ..errors import ConfigError, TransferkitError
from ..io.atomic import atomic_write_json
from ..models import TransferModel, load_model
from ..train import train
from ..train.plots import pyplot, save_figure
from ._common import fmt_params, options_for, prepare_out

__all__ = ["FreezingResult", "freezing_counts", "explore_freezing", "describe_freezing", "FREEZING_JSON", "FREEZING_PLOT",
           "FREEZING_NUM_CLASSES"]

log = logging.getLogger("transferkit")

FREEZING_JSON = "freezing.json"
FREEZING_PLOT = "freezing.png"
FREEZING_NUM_CLASSES = 10  # the head's outputs for counts without data (the head trains at every depth)
_RESERVED = {"model", "data", "strategy", "out", "last_n", "time_budget"}


@dataclass
class FreezingResult:
    """What :func:`explore_freezing` returns (the content of freezing.json, and the folder)."""

    out_dir: Path
    rows: list[dict[str, Any]]
    model: str


def freezing_counts(model: TransferModel) -> list[dict[str, Any]]:
    """Trainable parameters when the lowest 0, 1, ..., n backbone groups are frozen.

    The head always trains; the last row (every backbone group frozen) is feature extraction.

    Returns:
        One dict per depth: ``frozen_groups`` (k), ``frozen`` and ``trainable`` (group names),
        ``trainable_params``, ``total_params`` and ``share`` (trainable / total).

    Example:
        >>> from transferkit.models import load_model
        >>> rows = freezing_counts(load_model("torchvision:resnet18", 3, pretrained=False))
        >>> [r["frozen_groups"] for r in rows], rows[0]["share"]
        ([0, 1, 2, 3, 4, 5], 1.0)
    """
    groups = surgery.group_parameter_counts(model)  # [(name, total, trainable)], stem ... head
    names = [name for name, _, _ in groups]
    total = sum(size for _, size, _ in groups)
    rows = []
    for k in range(len(names)):  # k = 0 .. number of backbone groups (the head never freezes)
        trainable = sum(size for _, size, _ in groups[k:])
        rows.append({"frozen_groups": k, "frozen": names[:k], "trainable": names[k:],
                     "trainable_params": trainable, "total_params": total,
                     "share": trainable / total if total else 0.0})
    return rows


def _depth_config(base: dict[str, Any], k: int, n_backbone: int, run_dir: Path,
                  budget: float | None) -> TrainConfig:
    if k == n_backbone:  # everything frozen: the L-BFGS head on cached features
        strategy, extra = "linear-probe", {}
    elif k == 0:
        strategy, extra = "full", {}
    else:
        strategy, extra = "last-n", {"last_n": n_backbone - k}
    return TrainConfig(strategy=strategy, out=str(run_dir), time_budget=budget, **options_for(strategy, base), **extra)


def _run_depths(rows: list[dict[str, Any]], model: str, data: DataOptions, out_dir: Path,
                time_budget: float | None, progress: bool | None, options: dict[str, Any]) -> None:
    """A short real run per depth; adds ``strategy``, ``accuracy``, ``seconds``, ``run_dir``."""
    n_backbone = len(rows) - 1
    base = {**dataclasses.asdict(data), "model": model, **options}
    TrainConfig(**base)  # a bad option fails before any training
    start = time.perf_counter()
    for i, row in enumerate(rows):
        budget = None
        if time_budget is not None:
            left = time_budget - (time.perf_counter() - start)
            if left <= 0:
                row.update(status="skipped (time budget)", accuracy=None)
                continue
            budget = left / (len(rows) - i)
        cfg = _depth_config(base, row["frozen_groups"], n_backbone, out_dir / "runs" / f"frozen-{row['frozen_groups']}", budget)
        log.info("freezing: %d of %d groups frozen (%s)", row["frozen_groups"], n_backbone, cfg.strategy)
        try:
            result = train(cfg, progress=progress)
        except TransferkitError as exc:
            row.update(status=f"failed: {' '.join(str(exc).split())[:300]}", accuracy=None)
            continue
        m = result.metrics
        row.update(status="ok", strategy=cfg.strategy, accuracy=m.accuracy, macro_f1=m.macro_f1,
                   seconds=m.seconds, run_dir=str(result.run_dir))


def _plot(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ks = [r["frozen_groups"] for r in rows]
    ax.bar(ks, [r["trainable_params"] for r in rows], color="#4c78a8")
    for r in rows:
        ax.annotate(f"{r['share']:.0%}", (r["frozen_groups"], r["trainable_params"]), ha="center",
                    va="bottom", fontsize=8)
    ax.set(xlabel="layer groups frozen from the bottom", ylabel="trainable parameters", title=title)
    ax.set_xticks(ks, [f"{k}\n{r['frozen'][-1] if r['frozen'] else '-'}" for k, r in zip(ks, rows)],
                  fontsize=7)
    if any(r.get("accuracy") is not None for r in rows):
        acc = ax.twinx()
        pts = [(r["frozen_groups"], r["accuracy"]) for r in rows if r.get("accuracy") is not None]
        acc.plot(*zip(*pts), "o-", color="#e45756", label="test accuracy")
        acc.set(ylabel="test accuracy (short run)", ylim=(0, 1.02))
        acc.legend(loc="upper right")
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def explore_freezing(model: str | TransferModel, data: str | DataOptions | None = None, *,
                     out: str | Path | None = None,
                     num_classes: int | None = None, time_budget: float | None = None,
                     progress: bool | None = None, **options: Any) -> FreezingResult:
    """Trainable parameters (and, with ``data``, test accuracy) by the number of frozen groups.

    Args:
        model: a model spec, or a loaded TransferModel (counts only).
        data: a data spec or :class:`DataOptions`; each depth then trains a short run
            (``epochs`` default 3) whose run folder goes to ``out/runs/frozen-K``.
        out: output folder for freezing.json and freezing.png (default ``runs/freezing-<model>-<time>``).
        num_classes: head size for the counts without data (default 10; with data: its classes).
        time_budget: seconds for all the runs, shared equally by the depths still to run.
        **options: TrainConfig fields for the runs (per_class, seed, epochs, lr, ...); the data
            fields among them apply to ``data``.

    Returns:
        A :class:`FreezingResult`.

    Example:
        >>> r = explore_freezing("builtin:efficientnet_lite0", out="runs/freeze")  # doctest: +SKIP
        >>> [row["trainable_params"] for row in r.rows][-1]  # the head only  # doctest: +SKIP
        12810
    """
    bad = sorted(set(options) - ({f.name for f in dataclasses.fields(TrainConfig)} - _RESERVED))
    if bad:
        raise ConfigError(f"freezing: unknown or reserved option(s) {', '.join(bad)}; pass TrainConfig "
                          "fields such as per_class, seed, epochs, lr.")
    if isinstance(model, TransferModel) and data is not None:
        raise ConfigError("freezing: runs with data need a model spec string, not a loaded model.")
    if time_budget is not None and not time_budget > 0:
        raise ConfigError(f"time_budget: must be a positive number of seconds, got {time_budget!r}.")
    name = model if isinstance(model, str) else model.spec.spec_string
    out_dir = prepare_out(out, "freezing", name, (FREEZING_JSON, FREEZING_PLOT))
    given = {k: v for k, v in options.items() if v is not None}
    data_fields = {f.name for f in dataclasses.fields(DataOptions)}
    opts = None if data is None else as_data_options(data, **{k: v for k, v in given.items() if k in data_fields})
    heads = num_classes
    if isinstance(model, str):
        heads = num_classes or (load_data(opts).num_classes if opts else FREEZING_NUM_CLASSES)
        model = load_model(model, heads, pretrained=False)  # counts do not depend on the weights
    rows = freezing_counts(model)
    if opts is not None:
        run_options = {k: v for k, v in given.items() if k not in data_fields}
        run_options.setdefault("epochs", 3)
        _run_depths(rows, name, opts, out_dir, time_budget, progress, run_options)
    atomic_write_json(out_dir / FREEZING_JSON, {"model": name, "data": opts.data if opts else None,
                                                "num_classes": heads, "rows": rows})
    _plot(rows, f"{name}: trainable parameters by frozen depth", out_dir / FREEZING_PLOT)
    return FreezingResult(out_dir, rows, name)


def describe_freezing(rows: list[dict[str, Any]]) -> list[str]:
    """One line per depth, for the CLI."""
    lines = []
    for r in rows:
        acc = f"  accuracy {r['accuracy']:.4f}" if r.get("accuracy") is not None else ""
        lines.append(f"{r['frozen_groups']:>2} frozen ({r['frozen'][-1] if r['frozen'] else 'none'}): "
                     f"{fmt_params(r['trainable_params'])} trainable ({r['share']:.1%}){acc}")
    return lines
