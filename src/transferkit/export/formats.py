"""Export formats: one registered object per ``--format``, owning everything about that format.

``EXPORT_FORMATS`` is the one place that lists them (ONNX, TorchScript, TensorRT); the export
pipeline, the predictor for exported files, the sidecar check and the CLI's ``--format`` choices
ask it. A format says its default file name, which options it takes, whether it can run on this
machine, how to write a traced graph, and how to open and run the written file.

Example:
    >>> from transferkit.export import EXPORT_FORMATS
    >>> EXPORT_FORMATS.names()
    ('onnx', 'torchscript', 'tensorrt')
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import ConfigError, ExportError
from ..registry import Registry
from .graph import GraphInputs

__all__ = ["DEFAULT_FORMAT", "EXPORT_DIR", "EXPORT_FORMATS", "FILE_HASH_KEY", "ExportFormat", "check_pair", "file_sha256"]


class ExportFormat:
    """Base of the export formats; subclasses override what differs.

    Attributes:
        name: the ``--format`` value.
        default_file: the file name in ``RUN_DIR/export/`` when ``--out`` is not given.
        title: what messages call the file's runtime ("ONNX (ONNX Runtime)").
        help: one line for ``--help``.
        device: where the written file runs (TensorRT engines only on CUDA).
    """

    name = ""
    default_file = ""
    title = ""
    help = ""
    device = "cpu"

    def check_options(self, *, opset: int | None, quantize: str | None) -> None:
        """Reject options this format does not take (``ConfigError`` naming the option)."""
        if quantize is not None:
            raise ConfigError("quantize: int8 quantization is done by ONNX Runtime; use it with --format onnx.")
        if opset is not None:
            raise ConfigError(f"opset: --opset applies to ONNX only; drop it for --format {self.name}.")

    def ensure_available(self) -> None:
        """Raise ``BackendUnavailableError`` when this machine cannot write the format."""

    def write(self, graph: nn.Module, inputs: GraphInputs, path: Path, *, opset: int | None,
              dynamic_batch: bool, max_tokens: int | None) -> dict[str, Any]:
        """Export ``graph`` traced on ``inputs`` to ``path``; return sidecar entries of its own."""
        raise NotImplementedError

    def annotate(self, path: Path, sidecar: dict[str, Any]) -> None:
        """Store the sidecar inside the file too, where the format allows (ONNX metadata)."""

    def open(self, path: str | Path, device: str = "cpu") -> Any:
        """Load a written file for inference."""
        raise NotImplementedError

    def run(self, loaded: Any, inputs: GraphInputs, device: str = "cpu") -> np.ndarray:
        """Logits [B, C] (float32) of a loaded file on plain named inputs."""
        raise NotImplementedError


#: The format ``export_run`` and ``transferkit export`` write when none is asked for.
DEFAULT_FORMAT = "onnx"

#: The folder of a run that exported files go to when no ``out`` is given (``RUN_DIR/export/``).
EXPORT_DIR = "export"

#: Every export format, by its ``--format`` name (filled by the format modules of this package).
EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format", option="format")


#: The sidecar key holding the SHA-256 of the exported file it describes: the file and its
#: sidecar are renamed into place one after the other, so an export replaced with ``--force``
#: and killed between the two renames would leave a mixed pair; the hash makes that an error.
FILE_HASH_KEY = "file_sha256"


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (exported models can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_pair(artifact: str | Path, sidecar: dict[str, Any]) -> None:
    """Refuse an exported file whose sidecar was written for another file (sidecars written
    before the hash existed are taken as they are).

    Raises:
        ExportError: naming both files and how to repair them.
    """
    expected = sidecar.get(FILE_HASH_KEY)
    if expected and file_sha256(artifact) != expected:
        raise ExportError(
            f"{artifact} does not match its sidecar {Path(artifact).name}.json: the sidecar describes "
            "another export (an export replaced with --force was interrupted between the two "
            "files, or one of them was copied or edited). Export the run again with --force."
        )
