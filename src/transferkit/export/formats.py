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

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import ConfigError
from ..registry import Registry
from .graph import GraphInputs

__all__ = ["ExportFormat", "EXPORT_FORMATS", "DEFAULT_FORMAT"]


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

#: Every export format, by its ``--format`` name (filled by the format modules of this package).
EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format", option="format")
