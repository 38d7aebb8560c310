"""TorchScript: a traced graph that ``torch.jit.load`` runs without transferkit installed.

Tracing (not scripting): HF and timm models are written for tracing, and the wrapper from
:func:`~transferkit.export.graph.build_graph` makes every input a plain tensor. The traced graph
keeps batch and sequence length free (checked by verification on a batch of another size).
TorchScript is deprecated in torch >= 2.10 but still ships; its warnings are silenced here.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from .formats import EXPORT_FORMATS, ExportFormat
from .graph import GraphInputs

__all__ = ["export_torchscript", "load_torchscript", "run_torchscript", "TorchScriptFormat"]


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Tracing reads HF config attributes that log warnings (``loss_type=None``); hide them."""
    hf_logging = None
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity() if hf_logging else None
    if hf_logging:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        if hf_logging and level is not None:
            hf_logging.set_verbosity(level)


def export_torchscript(graph: nn.Module, inputs: GraphInputs, path: Path, metadata: str = "") -> None:
    """Trace ``graph`` on ``inputs`` and save it; ``metadata`` goes in as ``extra/transferkit.json``.

    Raises:
        ExportError: tracing fails (the message names the first line of the tracer's error).

    Example:
        >>> export_torchscript(*build_graph(model, torch.randn(2, 3, 224, 224)), Path("m.pt"))  # doctest: +SKIP
    """
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_transformers():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(graph, inputs.tensors, check_trace=False, strict=False)
            traced = torch.jit.freeze(traced.eval())  # weights become constants: a smaller, faster graph
            torch.jit.save(traced, str(path), _extra_files={"transferkit.json": metadata})
    except Exception as exc:  # tracer failures come as RuntimeError, TypeError, ...
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ExportError(f"TorchScript tracing failed: {first.strip()[:300]}. Try --format onnx.") from None


def load_torchscript(path: str | Path, device: str = "cpu") -> Any:
    """``torch.jit.load`` a TorchScript file (TorchScript archives are not Python pickles)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location=device).eval()


@torch.no_grad()
def run_torchscript(module: Any, inputs: GraphInputs, device: str = "cpu") -> torch.Tensor:
    """Logits [B, C] (float32, CPU) of a loaded TorchScript module."""
    return module(*(t.to(device) for t in inputs.tensors)).float().cpu()


class TorchScriptFormat(ExportFormat):
    """A traced, frozen TorchScript graph; ``torch.jit.load`` runs it without transferkit."""

    name, default_file, title = "torchscript", "model.pt", "TorchScript"
    help = "torchscript"

    def write(self, graph: nn.Module, inputs: GraphInputs, path: Path, *, opset: int | None,
              dynamic_batch: bool, max_tokens: int | None) -> dict[str, Any]:
        export_torchscript(graph, inputs, path)
        return {}

    def open(self, path: str | Path, device: str = "cpu") -> Any:
        return load_torchscript(path, device)

    def run(self, loaded: Any, inputs: GraphInputs, device: str = "cpu") -> np.ndarray:
        return run_torchscript(loaded, inputs, device).numpy()


EXPORT_FORMATS.add(TorchScriptFormat.name, TorchScriptFormat())
