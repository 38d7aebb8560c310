"""Atomic writes: every file goes to a temporary name in its folder, then is renamed into place.

A killed process never leaves a half-written file behind (``os.replace`` is atomic on POSIX).
The temporary file is flushed to disk (``fsync``) before the rename and the folder after it, so
a power cut cannot leave the new name pointing at an empty file either. A killed process may
leave its ``.<name>.<random>.tmp`` file; ``runfolder.remove_temporaries`` clears them on resume.
The temporary file is created with ``O_CREAT | O_EXCL`` and mode 0o666, so the kernel applies
the process's umask exactly as ``open()`` would; nothing reads or changes the umask (a
process-wide setting that other threads may rely on).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import RunFolderError, TransferkitError, file_access_error

__all__ = [
    "KILL_AT_ENV",
    "atomic_save_figure",
    "atomic_save_torch",
    "atomic_save_weights",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_path",
    "kill_point",
    "load_weights",
]

#: Test hook (never set by users): ``<point>[:<n>]`` makes the process SIGKILL itself the n-th
#: time (default 1) it reaches the named point, so tests can kill a real ``transferkit train``
#: at an exact moment (``write:<file name>``: a temporary file written, not yet renamed;
#: ``train-step``, ``fit-done``, ``test-pass``: see ``train.loop`` and ``train.runner``).
#: ``<point>[:<n>]@<rank>`` kills only the worker of that rank (``RANK``) of a distributed run.
KILL_AT_ENV = "TRANSFERKIT_TEST_KILL_AT"
_reached: dict[str, int] = {}


def kill_point(name: str) -> None:
    """Test hook: SIGKILL this process here when ``TRANSFERKIT_TEST_KILL_AT`` names this point.

    Costs one environment lookup when the variable is unset (every normal run).
    """
    wanted = os.environ.get(KILL_AT_ENV)
    if not wanted:
        return
    wanted, _, rank = wanted.partition("@")
    if rank and rank != os.environ.get("RANK", "0"):
        return
    point, _, count = wanted.rpartition(":")
    if not (point and count.isdigit()):
        point, count = wanted, "1"
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a folder's) contents to disk. Folders: best effort, as some file
    systems and platforms cannot open or sync a directory."""
    is_dir = os.path.isdir(path)
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
    except OSError:
        if is_dir:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not is_dir:
            raise
    finally:
        os.close(fd)


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
    """Call ``write(tmp_path)``, flush the temporary file to disk, rename it onto ``path`` and
    flush the folder (so the rename itself survives a power cut).

    Example:
        >>> atomic_write("out.bin", lambda tmp: Path(tmp).write_bytes(b"data"))  # doctest: +SKIP
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary_file(path)
    except OSError as exc:  # disk full, permission denied: name the file, not a temporary
        raise file_access_error(exc, "write", path) from exc
    try:
        write(str(tmp))
        fsync_path(tmp)
        kill_point(f"write:{path.name}")
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, TransferkitError):
            raise file_access_error(exc, "write", path) from exc
        raise
    fsync_path(path.parent)


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
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: _save_safetensors(tensors, tmp))


def _save_safetensors(tensors: dict[str, Any], tmp: str) -> None:
    """``safetensors.torch.save_file``, its I/O errors turned back into ``OSError``s (it raises
    ``SafetensorError("... I/O error: No space left on device (os error 28)")`` instead)."""
    import re

    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, tmp, metadata={"format": "pt"})
    except SafetensorError as exc:
        found = re.search(r"I/O error: (.*?) \(os error (\d+)\)", str(exc))
        if found is None:
            raise
        raise OSError(int(found[2]), found[1], tmp) from exc


def atomic_save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` atomically; only for plain containers of tensors and numbers, which
    ``torch.load(..., weights_only=True)`` reads back without unpickling code."""
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_save_figure(path: str | Path, figure: Any) -> None:
    """Save a matplotlib figure as PNG atomically."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def load_weights(path: str | Path) -> dict[str, Any]:
    """Load safetensors weights (never unpickles).

    Raises:
        RunFolderError: the file is truncated or corrupt (its header does not parse or does not
            cover the file), naming the file.
        FileAccessError: it cannot be read (permissions, I/O error).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise RunFolderError(
            f"The weights file {path} is damaged: it is truncated or not a safetensors file "
            f"({exc}). Nothing was loaded; restore the file from a copy, or train the run again."
        ) from None
    except OSError as exc:
        raise file_access_error(exc, "read", path) from exc
