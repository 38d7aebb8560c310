"""Helpers shared by the analyses: output folders, figures, reading JSON files, number lists."""

from __future__ import annotations

import contextlib
import json
import re
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import ConfigError, RunFolderError
from ..train import runfolder as rf


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block.

    The L-BFGS probes are thousands of small tensor operations, where thread hand-offs cost more
    than they save: a 400 x 1280, 10-class probe took 2.8 s on one thread and 55 s on two on a
    busy 2-core machine.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tight_layout(fig: Any) -> None:
    """``fig.tight_layout()`` without matplotlib's warning when long labels leave no room."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()


def save_figure(fig: Any, path: Path) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    tight_layout(fig)
    rf.atomic_save_figure(path, fig)
    pyplot().close(fig)
    return path


def default_out(kind: str, model: str) -> Path:
    """``runs/<kind>-<model>-<YYYYmmdd-HHMMSS>`` (the model's last path part, file-name safe)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.split(":", 1)[-1].rstrip("/").split("/")[-1])
    return Path("runs") / f"{kind}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_out(out: str | Path | None, kind: str, model: str, files: Iterable[str]) -> Path:
    """The output folder (created by the first file written into it); refused if it already holds
    this analysis's files.

    An existing folder is fine otherwise, so an explorer can write beside a run or another analysis.
    Nothing is created here, so input errors found later leave no empty folder behind.
    """
    path = Path(out) if out is not None else default_out(kind, model)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out: {path} exists and is a file; give a folder for the {kind} results.")
    clash = [name for name in files if (path / name).exists()]
    if clash:
        raise RunFolderError(
            f"{path} already holds {', '.join(clash)} from an earlier {kind}; nothing was "
            "overwritten. Choose another --out, or remove those files first."
        )
    return path


def read_json(path: Path) -> Any:
    """A JSON file (``RunFolderError`` naming the file when it is not valid JSON)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc}); it may have been edited or cut short.") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl records; lines that are not JSON objects are skipped (a file being written)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def parse_int_list(text: str | Sequence[int], name: str) -> list[int]:
    """``"5,10,20"`` -> ``[5, 10, 20]``, strictly increasing positive whole numbers.

    Example:
        >>> parse_int_list("10,30,100", "per_class")
        [10, 30, 100]
    """
    items = str(text).split(",") if isinstance(text, str) else list(text)
    try:
        values = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a comma-separated list of whole numbers; "
                          "write e.g. 10,30,100.") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{name}: give at least one positive whole number (>= 1), got {text!r}.")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"{name}: the values must be strictly increasing (each size is a larger "
                          f"nested subset of the one before), got {text!r}; write e.g. 10,30,100.")
    return values


def fmt_params(n: int) -> str:
    """``4_700_000`` -> ``'4.70 M'``; small counts stay whole.

    Example:
        >>> fmt_params(4_700_000), fmt_params(1_280), fmt_params(12)
        ('4.70 M', '1.28 k', '12')
    """
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 1_000:
        return f"{n / 1e3:.2f} k"
    return str(n)
