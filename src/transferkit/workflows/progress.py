"""Fine-tuning progress: ``transferkit plot`` draws a run's learning curves from metrics.jsonl.

metrics.jsonl is rewritten after every epoch, so ``plot_run`` works on a run that is still
training. The figure is the run folder's own learning curve (``train.plots``): phases and
unfreezing steps marked.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RunFolderError
from ..io import runfolder as rf
from ..io.records import EpochRecord, read_epoch_records
from ..train.plots import learning_curve_figure, save_figure

__all__ = ["plot_run", "read_metrics", "PROGRESS_PLOT"]

PROGRESS_PLOT = "progress.png"


def read_metrics(run_dir: str | Path) -> list[EpochRecord]:
    """The records of ``RUN_DIR/metrics.jsonl``; ``RunFolderError`` when there are none.

    Example:
        >>> read_metrics("runs/<run>")[0].phase  # doctest: +SKIP
        <Phase.HEAD: 'head'>
    """
    run_dir = Path(run_dir)
    path = run_dir / rf.METRICS
    if not run_dir.is_dir() or not path.is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {rf.METRICS}"
        raise RunFolderError(
            f"{run_dir} {what}, so it is not a run folder. Give the folder that `transferkit train` "
            f"writes (it holds config.yaml and {rf.METRICS}, written after every epoch)."
        )
    records = read_epoch_records(path)
    if not records:
        raise RunFolderError(f"{path} has no epoch records yet; plot again after the first epoch.")
    return records


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
    return save_figure(learning_curve_figure(records, Path(run_dir).resolve().name), path)
