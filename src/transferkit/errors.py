"""Error types. Every error a user can cause is a ``TransferkitError``.

The CLI prints ``str(error)`` as one paragraph and exits with status 2; the message must say
what was wrong and how to fix it. Subclasses also subclass the builtin they refine so that
library users can catch them the usual way (``except KeyError``).
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "TransferkitError",
    "ConfigError",
    "UnknownModelError",
    "UnsupportedModelError",
    "WeightsUnavailableError",
    "WeightsMismatchError",
    "ModelLoadError",
    "DataError",
    "UnreadableImagesError",
    "RunFolderError",
    "ExportError",
    "BackendUnavailableError",
    "FileAccessError",
    "TrainingDivergedError",
    "file_access_error",
]


class TransferkitError(Exception):
    """Root of all transferkit errors: bad input that the user can fix."""

    def __str__(self) -> str:  # KeyError quotes its message; keep one clean paragraph instead
        return " ".join(str(a) for a in self.args)


class ConfigError(TransferkitError, ValueError):
    """A configuration value is invalid (the message names the field)."""


class UnknownModelError(TransferkitError, KeyError):
    """A model spec names a source or model that does not exist."""


class UnsupportedModelError(TransferkitError, TypeError):
    """The model loads, but its family is not one that model surgery knows."""


class WeightsUnavailableError(TransferkitError, FileNotFoundError):
    """Pre-trained weights are needed but are neither cached nor downloadable."""


class WeightsMismatchError(TransferkitError, ValueError):
    """A weights file does not fit the architecture (missing keys or wrong shapes)."""


class ModelLoadError(TransferkitError, OSError):
    """A model's files are there (a local folder, a cached copy) but fail to load: a broken
    config, a missing or damaged weights file, a checksum that does not match."""


class DataError(TransferkitError, ValueError):
    """The data cannot be used as given (missing columns, one class, too many bad files, ...)."""


class UnreadableImagesError(DataError):
    """Some images to predict cannot be decoded; the others were predicted.

    Attributes:
        unreadable: ``{path: reason}`` for each image that has no prediction.
        results: the predictions of the readable images, in input order (what ``predict``
            would have returned for them alone), so a batch job keeps its work.
    """

    def __init__(self, unreadable: dict[str, str], results: list[dict], n_inputs: int) -> None:
        self.unreadable, self.results = unreadable, results
        shown = "; ".join(f"{path} ({reason})" for path, reason in list(unreadable.items())[:5])
        more = f"; and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        done = ("Nothing was predicted." if not results else "The other image was predicted."
                if len(results) == 1 else f"The other {len(results)} were predicted.")
        super().__init__(f"{len(unreadable)} of {n_inputs} image(s) cannot be read and have no prediction: "
                         f"{shown}{more}. {done} Remove or re-export the broken files (or fix the paths); "
                         "for images over the pixel cap, downscale them or raise --max-image-pixels.")


class RunFolderError(TransferkitError, FileNotFoundError):
    """A run folder is missing, incomplete, or from an incompatible version."""


class ExportError(TransferkitError, RuntimeError):
    """A model cannot be exported, or the exported file does not match the eager model."""


class BackendUnavailableError(TransferkitError, RuntimeError):
    """An optional runtime (TensorRT, a CUDA device, ...) is not available on this machine."""


class FileAccessError(TransferkitError, OSError):
    """A file or folder could not be read or written (disk full, permission denied, ...): the
    message names the operation and the path. Still an ``OSError`` (``errno`` and ``filename``
    are kept) for callers that catch those."""


# What to do about a failed file operation, by errno; the default covers the rest.
_FILE_FIXES = {
    _errno.EACCES: "Check its permissions (and its folder's), or choose another path.",
    _errno.EPERM: "Check its permissions (and its folder's), or choose another path.",
    _errno.ENOSPC: "The disk is full: free some space, or choose a path on another disk.",
    _errno.EDQUOT: "The disk quota is used up: free some space, or choose a path on another disk.",
    _errno.EFBIG: "The file grew past the size this system allows (ulimit -f): raise the limit, or "
                  "choose a path on another disk.",
    _errno.EROFS: "That file system is read-only: choose a path on a writable disk.",
    _errno.ENOENT: "Check that the path exists.",
    _errno.ENOTDIR: "A part of the path is a file, not a folder: check the path.",
    _errno.EISDIR: "That path is a folder: give a file name.",
}


def file_access_error(exc: OSError, operation: str, path: str | os.PathLike[str] | None = None) -> FileAccessError:
    """The one-paragraph error for a failed file operation: ``could not write /x/y: Permission
    denied. Check its permissions, ...``; ``errno`` and ``filename`` are kept.

    Args:
        exc: the ``OSError`` raised by the operation.
        operation: what was being done, as a verb phrase (``write``, ``create the folder``).
        path: the file or folder (default: the error's own ``filename``).

    Example:
        >>> str(file_access_error(PermissionError(13, "Permission denied"), "write", "/x/y"))
        "could not write /x/y: Permission denied. Check its permissions (and its folder's), or choose another path."
    """
    target = path if path is not None else exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    fix = _FILE_FIXES.get(exc.errno or -1, "Check the path and its permissions.")
    where = f" {os.fsdecode(target)}" if target is not None else ""
    error = FileAccessError(f"could not {operation}{where}: {reason}. {fix}")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror, target
    return error


class TrainingDivergedError(TransferkitError, ArithmeticError):
    """The training loss (or a weight) became NaN or infinite; the message names the epoch and
    step. No run folder is finished with such weights."""
