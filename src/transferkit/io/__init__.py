"""Files: atomic writes, the run folder's layout, and the typed records written into it.

This layer sits just above ``errors``: everything that writes or reads a run folder (config,
training loop, reports, comparisons, the dashboard to come) goes through it, so a file name, a
write discipline or a record's fields are defined once.
"""

from .atomic import (
    atomic_save_figure,
    atomic_save_torch,
    atomic_save_weights,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    load_weights,
)
from .records import (
    SCHEMA_VERSION,
    EpochRecord,
    Event,
    EventKind,
    Phase,
    SkippedInputs,
    TestMetrics,
    epochs_to_best,
    read_epoch_records,
    read_test_metrics,
)
from .runfolder import check_run_folder, default_folder, new_empty_folder

__all__ = [
    "atomic_write", "atomic_write_text", "atomic_write_json", "atomic_save_weights", "atomic_save_figure",
    "atomic_save_torch", "load_weights",
    "SCHEMA_VERSION", "Phase", "EventKind", "Event", "EpochRecord", "TestMetrics", "SkippedInputs",
    "read_epoch_records", "read_test_metrics", "epochs_to_best",
    "check_run_folder", "default_folder", "new_empty_folder",
]
