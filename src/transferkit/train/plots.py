"""The learning-curve figure: loss and accuracy over the epochs of every phase, phase changes
and unfreezing steps marked. The run folder's ``learning_curve.png``, ``transferkit plot``,
the HTML report and the comparison report all draw this one figure."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

from ..io.atomic import atomic_save_figure
from ..io.records import EpochRecord, EventKind, Phase

__all__ = ["pyplot", "tight_layout", "save_figure", "learning_curve_figure", "phase_changes", "unfreeze_events"]


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend, imported on first use (it is slow)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def tight_layout(fig: Any) -> None:
    """``fig.tight_layout()`` without matplotlib's warning when long labels leave no room."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay ``fig`` out, save it as PNG atomically, and close it."""
    tight_layout(fig)
    atomic_save_figure(path, fig)
    pyplot().close(fig)
    return Path(path)


def phase_changes(records: Sequence[EpochRecord]) -> list[tuple[int, Phase]]:
    """``(index, phase)`` of each record that starts a new phase (after the first).

    Example:
        >>> recs = [EpochRecord(Phase(p), 1, 0, 0, 0, 0) for p in ("linear-probe", "fine-tune", "fine-tune")]
        >>> [(i, str(p)) for i, p in phase_changes(recs)]
        [(1, 'fine-tune')]
    """
    return [(i, r.phase) for i, r in enumerate(records) if i and r.phase is not records[i - 1].phase]


def unfreeze_events(records: Sequence[EpochRecord]) -> list[tuple[int, list[str]]]:
    """``(index, groups that joined)`` of each record with an unfreezing event."""
    return [(i, list(e.groups)) for i, r in enumerate(records) for e in r.events_of(EventKind.UNFROZEN)]


def learning_curve_figure(records: Sequence[EpochRecord], title: str = "") -> Any:
    """Loss and accuracy (train solid, validation dashed) over the epochs of all phases in a row;
    grey dotted lines where a phase starts, orange dashed lines where layer groups unfreeze."""
    fig, (ax_loss, ax_acc) = pyplot().subplots(1, 2, figsize=(11, 4.2))
    xs = list(range(1, len(records) + 1))
    for key, style in (("train", "-"), ("val", "--")):
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ax.plot(xs, [getattr(r, f"{key}_{metric}") for r in records], style, marker="o", markersize=3,
                    label="validation" if key == "val" else key)
    starts = ([(0, records[0].phase)] if records else []) + phase_changes(records)
    for i, phase in starts:
        for ax in (ax_loss, ax_acc):
            if i:
                ax.axvline(i + 0.5, color="grey", linestyle=":")
            ax.annotate(str(phase), (i + 0.6, 0.98), xycoords=("data", "axes fraction"), va="top", fontsize=8,
                        color="dimgrey")
    for i, added in unfreeze_events(records):
        for ax in (ax_loss, ax_acc):
            ax.axvline(i + 0.5, color="#f58518", linestyle="--", alpha=0.8)
        ax_acc.annotate("+" + ",".join(added), (i + 0.6, 0.04), xycoords=("data", "axes fraction"),
                        fontsize=7, color="#f58518", rotation=90)
    ax_loss.set(xlabel="epoch (all phases in a row)", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch (all phases in a row)", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(loc="center right", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
