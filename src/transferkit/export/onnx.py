"""ONNX: the torch.export-based exporter, ONNX Runtime sessions, metadata, int8 quantization.

``torch.onnx.export(..., dynamo=True)`` (the default exporter since torch 2.9) captures the model
with ``torch.export`` and translates the ATen graph with onnxscript; its graph runs faster in ONNX
Runtime than the legacy TorchScript-based exporter's (EfficientNet-Lite0, batch 1, 2 CPU cores:
25 ms against 35 ms). Batch and sequence length are symbolic dimensions, so one file serves any
batch and text length.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ExportError
from .formats import EXPORT_FORMATS, ExportFormat
from .graph import GraphInputs

__all__ = ["export_onnx", "onnx_session", "run_session", "set_metadata", "read_metadata",
           "quantize_int8", "unsupported_operator", "OPSET_RANGE", "OnnxFormat"]

log = logging.getLogger("transferkit")

#: Opsets accepted (the exporter writes its own, 20 in torch 2.14, and converts to others).
OPSET_RANGE = (17, 23)
_EXTERNAL_DATA_BYTES = 1_800 * 2**20  # protobuf files stop at 2 GB; bigger models keep weights beside


def _dynamic_shapes(inputs: GraphInputs, dynamic_batch: bool, max_tokens: int | None) -> tuple[Any, ...]:
    """One ``{axis: Dim}`` per input: batch (axis 0) and, for text, sequence length (axis 1)."""
    batch = torch.export.Dim("batch", min=1) if dynamic_batch else None
    if inputs.modality == "image":
        return ({0: batch} if batch is not None else {},)
    seq = torch.export.Dim("sequence", min=1, max=max_tokens) if max_tokens else torch.export.Dim("sequence", min=1)
    axes = {1: seq} if batch is None else {0: batch, 1: seq}
    return tuple(dict(axes) for _ in inputs.names)


def unsupported_operator(exc: BaseException) -> str | None:
    """The operator named in an exporter failure (``aten.kthvalue``), searching the cause chain."""
    patterns = (
        r"No ONNX function found for <OpOverload\(op='([\w.:]+)'",
        r"operator '?([\w]+::[\w.]+)'? to ONNX",  # the TorchScript-based exporter
        r"target=torch\.ops\.([\w.]+?)(?:\.default)?\]",
        r"Unsupported operator[: ]+'?([\w.:]+)",
    )
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        for pattern in patterns:
            match = re.search(pattern, text)
            if match:
                return match.group(1)
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints and deprecation warnings (they reach the CLI)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def export_onnx(graph: nn.Module, inputs: GraphInputs, path: Path, *, opset: int | None = None,
                dynamic_batch: bool = True, max_tokens: int | None = None) -> int:
    """Export ``graph`` to an ONNX file with named inputs and a ``logits`` output.

    Args:
        graph: from :func:`transferkit.export.graph.build_graph` (eval mode).
        inputs: the sample batch (at least two rows when ``dynamic_batch``).
        path: the ``.onnx`` file to write (weights inside the file below 1.8 GB).
        opset: ONNX opset (default: the exporter's).
        dynamic_batch: symbolic batch axis; else the batch is fixed at the sample's.
        max_tokens: the largest sequence length a text model accepts.

    Returns:
        The opset of the written model.

    Raises:
        ExportError: the exporter cannot convert the model; the message names the operator.

    Example:
        >>> export_onnx(*build_graph(model, torch.randn(2, 3, 224, 224)), Path("m.onnx"))  # doctest: +SKIP
        18
    """
    if opset is not None and not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        raise ConfigError(f"opset: {opset} is not supported; give one from {OPSET_RANGE[0]} to {OPSET_RANGE[1]}.")
    size = sum(p.numel() * p.element_size() for p in graph.parameters())
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                graph, inputs.tensors, str(path), dynamo=True, input_names=inputs.names,
                output_names=["logits"], opset_version=opset, verbose=False,
                dynamic_shapes=_dynamic_shapes(inputs, dynamic_batch, max_tokens),
                external_data=size > _EXTERNAL_DATA_BYTES,
            )
    except Exception as exc:  # the exporter raises many types (OnnxExporterError, torch._dynamo ...)
        raise _export_error(exc, opset) from None
    import onnx

    return int(next((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                     if o.domain in ("", "ai.onnx")), opset or 0))


def _export_error(exc: BaseException, opset: int | None) -> ExportError:
    op = unsupported_operator(exc)
    where = f"torch {torch.__version__}, opset {opset or 'default'}"
    if op:
        return ExportError(
            f"The model uses the operator {op}, which the ONNX exporter ({where}) cannot convert. "
            "Replace the layer that calls it with a supported one, or export with --format "
            "torchscript, which runs every PyTorch operator."
        )
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return ExportError(f"ONNX export failed ({where}): {first[:300]}. Try --format torchscript.")


def onnx_session(path: str | Path, *, device: str = "cpu", threads: int | None = None) -> Any:
    """An ONNX Runtime session with every graph optimisation on (CUDA provider when asked and present).

    Example:
        >>> session = onnx_session("model.onnx")  # doctest: +SKIP
        >>> [i.name for i in session.get_inputs()]  # doctest: +SKIP
        ['input']
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings about unused initializers reach the CLI
    if threads:
        options.intra_op_num_threads = int(threads)
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
        raise ExportError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:300]}") from None


