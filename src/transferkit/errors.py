"""Error types. Every error a user can cause is a ``TransferkitError``.

The CLI prints ``str(error)`` as one paragraph and exits with status 2; the message must say
what was wrong and how to fix it. Subclasses also subclass the builtin they refine so that
library users can catch them the usual way (``except KeyError``).
"""

from __future__ import annotations

__all__ = [
    "TransferkitError",
    "ConfigError",
    "UnknownModelError",
    "UnsupportedModelError",
    "WeightsUnavailableError",
    "WeightsMismatchError",
    "DataError",
    "RunFolderError",
    "ExportError",
    "BackendUnavailableError",
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


class DataError(TransferkitError, ValueError):
    """The data cannot be used as given (missing columns, one class, too many bad files, ...)."""


class RunFolderError(TransferkitError, FileNotFoundError):
    """A run folder is missing, incomplete, or from an incompatible version."""


class ExportError(TransferkitError, RuntimeError):
    """A model cannot be exported, or the exported file does not match the eager model."""


class BackendUnavailableError(TransferkitError, RuntimeError):
    """An optional runtime (TensorRT, a CUDA device, ...) is not available on this machine."""
