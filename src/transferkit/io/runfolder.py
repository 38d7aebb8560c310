"""The run folder's layout: file names, the default folder name, and checks when loading a run.

A run folder (``transferkit train``) holds::

    config.yaml          the resolved TrainConfig; training it again reproduces the run
    model_spec.json      ModelSpec incl. labels and preprocessing
    assets/              tokenizer and HF config for text models (so a run loads offline)
    metrics.jsonl        one EpochRecord per line, rewritten atomically after every epoch
    model.safetensors    the best weights (an ordinary TransferModel state_dict)
    test_metrics.json    the TestMetrics record
    learning_curve.png   loss and accuracy curves
    train.log            the log (locked while a process trains the run: see ``is_running``)
    failure.json         a run that stopped on an error: the error (removed when it resumes)
    checkpoint/          while a run trains: the state after the last finished epoch
    adapter/             LoRA runs: the adapter in PEFT's format
    tensorboard/         with --tensorboard: event files
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX: a lock the kernel releases when its process dies, even by kill -9
    import fcntl
except ImportError:  # pragma: no cover - Windows: running is guessed from the log's age
    fcntl = None  # type: ignore[assignment]

from ..errors import RunFolderError

__all__ = [
    "ADAPTER",
    "ASSETS",
    "CHECKPOINT",
    "CONFIG",
    "CURVE",
    "FAILURE",
    "LOG",
    "METRICS",
    "MODEL_SPEC",
    "TENSORBOARD",
    "TEST_METRICS",
    "WEIGHTS",
    "check_run_folder",
    "default_folder",
    "hold_running_lock",
    "is_running",
    "new_empty_folder",
    "remove_temporaries",
]

CONFIG = "config.yaml"
MODEL_SPEC = "model_spec.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"
TEST_METRICS = "test_metrics.json"
CURVE = "learning_curve.png"
LOG = "train.log"
ASSETS = "assets"
CHECKPOINT = "checkpoint"
ADAPTER = "adapter"
TENSORBOARD = "tensorboard"
FAILURE = "failure.json"


def default_folder(model: str, *, kind: str | None = None, strategy: str | None = None) -> Path:
    """``runs/[<kind>-]<model>[-<strategy>]-<YYYYmmdd-HHMMSS>``: the one naming pattern of every
    folder transferkit creates when ``--out`` is not given (runs, comparisons, studies, explorers).

    The model part is the spec's last path component, made file-name safe.

    Example:
        >>> default_folder("hf:org/bert-base", kind="compare").name.startswith("compare-bert-base-")
        True
        >>> default_folder("builtin:minilm", strategy="full").name.startswith("minilm-full-")
        True
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.split(":", 1)[-1].rstrip("/").split("/")[-1])
    parts = [p for p in (kind, name, strategy) if p] + [time.strftime("%Y%m%d-%H%M%S")]
    return Path("runs") / "-".join(parts)


def new_empty_folder(path: str | Path, what: str = "Run folder", *, unique: bool = False) -> Path:
    """Create ``path``, which must not exist or be an empty folder (nothing is ever overwritten).

    Args:
        path: the folder to create.
        what: what messages call it.
        unique: ``path`` is a default name (``default_folder``): create a folder no other
            process has, adding ``-2``, ``-3``, ... when the name is taken, even by an empty
            folder (two runs started in the same second get a folder each).

    Raises:
        RunFolderError: ``path`` is a file or a folder with something in it (``unique=False``).

    Example:
        >>> a = new_empty_folder(tmp / "run", unique=True)  # doctest: +SKIP
        >>> new_empty_folder(tmp / "run", unique=True).name  # doctest: +SKIP
        'run-2'
    """
    path = Path(path)
    if unique:
        return _exclusive_folder(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunFolderError(
            f"{what} {path} already exists and is not empty; nothing was overwritten. Choose "
            "another --out, or remove that folder first."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _exclusive_folder(path: Path) -> Path:
    """``mkdir`` without ``exist_ok`` is atomic: of two processes, exactly one creates a name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RunFolderError(f"Could not create a new folder beside {path}: 999 folders of that name exist; "
                         "give --out, or tidy that folder.")


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the ``.<name>.<random>.tmp`` files and staging folders a killed process left in
    ``folder`` or below (``io.atomic`` and folder swaps name them so; a swapped-out folder is
    ``.<name>.<random>.old``); return what was removed."""
    removed = []
    found = [*Path(folder).rglob(".*.tmp"), *Path(folder).rglob(".*.old")]
    for path in sorted(found, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def check_run_folder(run_dir: str | Path) -> Path:
    """Raise a clear error unless ``run_dir`` holds a finished run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(
            f"Run folder {run_dir} does not exist. Give the folder that `transferkit train` printed "
            "at the end of training (it holds config.yaml, model_spec.json and model.safetensors)."
        )
    missing = [name for name in (CONFIG, MODEL_SPEC, WEIGHTS) if not (run_dir / name).is_file()]
    if missing:
        raise RunFolderError(
            f"Run folder {run_dir} is incomplete: {', '.join(missing)} missing. The run may have "
            "been stopped before it saved its best weights; train again or pick a finished run."
        )
    return run_dir


# Without fcntl, a run whose log changed this recently counts as running.
_RECENT_LOG_SECONDS = 120.0


@contextlib.contextmanager
def hold_running_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on RUN_DIR/train.log while the block runs, so that another process
    (the dashboard) can tell a run that trains now from one that was interrupted: the kernel drops
    the lock when the process ends, however it ends."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(Path(run_dir) / LOG, "a", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def is_running(run_dir: str | Path) -> bool:
    """Whether a process is training the run now (it holds the lock of :func:`hold_running_lock`)."""
    log_file = Path(run_dir) / LOG
    try:
        handle = open(log_file, "rb")
    except OSError:
        return False
    with handle:
        if fcntl is None:  # pragma: no cover
            return time.time() - log_file.stat().st_mtime < _RECENT_LOG_SECONDS
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False
