"""``write_report``: one self-contained HTML file for a run, a comparison or a sample-efficiency
folder (and any explorer results found in it).

Plots are embedded as base64 PNG data URIs, the CSS is inline, there are no scripts, fonts or
links, and a Content-Security-Policy forbids the browser anything else: the file opens offline,
from an e-mail attachment as well as from the folder. Every text from the folder is escaped.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from ..errors import RunFolderError
from ..io import runfolder as rf
from ..io.atomic import atomic_write_text
from ..train.plots import learning_curve_figure
from . import html as h
from ._common import read_json
from .compare import COMPARE_JSON, COMPARE_PLOT, pick_best
from .efficiency_report import EFFICIENCY_JSON, EFFICIENCY_PLOT, EFFICIENCY_SUMMARY, efficiency_figure
from .freezing import FREEZING_JSON, FREEZING_PLOT
from .lora_explorer import LORA_JSON, LORA_PLOT
from .multiplier import data_multipliers, headline, mean_curve
from .report_run import confusion_figure, run_records, run_sections, run_test_metrics, run_warnings
from .transferability import TRANSFERABILITY_JSON, TRANSFERABILITY_PLOT

__all__ = ["write_report", "report_html", "folder_kinds", "REPORT_HTML"]

REPORT_HTML = "report.html"


def folder_kinds(folder: Path, files: Collection[str] | None = None) -> list[str]:
    """What the folder holds: ``run``, ``compare``, ``efficiency``, ``freezing``, ``lora``, ``transferability``.

    ``files``: the names of the folder's files, where the caller has listed them (no file is
    then looked up one by one).

    Example:
        >>> folder_kinds(Path("runs/compare-x"))  # doctest: +SKIP
        ['compare']
    """
    folder = Path(folder)

    def has(name: str) -> bool:
        return name in files if files is not None else (folder / name).is_file()

    kinds = []
    if has(rf.CONFIG) and (has(rf.METRICS) or has(rf.TEST_METRICS)):
        kinds.append("run")
    for kind, name in (("compare", COMPARE_JSON), ("efficiency", EFFICIENCY_JSON), ("freezing", FREEZING_JSON),
                       ("lora", LORA_JSON), ("transferability", TRANSFERABILITY_JSON)):
        if has(name):
            kinds.append(kind)
    return kinds


# -- comparison -----------------------------------------------------------------------------------
def _compare_sections(folder: Path) -> list[str]:
    rows = read_json(folder / COMPARE_JSON)
    if not isinstance(rows, list):
        raise RunFolderError(f"{folder / COMPARE_JSON} is not a list of rows; run `transferkit compare` again.")
    best = pick_best(rows)
    keys = ["strategy", "status", "accuracy", "macro_f1", "trainable_params", "total_params", "seconds",
            "peak_memory_mb", "epochs_to_best"]
    body = h.table(keys, [[r.get(k) for k in keys] for r in rows], numeric=range(2, len(keys)))
    if best:
        body = h.paragraphs([f"Best: {best['strategy']} (test accuracy {best['accuracy']:.4f}, macro-F1 "
                             f"{(best.get('macro_f1') or 0):.4f}, {best.get('trainable_params') or 0:,} trainable "
                             "parameters)."], "headline") + body
    sections = [h.section("Comparison", body),
                h.section("Validation accuracy over time", h.file_png(folder / COMPARE_PLOT, "validation accuracy"))]
    warnings, details = [], []
    for r in rows:
        run_dir = _run_dir(folder, r)
        if run_dir is None or r.get("same_run_as"):  # a twin's run is shown under its own strategy
            continue
        warnings += [f"[{r['strategy']}] {w}" for w in run_warnings(run_dir)]
        details.append(_run_details(run_dir, r))
    sections.append(h.section("Warnings", h.paragraphs(warnings, "warn") or "<p class=\"ok\">None.</p>"))
    sections.append(h.section("Runs", "".join(details)))
    return sections


def _run_dir(folder: Path, row: dict[str, Any]) -> Path | None:
    candidates = [folder / "runs" / str(row.get("strategy"))]  # the folder may have moved: look inside first
    if row.get("run_dir"):
        candidates.append(Path(str(row["run_dir"])))
    return next((c for c in candidates if (c / rf.CONFIG).is_file()), None)


def _run_details(run_dir: Path, row: dict[str, Any]) -> str:
    parts = []
    records = run_records(run_dir)
    if records:
        parts.append(h.figure_png(learning_curve_figure(records, str(row.get("strategy"))), "training curves"))
    metrics = run_test_metrics(run_dir)
    if metrics is not None and metrics.confusion_matrix:
        parts.append(h.figure_png(confusion_figure(metrics), "confusion matrix"))
    acc = row.get("accuracy")
    label = f"{row.get('strategy')}: {row.get('status')}" + (f", test accuracy {acc:.4f}" if acc is not None else "")
    return f"<details><summary>{h.esc(label)}</summary>{''.join(parts)}</details>"


# -- sample efficiency ----------------------------------------------------------------------------
def _efficiency_sections(folder: Path) -> list[str]:
    points = read_json(folder / EFFICIENCY_JSON)
    if not isinstance(points, list):
        raise RunFolderError(f"{folder / EFFICIENCY_JSON} is not a list of points; run `transferkit efficiency` again.")
    summary = read_json(folder / EFFICIENCY_SUMMARY) if (folder / EFFICIENCY_SUMMARY).is_file() else {}
    if "multipliers" not in summary:  # a study stopped early: measure from the points there are
        summary["multipliers"] = data_multipliers(points)
        summary["headline"] = headline(summary["multipliers"])
        summary.setdefault("methods", sorted({p["method"] for p in points}, key=str))
    lines = summary.get("headline") or ["No data multiplier: the folder has no transfer or no from-scratch points."]
    top = ('<div class="headline"><p>Measured data multiplier (how many more examples per class '
           "from-scratch training needed to match transfer):</p><ul>"
           + "".join(f"<li>{h.esc(line)}</li>" for line in lines) + "</ul></div>")
    plot = h.file_png(folder / EFFICIENCY_PLOT, "sample efficiency") or h.figure_png(
        efficiency_figure(points, summary), "sample efficiency")
    methods = summary.get("methods", [])
    curves = {m: {c["per_class"]: c for c in mean_curve(points, m)} for m in methods}
    sizes = sorted({p["per_class"] for p in points})
    mean_rows = [[s] + [f"{curves[m][s]['mean']:.4f} ± {curves[m][s]['std']:.4f}" if s in curves[m] else "-"
                        for m in methods] for s in sizes]
    keys = ["per_class", "seed", "method", "status", "accuracy", "val_accuracy", "epochs", "image_size", "seconds"]
    settings = {k: summary[k] for k in ("model", "data", "per_class", "seeds", "classes", "n_val", "n_test",
                                        "image_size", "time_budget", "encode_seconds", "seconds") if k in summary}
    warnings = [f"[seed {p['seed']}, {p['per_class']}/class, {p['method']}] {w}"
                for p in points for w in p.get("warnings") or []]
    warnings += [f"[seed {p['seed']}, {p['per_class']}/class, {p['method']}] {p['status']}"
                 for p in points if p.get("status") not in (None, "ok")]
    return [
        h.section("Sample efficiency", top + plot),
        h.section("Mean test accuracy (± std over seeds)", h.table(["per class", *methods], mean_rows)),
        h.section("Data multiplier, every transfer point", h.paragraphs([m["text"] for m in summary["multipliers"]])),
        h.section("Every trained point", h.table(keys, [[p.get(k) for k in keys] for p in points], numeric=(0, 1, 4, 5, 6, 7, 8))),
        h.section("Settings", h.kv_table(settings) + (h.table(["method", "recipe"], [
            (m, r) for m, r in summary.get("recipes", {}).items()]) if summary.get("recipes") else "")),
        h.section("Warnings", h.paragraphs(warnings, "warn") or "<p class=\"ok\">None.</p>"),
    ]


# -- explorers ------------------------------------------------------------------------------------
def _freezing_section(folder: Path) -> str:
    data = read_json(folder / FREEZING_JSON)
    rows = [[r.get("frozen_groups"), ", ".join(r.get("frozen") or []) or "-", r.get("trainable_params"),
             f"{r.get('share', 0):.1%}", r.get("accuracy"), r.get("status", "-")] for r in data.get("rows", [])]
    return h.section("Layer freezing explorer", h.file_png(folder / FREEZING_PLOT, "trainable parameters by frozen depth")
                     + h.table(["frozen groups", "frozen", "trainable params", "share", "test accuracy", "status"],
                               rows, numeric=(0, 2, 3, 4)))


def _lora_section(folder: Path) -> str:
    data = read_json(folder / LORA_JSON)
    rows = [[r.get("target_set"), r.get("rank"), r.get("layers"), r.get("trainable_params"),
             f"{r.get('share', 0):.2%}", r.get("full_params")] for r in data.get("rows", [])]
    layers = [[l.get("name"), l.get("d"), l.get("k"), l.get("lora"), l.get("full")] for l in data.get("layers", [])[:40]]
    body = (h.file_png(folder / LORA_PLOT, "LoRA trainable parameters by rank")
            + h.table(["target set", "rank", "layers", "trainable params (adapters + head)", "share of model",
                       "full fine-tuning"], rows, numeric=(1, 2, 3, 4, 5)))
    if layers:
        body += (f"<h3>Per layer at rank {h.esc(data.get('layer_rank'))}: r(d + k) against d k</h3>"
                 + h.table(["layer", "d", "k", "r(d + k)", "d k"], layers, numeric=(1, 2, 3, 4)))
    return h.section("LoRA savings explorer", body)


def _transferability_section(folder: Path) -> str:
    data = read_json(folder / TRANSFERABILITY_JSON)
    points = data.get("points", [])
    keys = ["init", "depth", "group", "features", "val_accuracy", "test_accuracy"]
    body = (h.paragraphs([data["text"]], "headline") if data.get("text") else "") + h.file_png(
        folder / TRANSFERABILITY_PLOT, "probe accuracy by depth") + h.table(
        keys, [[p.get(k) for k in keys] for p in points], numeric=(1, 3, 4, 5))
    return h.section("Layer transferability (linear probe after each layer group)", body)


_EXPLORERS = {"freezing": _freezing_section, "lora": _lora_section, "transferability": _transferability_section}


def report_html(folder: str | Path) -> str:
    """The report's HTML for a run, comparison or efficiency folder (explorer results included).

    Raises:
        RunFolderError: the folder holds none of those.
    """
    folder = Path(folder)
    kinds = folder_kinds(folder) if folder.is_dir() else []
    if not kinds:
        what = "does not exist" if not folder.exists() else "holds none of the files a report is made from"
        raise RunFolderError(
            f"{folder} {what}. Give a run folder (config.yaml and metrics.jsonl, from `transferkit train`), "
            "a comparison folder (compare.json, from `transferkit compare`), or a sample-efficiency folder "
            "(efficiency.json, from `transferkit efficiency`); explorer folders (freezing.json, "
            "lora_savings.json, transferability.json) work too."
        )
    sections: list[str] = []
    title = f"transferkit report: {folder.resolve().name}"
    subtitle = ", ".join(kinds)
    if "run" in kinds:
        sections += run_sections(folder)
        cfg = yaml.safe_load((folder / rf.CONFIG).read_text(encoding="utf-8")) or {}
        subtitle = f"run of {cfg.get('model')} on {cfg.get('data')} with {cfg.get('strategy')}"
    if "compare" in kinds:
        sections += _compare_sections(folder)
        subtitle = "strategy comparison"
    if "efficiency" in kinds:
        sections += _efficiency_sections(folder)
        subtitle = "sample efficiency: transfer against training from scratch"
    sections += [_EXPLORERS[k](folder) for k in kinds if k in _EXPLORERS]
    return h.page(title, subtitle, sections)


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write ``FOLDER/report.html`` (or ``out``): one self-contained HTML file.

    Args:
        folder: a run, comparison or sample-efficiency folder.
        out: another path for the HTML file.

    Returns:
        The path written.

    Example:
        >>> write_report("runs/compare-efficientnet_lite0-20261127-120000")  # doctest: +SKIP
        PosixPath('runs/compare-efficientnet_lite0-20261127-120000/report.html')
    """
    text = report_html(folder)
    path = Path(out) if out is not None else Path(folder) / REPORT_HTML
    atomic_write_text(path, text)
    return path
