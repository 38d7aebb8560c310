"""TensorRT through torch-tensorrt: compiled on a CUDA device, saved as TorchScript.

The saved ``.ts`` file loads with ``import torch_tensorrt; torch.jit.load(path)`` on a machine
with the same TensorRT major version. Where torch-tensorrt or a CUDA device is missing, the
export stops with a :class:`~transferkit.errors.BackendUnavailableError` (exit status 2).
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import BackendUnavailableError, ExportError
from .formats import EXPORT_FORMATS, ExportFormat
from .graph import GraphInputs

__all__ = ["tensorrt_missing", "require_tensorrt", "export_tensorrt", "load_tensorrt", "TensorRTFormat"]

#: The largest batch a dynamic-batch engine is built for (TensorRT needs a range).
MAX_BATCH = 64


def tensorrt_missing() -> str | None:
    """Why TensorRT cannot run here, or None when torch-tensorrt and a CUDA device are present."""
    reasons = []
    if importlib.util.find_spec("torch_tensorrt") is None:
        reasons.append("the torch-tensorrt package is not installed")
    if not torch.cuda.is_available():
        reasons.append("no CUDA device is visible to torch")
    return " and ".join(reasons) or None


def require_tensorrt() -> Any:
    """Import torch_tensorrt, or raise BackendUnavailableError saying what is missing."""
    missing = tensorrt_missing()
    if missing is None:
        try:
            import torch_tensorrt

            return torch_tensorrt
        except Exception as exc:  # a broken install (mismatched torch / TensorRT libraries)
            missing = f"torch_tensorrt fails to import ({type(exc).__name__}: {str(exc)[:200]})"
    raise BackendUnavailableError(
        f"TensorRT is not available on this machine: {missing} (needs a CUDA GPU and "
        "torch-tensorrt, `pip install torch-tensorrt` matching your torch version). Export with "
        "--format onnx or --format torchscript here, or run this export on a GPU machine."
    )


def _input_specs(trt: Any, inputs: GraphInputs, dynamic_batch: bool, max_tokens: int | None) -> list[Any]:
    """``torch_tensorrt.Input`` ranges: batch 1..MAX_BATCH, sequence 1..max_tokens (text)."""
    specs = []
    for tensor in inputs.tensors:
        shape = list(tensor.shape)
        low, high = list(shape), list(shape)
        if dynamic_batch:
            low[0], high[0] = 1, max(MAX_BATCH, shape[0])
        if inputs.modality == "text":
            low[1], high[1] = 1, max(max_tokens or shape[1], shape[1])
        specs.append(trt.Input(min_shape=low, opt_shape=shape, max_shape=high, dtype=tensor.dtype))
    return specs


def export_tensorrt(graph: nn.Module, inputs: GraphInputs, path: Path, *, dynamic_batch: bool = True,
                    max_tokens: int | None = None) -> nn.Module:
    """Compile ``graph`` with torch-tensorrt (fp32, TF32 off) and save it as TorchScript.

    Returns:
        The compiled module (on CUDA), for verification in this process.

    Raises:
        BackendUnavailableError: no torch-tensorrt or no CUDA device.
        ExportError: compilation fails.
    """
    trt = require_tensorrt()
    device = torch.device("cuda")
    graph = copy.deepcopy(graph).to(device).eval()  # the eager model stays on the CPU as the reference
    cuda_inputs = tuple(t.to(device) for t in inputs.tensors)
    options: dict[str, Any] = {"ir": "dynamo", "enabled_precisions": {torch.float32},
                               "inputs": _input_specs(trt, inputs, dynamic_batch, max_tokens)}
    accepted = inspect.signature(trt.dynamo.compile).parameters
    for name, value in (("disable_tf32", True), ("truncate_double", True)):
        if name in accepted:
            options[name] = value  # fp32 parity with eager needs TF32 off
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            compiled = trt.compile(graph, **options)
            trt.save(compiled, str(path), output_format="torchscript", inputs=list(cuda_inputs))
    except Exception as exc:  # TensorRT raises many types
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ExportError(f"TensorRT compilation failed: {first.strip()[:300]}. Try --format onnx.") from None
    return compiled


def load_tensorrt(path: str | Path) -> Any:
    """Load a saved TensorRT TorchScript file (imports torch_tensorrt to register its runtime)."""
    require_tensorrt()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cuda").eval()


class TensorRTFormat(ExportFormat):
    """A TensorRT engine compiled by torch-tensorrt on a CUDA GPU, saved as TorchScript."""

    name, default_file, title = "tensorrt", "model.trt.ts", "TensorRT"
    help = "tensorrt (CUDA GPU)"
    device = "cuda"

    def ensure_available(self) -> None:
        require_tensorrt()

    def write(self, graph: nn.Module, inputs: GraphInputs, path: Path, *, opset: int | None,
              dynamic_batch: bool, max_tokens: int | None) -> dict[str, Any]:
        export_tensorrt(graph, inputs, path, dynamic_batch=dynamic_batch, max_tokens=max_tokens)
        return {}

    def open(self, path: str | Path, device: str = "cuda") -> Any:
        return load_tensorrt(path)

    def run(self, loaded: Any, inputs: GraphInputs, device: str = "cuda") -> np.ndarray:
        from .torchscript import run_torchscript

        return run_torchscript(loaded, inputs, "cuda").numpy()


EXPORT_FORMATS.add(TensorRTFormat.name, TensorRTFormat())
