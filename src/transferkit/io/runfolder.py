"""The run folder's layout: file names, the default folder name, and checks when loading a run.

A run folder (``transferkit train``) holds::

    config.yaml          the resolved TrainConfig; training it again reproduces the run
    model_spec.json      ModelSpec incl. labels and preprocessing
    assets/              tokenizer and HF config for text models (so a run loads offline)
    metrics.jsonl        one EpochRecord per line, rewritten atomically after every epoch
    model.safetensors    the best weights (an ordinary TransferModel state_dict)
    test_metrics.json    the TestMetrics record
    learning_curve.png   loss and accuracy curves
    train.log            the log
    checkpoint/          while a run trains: the state after the last finished epoch
    adapter/             LoRA runs: the adapter in PEFT's format
    tensorboard/         with --tensorboard: event files
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..errors import RunFolderError

__all__ = ["CONFIG", "MODEL_SPEC", "WEIGHTS", "METRICS", "TEST_METRICS", "CURVE", "LOG", "ASSETS",
           "CHECKPOINT", "ADAPTER", "TENSORBOARD", "default_folder", "new_empty_folder",
           "check_run_folder"]

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


def new_empty_folder(path: str | Path, what: str = "Run folder") -> Path:
    """Create ``path``, which must not exist or be an empty folder (nothing is ever overwritten).

    Raises:
        RunFolderError: ``path`` is a file or a folder with something in it.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunFolderError(
            f"{what} {path} already exists and is not empty; nothing was overwritten. Choose "
            "another --out, or remove that folder first."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


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
