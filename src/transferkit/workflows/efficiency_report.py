"""Sample-efficiency outputs: efficiency.json, efficiency_summary.json, efficiency.md, efficiency.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..io.atomic import atomic_write_json, atomic_write_text
from ..train.plots import pyplot, save_figure
from .multiplier import mean_curve

__all__ = ["write_outputs", "efficiency_figure", "markdown", "EFFICIENCY_JSON", "EFFICIENCY_SUMMARY",
           "EFFICIENCY_PLOT", "EFFICIENCY_MD"]

EFFICIENCY_JSON = "efficiency.json"  # a list: one object per trained point
EFFICIENCY_SUMMARY = "efficiency_summary.json"
EFFICIENCY_PLOT = "efficiency.png"
EFFICIENCY_MD = "efficiency.md"
_COLORS = {"feature-extraction": "#4c78a8", "fine-tune": "#f58518", "scratch": "#54a24b"}


def efficiency_figure(points: Sequence[dict[str, Any]], summary: dict[str, Any]) -> Any:
    """Test accuracy against examples per class (log axis): mean over seeds, the min-max band,
    every seed as a dot, and each transfer point's data multiplier next to it."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for method in summary.get("methods", []):
        curve = mean_curve(points, method)
        if not curve:
            continue
        xs = [c["per_class"] for c in curve]
        color = _COLORS.get(method)
        ax.plot(xs, [c["mean"] for c in curve], "o-", color=color, label=method)
        ax.fill_between(xs, [c["min"] for c in curve], [c["max"] for c in curve], color=color, alpha=0.15)
        dots = [(p["per_class"], p["accuracy"]) for p in points if p["method"] == method and p.get("accuracy") is not None]
        ax.scatter(*zip(*dots), s=10, color=color, alpha=0.5)
    best: dict[int, dict[str, Any]] = {}
    for m in summary.get("multipliers", []):
        if m["relation"] != "none" and (m["per_class"] not in best or m["accuracy"] > best[m["per_class"]]["accuracy"]):
            best[m["per_class"]] = m
    for size, m in best.items():
        sign = {"=": "", ">": ">", "<=": "<="}[m["relation"]]
        ax.annotate(f"{sign}{m['multiplier']:g}x", (size, m["accuracy"]), textcoords="offset points",
                    xytext=(4, 6), fontsize=8)
    ax.set_xscale("log")
    sizes = sorted({p["per_class"] for p in points})
    if sizes:
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.xaxis.set_minor_formatter(pyplot().NullFormatter())
    ax.set(xlabel="training examples per class (log scale)", ylabel="test accuracy", ylim=(0, 1.02),
           title=f"{summary.get('model')} on {summary.get('data')}: sample efficiency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="method (band: min-max over seeds)")
    return fig


def markdown(points: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """efficiency.md: the settings, mean ± std test accuracy per size and method, the multipliers."""
    methods = summary.get("methods", [])
    curves = {m: {c["per_class"]: c for c in mean_curve(points, m)} for m in methods}
    lines = ["# Sample efficiency", "",
             f"model: `{summary.get('model')}` · data: `{summary.get('data')}` · seeds: {summary.get('seeds')} · "
             f"end-to-end image size: {summary.get('image_size') or '-'} · test examples: {summary.get('n_test')} · "
             f"time budget: {summary.get('time_budget') or 'none'} s · took {summary.get('seconds')} s", "",
             "| per class | " + " | ".join(methods) + " |", "| ---: |" + " ---: |" * len(methods)]
    for size in summary.get("per_class", []):
        cells = []
        for m in methods:
            c = curves[m].get(size)
            cells.append(f"{c['mean']:.4f} ± {c['std']:.4f}" if c else "-")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines += ["", "## Data multiplier", "",
              "How many examples per class from-scratch training needed to match each transfer point "
              "(mean over seeds; interpolated on log examples per class):", ""]
    lines += [f"- {line}" for line in summary.get("headline", [])] or ["- (no transfer or no scratch points)"]
    lines += ["", "Every point:", ""] + [f"- {m['text']}" for m in summary.get("multipliers", [])]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, points: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Write the four files atomically."""
    atomic_write_json(out_dir / EFFICIENCY_JSON, list(points))
    atomic_write_json(out_dir / EFFICIENCY_SUMMARY, summary)
    atomic_write_text(out_dir / EFFICIENCY_MD, markdown(points, summary))
    save_figure(efficiency_figure(points, summary), out_dir / EFFICIENCY_PLOT)
