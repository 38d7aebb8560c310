"""The report's sections for one run folder: metrics, warnings, curves, confusion matrix,
configuration and ModelSpec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..io import runfolder as rf
from ..io.records import EpochRecord, EventKind, TestMetrics, read_epoch_records, read_test_metrics
from ..train.plots import learning_curve_figure, pyplot
from . import html as h
from ._common import read_json

__all__ = ["run_sections", "run_warnings", "confusion_figure", "run_records", "run_test_metrics"]

_METRIC_KEYS = ("accuracy", "macro_f1", "balanced_accuracy", "n", "split", "trainable_params", "total_params",
                "seconds", "peak_memory_mb", "peak_cuda_memory_mb", "epochs", "epochs_to_best", "best_epoch",
                "probe_scale", "wise_alpha", "lbfgs")
_MAX_LISTED = 20


def run_records(run_dir: Path, *, complete_only: bool = False) -> list[EpochRecord]:
    """The run's epoch records so far (none when metrics.jsonl does not exist yet);
    ``complete_only``: ignore a last line that is still being written."""
    path = Path(run_dir) / rf.METRICS
    try:
        return read_epoch_records(path, complete_only=complete_only) if path.is_file() else []
    except FileNotFoundError:  # deleted between the check and the read
        return []


def run_test_metrics(run_dir: Path) -> TestMetrics | None:
    """The run's test metrics, or ``None`` while it has not finished."""
    path = Path(run_dir) / rf.TEST_METRICS
    return read_test_metrics(path) if path.is_file() else None


def confusion_figure(metrics: TestMetrics) -> Any:
    """The confusion matrix (rows: true class, columns: predicted), counts in the cells, colour
    by the share of the row so that rare classes show as clearly as common ones."""
    import numpy as np

    cm = np.asarray(metrics.confusion_matrix, dtype=float)  # [C, C]
    classes = [str(c) for c in metrics.classes or range(len(cm))]
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
    """What the run warned about: a finished run's test metrics (every warning, and the inputs
    loading skipped or repaired, with the first names); while it trains, the overfitting warnings
    its epoch records carry so far."""
    metrics = run_test_metrics(run_dir)
    if metrics is not None:
        found = list(metrics.warnings) + metrics.skipped.sentences(_MAX_LISTED)
    else:
        found = [e.message for r in run_records(run_dir) for e in r.events_of(EventKind.OVERFITTING)]
    return list(dict.fromkeys(found))  # once each, in order


def _spec_rows(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    labels = out.get("labels") or []
    if len(labels) > _MAX_LISTED:
        out["labels"] = f"{', '.join(map(str, labels[:_MAX_LISTED]))}, ... ({len(labels)} in all)"
    return out


def run_sections(run_dir: Path) -> list[str]:
    """Metrics, warnings, curves, confusion matrix, configuration and ModelSpec of a run."""
    run_dir = Path(run_dir)
    metrics = run_test_metrics(run_dir)
    records = run_records(run_dir)
    sections = []
    if metrics is not None:
        values = metrics.to_dict()
        shown = {k: values[k] for k in _METRIC_KEYS if values.get(k) is not None}
        sections.append(h.section("Test metrics", h.kv_table(shown)))
    else:
        sections.append(h.section("Test metrics", "<p>No test_metrics.json yet: the run has not finished.</p>"))
    warnings = run_warnings(run_dir)
    sections.append(h.section("Warnings", h.paragraphs(warnings, "warn") or "<p class=\"ok\">None.</p>"))
    if records:
        sections.append(h.section("Training curves", h.figure_png(learning_curve_figure(records),
                                                                  "loss and accuracy curves")))
    if metrics is not None and metrics.confusion_matrix:
        rows = [(name, v.get("recall"), v.get("support")) for name, v in metrics.per_class.items()]
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