def run_session(session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
    """Run a session on the inputs it declares (extra tokenizer tensors are dropped) -> [B, ...]."""
    wanted = [i.name for i in session.get_inputs()]
    return session.run(None, {name: feed[name] for name in wanted})[0]


def set_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Store ``metadata`` in the model's ``metadata_props`` (key ``transferkit``, JSON value)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "transferkit", json.dumps(metadata)
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The ``transferkit`` metadata of an ONNX file, or None."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        for entry in model.metadata_props:
            if entry.key == "transferkit":
                return json.loads(entry.value)
    except Exception:  # not an ONNX file (protobuf DecodeError), or unreadable JSON
        return None
    return None


def quantize_int8(source: Path, target: Path, modality: str) -> None:
    """ONNX Runtime dynamic quantization: int8 weights, activations quantized on the fly.

    Convolutions are left in fp32 for image models: dynamic quantization turns them into
    ``ConvInteger``, which ONNX Runtime's CPU kernels run ~9x slower than fp32 Conv
    (EfficientNet-Lite0, batch 1: 155 ms against 17 ms). MatMul/Gemm (all of a transformer's
    weights, and image heads) are quantized.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Gemm"] if modality == "image" else None
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" warning on the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=ops)
    except Exception as exc:
        raise ExportError(f"int8 quantization of {source.name} failed: {str(exc).splitlines()[0][:300]}") from None
    finally:
        root.setLevel(level)


class OnnxFormat(ExportFormat):
    """ONNX through the torch.export-based exporter, run and verified in ONNX Runtime."""

    name, default_file, title = "onnx", "model.onnx", "ONNX (ONNX Runtime)"
    help = "onnx (verified in ONNX Runtime)"

    def check_options(self, *, opset: int | None, quantize: str | None) -> None:
        if opset is not None and not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
            raise ConfigError(f"opset: {opset} is not supported; give one from {OPSET_RANGE[0]} to {OPSET_RANGE[1]}.")

    def write(self, graph: nn.Module, inputs: GraphInputs, path: Path, *, opset: int | None,
              dynamic_batch: bool, max_tokens: int | None) -> dict[str, Any]:
        return {"opset": export_onnx(graph, inputs, path, opset=opset, dynamic_batch=dynamic_batch,
                                     max_tokens=max_tokens)}

    def annotate(self, path: Path, sidecar: dict[str, Any]) -> None:
        set_metadata(path, sidecar)

    def open(self, path: str | Path, device: str = "cpu") -> Any:
        return onnx_session(path, device=device)

    def run(self, loaded: Any, inputs: GraphInputs, device: str = "cpu") -> np.ndarray:
        return run_session(loaded, inputs.as_feed())


EXPORT_FORMATS.add(OnnxFormat.name, OnnxFormat())
