"""``metrics.jsonl`` as training writes it: one ``EpochRecord`` per line, rewritten atomically
after every epoch (and, with ``--tensorboard``, the same numbers as event files)."""

from __future__ import annotations

import json
from pathlib import Path

from ..io.atomic import atomic_write_text
from ..io.records import EpochRecord

__all__ = ["MetricsLog"]


class MetricsLog:
    """The records of a run so far, mirrored to ``metrics.jsonl``.

    Rewriting the whole (small) file rather than appending keeps every state of the file a valid
    JSON-lines file even if the process is killed mid-write.
    """

    def __init__(self, path: Path | None, tensorboard_dir: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None  # None: kept, not written (ranks after 0)
        self.records: list[EpochRecord] = []
        self.tensorboard = None
        if tensorboard_dir is not None:  # --tensorboard: the same records as event files
            from .tensorboard import TensorBoardLog

            self.tensorboard = TensorBoardLog(tensorboard_dir)

    def append(self, record: EpochRecord) -> None:
        self.records.append(record)
        if self.path is None:
            return
        atomic_write_text(self.path, "".join(json.dumps(r.to_dict()) + "\n" for r in self.records))
        if self.tensorboard is not None:
            self.tensorboard.add(record, step=len(self.records))

    def close(self) -> None:
        """Close the TensorBoard writer, if any (metrics.jsonl needs no closing)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
