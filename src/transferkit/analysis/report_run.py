"""The report's sections for one run folder: metrics, warnings, curves, confusion matrix,
configuration and ModelSpec."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..train import runfolder as rf
from . import html as h
from ._common import pyplot, read_json, read_jsonl
from .progress import progress_figure

__all__ = ["run_sections", "run_warnings", "confusion_figure"]

_METRIC_KEYS = ("accuracy", "macro_f1", "n", "split", "trainable_params", "total_params", "seconds",
                "peak_memory_mb", "peak_cuda_memory_mb", "epochs_to_best", "best_epoch")
_LOG_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<message>.*)$")  # "date time LEVEL message"
_MAX_LISTED = 20


def confusion_figure(metrics: dict[str, Any]) -> Any:
    """The confusion matrix (rows: true class, columns: predicted), counts in the cells, colour
    by the share of the row so that rare classes show as clearly as common ones."""
    import numpy as np

    cm = np.asarray(metrics["confusion_matrix"], dtype=float)  # [C, C]
    classes = [str(c) for c in metrics.get("classes") or range(len(cm))]
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(12.0, 3.0 + 0.45 * len(classes))
    fig, ax = pyplot().subplots(figsize=(size, size * 0.85))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 30:
        ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 8 else 0, fontsize=8)
        ax.set_yticks(range(len(classes)), classes, fontsize=8)
        for i in range(len(classes)):
            for j in range(len(classes)):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix (n={int(cm.sum())})")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    return fig


def run_warnings(run_dir: Path) -> list[str]:
    """What the run warned about: test_metrics.json's warnings (overfitting), WARNING lines of
    train.log, and the inputs loading skipped or repaired (with the first file names)."""
    found: list[str] = []
    if (run_dir / rf.TEST_METRICS).is_file():
        found += [str(w) for w in read_json(run_dir / rf.TEST_METRICS).get("warnings") or []]
    log_path = run_dir / rf.LOG
    if log_path.is_file():
        listing: list[str] | None = None
        for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _LOG_LINE.match(line)
            if not match:
                continue
            level, message = match["level"], match["message"]
            if listing is not None and message.startswith("  "):
                listing.append(message.strip())
                continue
            if listing:
                found[-1] += ": " + ", ".join(listing[:_MAX_LISTED]) + (
                    f", ... ({len(listing) - _MAX_LISTED} more)" if len(listing) > _MAX_LISTED else "")
            listing = None
            if message.startswith("data: skipped") or "not valid UTF-8" in message:
                found.append(message.rstrip(":"))
                listing = []
            elif level in ("WARNING", "ERROR"):
                found.append(message)
        if listing:
            found[-1] += ": " + ", ".join(listing[:_MAX_LISTED])
    unique: list[str] = []
    for w in found:  # the overfitting warning is both logged and in test_metrics.json
        if w not in unique:
            unique.append(w)
    return unique


def _spec_rows(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    labels = out.get("labels") or []
    if len(labels) > _MAX_LISTED:
        out["labels"] = f"{', '.join(map(str, labels[:_MAX_LISTED]))}, ... ({len(labels)} in all)"
    return out


def run_sections(run_dir: Path) -> list[str]:
    """Metrics, warnings, curves, confusion matrix, configuration and ModelSpec of a run."""
    run_dir = Path(run_dir)
    metrics = read_json(run_dir / rf.TEST_METRICS) if (run_dir / rf.TEST_METRICS).is_file() else {}
    records = [r for r in read_jsonl(run_dir / rf.METRICS) if "phase" in r] if (run_dir / rf.METRICS).is_file() else []
    sections = []
    if metrics:
        shown = {k: metrics[k] for k in _METRIC_KEYS if k in metrics}
        extra = {k: v for k, v in metrics.items() if k in ("lbfgs",)}
        sections.append(h.section("Test metrics", h.kv_table({**shown, **extra})))
    else:
        sections.append(h.section("Test metrics", "<p>No test_metrics.json yet: the run has not finished.</p>"))
    warnings = run_warnings(run_dir)
    sections.append(h.section("Warnings", h.paragraphs(warnings, "warn") or "<p class=\"ok\">None.</p>"))
    if records:
        sections.append(h.section("Training curves", h.figure_png(progress_figure(records), "loss and accuracy curves")))
    if metrics.get("confusion_matrix"):
        per_class = metrics.get("per_class") or {}
        rows = [(name, v.get("recall"), v.get("support")) for name, v in per_class.items()]
        body = h.figure_png(confusion_figure(metrics), "confusion matrix")
        if rows:
            body += "<details><summary>Per-class recall</summary>" + h.table(
                ["class", "recall", "support"], rows, numeric=(1, 2)) + "</details>"
        sections.append(h.section("Confusion matrix (test split)", body))
    config = yaml.safe_load((run_dir / rf.CONFIG).read_text(encoding="utf-8")) or {}
    sections.append(h.section("Configuration (config.yaml)", h.kv_table(config)))
    if (run_dir / rf.MODEL_SPEC).is_file():
        sections.append(h.section("ModelSpec (model_spec.json)", h.kv_table(_spec_rows(read_json(run_dir / rf.MODEL_SPEC)))))
    return sections
