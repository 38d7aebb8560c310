"""The run folder's log and failure record while a run trains (rank 0 of a distributed run)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from ..io import runfolder as rf
from ..io.atomic import atomic_write_json
from .checkpoint import resume_hint
from .distributed import SINGLE, Distributed

log = logging.getLogger("transferkit")


@contextlib.contextmanager
def run_log(run_dir: Path, ctx: Distributed = SINGLE) -> Iterator[None]:
    """Send the transferkit log (INFO and up) to RUN_DIR/train.log while the block runs, hold the
    folder's running lock, and record an error that ends the run in RUN_DIR/failure.json (what
    the dashboard shows as failed; an interrupted run has neither the lock nor that file, and
    its log ends with how to resume it).
    Rank 0 alone does this in a distributed run."""
    if not ctx.main:
        yield
        return
    (run_dir / rf.FAILURE).unlink(missing_ok=True)  # a resumed run is not failed (yet)
    with rf.hold_running_lock(run_dir), _log_to(run_dir):
        try:
            yield
        except Exception as exc:
            atomic_write_json(run_dir / rf.FAILURE, {"error": " ".join(str(exc).split()),
                                                     "type": type(exc).__name__})
            raise
        except KeyboardInterrupt:  # Ctrl-C, or a signal a distributed rank turned into one
            log.warning(resume_hint(run_dir))
            raise


@contextlib.contextmanager
def _log_to(run_dir: Path) -> Iterator[None]:
    handler = logging.FileHandler(run_dir / rf.LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    old_level = log.level
    if log.getEffectiveLevel() > logging.INFO:  # library use: the run log still gets INFO
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.setLevel(old_level)
        log.removeHandler(handler)
        handler.close()
