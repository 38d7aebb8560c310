"""Optional TensorBoard event files beside metrics.jsonl (``--tensorboard``).

metrics.jsonl stays the record of a run; the event files are a view of the same numbers for
people who already watch runs in TensorBoard. ``torch.utils.tensorboard`` needs the
``tensorboard`` package, imported only when the option is on.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..io.records import EpochRecord

__all__ = ["TensorBoardLog", "TENSORBOARD_DIR"]

TENSORBOARD_DIR = "tensorboard"

# EpochRecord field -> TensorBoard tag: train and validation share a chart ("loss", "accuracy").
_TAGS = {
    "train_loss": "loss/train", "val_loss": "loss/val",
    "train_accuracy": "accuracy/train", "val_accuracy": "accuracy/val",
}


class TensorBoardLog:
    """Writes each metrics record as scalars, one step per record (epochs of all phases in a row).

    Example:
        >>> tb = TensorBoardLog(Path("runs/x/tensorboard"))  # doctest: +SKIP
        >>> tb.add(EpochRecord(Phase.FINE_TUNE, 1, 0.7, 0.6, 0.8, 0.7), step=1)  # doctest: +SKIP
        >>> tb.close()  # doctest: +SKIP
    """

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises ImportError when the tensorboard package is absent
            raise ConfigError(
                "tensorboard: --tensorboard needs the tensorboard package, which is not installed. "
                "Install it with `pip install tensorboard` (or `pip install 'transferkit[tensorboard]'`), "
                "or train without --tensorboard: metrics.jsonl holds the same numbers."
            ) from None
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(folder))

    def add(self, record: EpochRecord, step: int) -> None:
        """Scalars of one epoch record (a rate per layer group under ``lr/``), and the phase as
        text; flushed at once so a running TensorBoard sees them."""
        for key, tag in _TAGS.items():
            value = getattr(record, key)
            if value == value:  # skip NaN
                self.writer.add_scalar(tag, float(value), step)
        if record.lrs:  # "lr": the group that joined last (the only rate schema 1 recorded)
            self.writer.add_scalar("lr", list(record.lrs.values())[-1], step)
        for group, rate in record.lrs.items():
            self.writer.add_scalar(f"lr/{group}", rate, step)
        self.writer.add_text("phase", f"epoch {record.epoch}: {record.phase}", step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
