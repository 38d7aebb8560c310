"""The run folder: layout, atomic writes, and loading a finished run.

Every file is written to a temporary file in the same folder and renamed into place, so a
killed run never leaves a half-written file behind (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import RunFolderError

CONFIG = "config.yaml"
MODEL_SPEC = "model_spec.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.jsonl"
TEST_METRICS = "test_metrics.json"
CURVE = "learning_curve.png"
LOG = "train.log"
ASSETS = "assets"

_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what open() would have
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_save_weights(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Save a state_dict as safetensors atomically.

    Tensors are cloned to contiguous CPU memory because safetensors refuses tensors that share
    storage (tied weights) or are views.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    _atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def atomic_save_figure(path: Path, figure: Any) -> None:
    """Save a matplotlib figure as PNG atomically."""
    _atomic_write(Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load safetensors weights (never unpickles)."""
    from safetensors.torch import load_file

    return load_file(str(path))


class MetricsLog:
    """``metrics.jsonl``: one JSON object per epoch and phase, rewritten atomically each epoch.

    Rewriting the whole (small) file rather than appending keeps every state of the file a valid
    JSON-lines file even if the process is killed mid-write.
    """

    def __init__(self, path: Path, tensorboard_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        self.tensorboard = None
        if tensorboard_dir is not None:  # --tensorboard: the same records as event files
            from .tensorboard import TensorBoardLog

            self.tensorboard = TensorBoardLog(tensorboard_dir)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
        if self.tensorboard is not None:
            self.tensorboard.add(record, step=len(self.records))

    def close(self) -> None:
        """Close the TensorBoard writer, if any (metrics.jsonl needs no closing)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def check_run_folder(run_dir: Path) -> Path:
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
