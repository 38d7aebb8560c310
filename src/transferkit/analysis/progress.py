"""Fine-tuning progress: loss and accuracy curves from a run's metrics.jsonl, phases and unfreezing marked.

metrics.jsonl is rewritten after every epoch, so ``plot_run`` works on a run that is still
training. Each record's ``groups`` lists the optimizer's parameter groups at that epoch (layer
group names); a record whose list is longer than the one before, in the same phase, is an
unfreezing step (gradual unfreezing), marked with the groups that joined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import RunFolderError
from ..train import runfolder as rf
from ._common import pyplot, read_jsonl, save_figure

__all__ = ["plot_run", "progress_figure", "phase_changes", "unfreeze_events", "read_metrics", "PROGRESS_PLOT"]

PROGRESS_PLOT = "progress.png"


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``RUN_DIR/metrics.jsonl``; ``RunFolderError`` when there are none.

    Example:
        >>> read_metrics("runs/<run>")[0]["phase"]  # doctest: +SKIP
        'head'
    """
    run_dir = Path(run_dir)
    path = run_dir / rf.METRICS
    if not run_dir.is_dir() or not path.is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {rf.METRICS}"
        raise RunFolderError(
            f"{run_dir} {what}, so it is not a run folder. Give the folder that `transferkit train` "
            f"writes (it holds config.yaml and {rf.METRICS}, written after every epoch)."
        )
    records = [r for r in read_jsonl(path) if "phase" in r]
    if not records:
        raise RunFolderError(f"{path} has no epoch records yet; plot again after the first epoch.")
    return records


def phase_changes(records: Sequence[dict[str, Any]]) -> list[tuple[int, str]]:
    """``(index, phase)`` of each record that starts a new phase (after the first).

    Example:
        >>> phase_changes([{"phase": "linear-probe"}, {"phase": "fine-tune"}, {"phase": "fine-tune"}])
        [(1, 'fine-tune')]
    """
    return [(i, str(r.get("phase"))) for i, r in enumerate(records)
            if i and r.get("phase") != records[i - 1].get("phase")]


def unfreeze_events(records: Sequence[dict[str, Any]]) -> list[tuple[int, list[str]]]:
    """``(index, groups that joined)`` of each record whose phase gained optimizer groups.

    Example:
        >>> recs = [{"phase": "gradual", "groups": ["head"]}, {"phase": "gradual", "groups": ["head", "layer4"]}]
        >>> unfreeze_events(recs)
        [(1, ['layer4'])]
    """
    events = []
    for i in range(1, len(records)):
        prev, cur = records[i - 1], records[i]
        if prev.get("phase") != cur.get("phase"):
            continue
        before, now = prev.get("groups") or [], cur.get("groups") or []
        added = [g for g in now if g not in before]
        if len(now) > len(before) and added:
            events.append((i, added))
    return events


def progress_figure(records: Sequence[dict[str, Any]], title: str = "") -> Any:
    """Loss and accuracy (train solid, validation dashed) over the epochs of all phases in a row;
    grey dotted lines where a phase starts, orange dashed lines where layer groups unfreeze."""
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = list(range(1, len(records) + 1))
    for key, style in (("train", "-"), ("val", "--")):
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ys = [r.get(f"{key}_{metric}") for r in records]
            ax.plot(xs, [float("nan") if y is None else y for y in ys], style, marker="o", markersize=3,
                    label="validation" if key == "val" else key)
    starts = [(0, str(records[0].get("phase")))] + phase_changes(records)
    for i, phase in starts:
        for ax in (ax_loss, ax_acc):
            if i:
                ax.axvline(i + 0.5, color="grey", linestyle=":")
            ax.annotate(phase, (i + 0.6, 0.98), xycoords=("data", "axes fraction"), va="top", fontsize=8,
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


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw a run's training curves (finished or still running) into ``RUN_DIR/progress.png``.

    Args:
        run_dir: a run folder (it needs metrics.jsonl).
        out: another PNG path to write instead.

    Returns:
        The PNG's path.

    Example:
        >>> plot_run("runs/<run>")  # doctest: +SKIP
        PosixPath('runs/<run>/progress.png')
    """
    records = read_metrics(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / PROGRESS_PLOT
    title = Path(run_dir).resolve().name
    return save_figure(progress_figure(records, title), path)
