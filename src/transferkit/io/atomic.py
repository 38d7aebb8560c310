"""Atomic writes: every file goes to a temporary name in its folder, then is renamed into place.

A killed process never leaves a half-written file behind (``os.replace`` is atomic on POSIX).
The temporary file is created with ``O_CREAT | O_EXCL`` and mode 0o666, so the kernel applies
the process's umask exactly as ``open()`` would; nothing reads or changes the umask (a
process-wide setting that other threads may rely on).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_json", "atomic_save_weights",
           "atomic_save_figure", "atomic_save_torch", "load_weights"]


def _temporary_file(path: Path) -> Path:
    """Create an empty, unique ``.<name>.<random>.tmp`` beside ``path`` (mode 0o666 & ~umask)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    Example:
        >>> atomic_write("out.bin", lambda tmp: Path(tmp).write_bytes(b"data"))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_file(path)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_save_weights(path: str | Path, state_dict: dict[str, Any]) -> None:
    """Save a state_dict as safetensors atomically.

    Tensors are cloned to contiguous CPU memory because safetensors refuses tensors that share
    storage (tied weights) or are views.
    """
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def atomic_save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` atomically; only for plain containers of tensors and numbers, which
    ``torch.load(..., weights_only=True)`` reads back without unpickling code."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_save_figure(path: str | Path, figure: Any) -> None:
    """Save a matplotlib figure as PNG atomically."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def load_weights(path: str | Path) -> dict[str, Any]:
    """Load safetensors weights (never unpickles)."""
    from safetensors.torch import load_file

    return load_file(str(path))
