"""``export_run``: a run folder -> a verified ONNX / TorchScript / TensorRT file and its sidecar.

Everything is written into a temporary folder beside the output first; only a file that passed
verification is renamed into place (with its sidecar and tokenizer folder), so a failed export
never leaves a partial file behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..inference import Run, load_run
from ..io.atomic import atomic_write_json
from ..io.runfolder import ADAPTER
from .formats import (
    DEFAULT_FORMAT,
    EXPORT_DIR,
    EXPORT_FORMATS,
    FILE_HASH_KEY,
    ExportFormat,
    file_sha256,
)
from .graph import GraphInputs, at_least_two, build_graph, with_padding
from .sidecar import build_sidecar, sidecar_path, tokenizer_dir
from .verify import (
    DEFAULT_TOLERANCE,
    Verification,
    accuracy_of,
    check_parity,
    sample_batch,
    validation_split,
)

__all__ = ["QUANTIZATIONS", "ExportResult", "export_run"]

log = logging.getLogger("transferkit")

QUANTIZATIONS = ("int8",)
_ACCURACY_LIMIT = 2000  # validation examples scored for the int8 accuracy change


@dataclass
class ExportResult:
    """What :func:`export_run` wrote and how it was checked.

    Attributes:
        path: the exported file; ``sidecar``: its JSON sidecar.
        format: ``onnx``, ``torchscript`` or ``tensorrt``.
        verification: parity with the eager model (None with ``verify=False``).
        quantization: for ``quantize="int8"``: validation accuracy before and after.
        seconds: wall time of the export; ``size_mb``: size of the file.
    """

    path: Path
    sidecar: Path
    format: str
    verification: Verification | None
    quantization: dict[str, Any] | None = None
    seconds: float = 0.0
    size_mb: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sidecar": str(self.sidecar), "format": self.format,
                "verification": self.verification.to_dict() if self.verification else None,
                "quantization": self.quantization, "seconds": round(self.seconds, 2),
                "size_mb": round(self.size_mb, 2), **self.extra}


def _check_options(fmt: ExportFormat, quantize: str | None, opset: int | None, tolerance: float,
                   samples: int) -> None:
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize: {quantize!r} is not one of {', '.join(QUANTIZATIONS)}.")
    fmt.check_options(opset=opset, quantize=quantize)
    if not tolerance >= 0:
        raise ConfigError(f"tolerance: must be >= 0 (the largest absolute logit difference accepted), got {tolerance}.")
    if isinstance(samples, bool) or int(samples) < 1:
        raise ConfigError(f"samples: must be at least 1, got {samples}.")


def _out_path(run: Run, fmt: ExportFormat, out: str | Path | None, quantize: str | None, force: bool) -> Path:
    name = fmt.default_file if not quantize else "model.int8.onnx"
    path = Path(out) if out else run.run_dir / EXPORT_DIR / name
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a file name, e.g. {path / name}.")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; nothing was overwritten. Pass --force to replace it, "
                          "or choose another --out.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _unmerged(run: Run) -> torch.nn.Module:
    """The run's model with its LoRA adapter as separate low-rank layers (``merge=False``).

    The run folder's weights hold ``W + s B A``; the adapter is loaded on top, its layers marked
    merged and unmerged, which leaves ``W`` in the base weights and ``B A`` in the factors.
    """
    adapter = run.run_dir / ADAPTER
    if not adapter.is_dir():
        raise ConfigError(f"--no-merge exports a LoRA adapter unmerged, but {run.run_dir} has no adapter/ "
                          "folder (it is not a LoRA run); drop --no-merge.")
    from ..lora import load_adapter, lora_layers, unmerge_lora

    load_adapter(run.model, adapter)
    for _, layer in lora_layers(run.model):
        layer.merged = True  # the loaded weights already include s B A
    unmerge_lora(run.model)
    return run.model.eval()


def _slice(sample: Any, stop: int) -> Any:
    if isinstance(sample, torch.Tensor):
        return sample[:stop]
    return {k: v[:stop] for k, v in sample.items()}


class _Exporter:
    """One export: the run, the chosen format and options, and the staging folder."""

    def __init__(self, run: Run, model: torch.nn.Module, fmt: ExportFormat, staging: Path, name: str, *,
                 opset: int | None, dynamic_batch: bool) -> None:
        self.run, self.model, self.fmt, self.staging, self.name = run, model, fmt, staging, name
        self.opset, self.dynamic_batch = opset, dynamic_batch
        self.spec = run.model.spec
        self.max_tokens = self.spec.text.max_length if self.spec.text else None
        self.written: dict[str, Any] = {}  # the format's own sidecar entries (ONNX: the opset written)

    def write(self, path: Path, sample: Any) -> GraphInputs:
        """Export the model traced on ``sample`` to ``path``; return the graph's inputs."""
        if self.spec.modality == "text":
            sample = with_padding(sample, getattr(self.run.model.tokenizer(), "pad_token_id", None) or 0)
        sample = at_least_two(sample) if self.dynamic_batch else _slice(sample, 1)
        graph, inputs = build_graph(self.model, sample)
        self.written = self.fmt.write(graph, inputs, path, opset=self.opset, dynamic_batch=self.dynamic_batch,
                                      max_tokens=self.max_tokens)
        return inputs

    def runner(self, path: Path) -> Callable[[Any], torch.Tensor]:
        """``loader batch -> logits [B, C]`` with the exported file, in the format's runtime."""
        loaded = self.fmt.open(path, self.fmt.device)
        return lambda batch: torch.from_numpy(np.asarray(
            self.fmt.run(loaded, build_graph(self.model, batch)[1], self.fmt.device), dtype=np.float32))

    def verify(self, run_exported: Callable[[Any], torch.Tensor], sample: Any, source: str,
               tolerance: float) -> Verification:
        """Compare on the sample (batch 1 too when the batch is dynamic; row by row when fixed)."""
        batches = [sample, _slice(sample, 1)] if self.dynamic_batch else [_slice(sample, 1)]
        eager, exported = [], []
        with torch.no_grad():
            for batch in batches:
                eager.append(self.model(batch).float())
                exported.append(run_exported(batch))
        result = check_parity(torch.cat(eager), torch.cat(exported), tolerance, source, self.fmt.title)
        result.n = int(eager[0].shape[0])
        return result

    def sidecar(self, inputs: GraphInputs, extra: dict[str, Any]) -> dict[str, Any]:
        data = build_sidecar(self.spec, self.fmt.name, self.name, inputs, dynamic_batch=self.dynamic_batch,
                             extra=extra)
        data.update(self.written)
        return data


def _quantize(exporter: _Exporter, fp32: Path, target: Path, split: Any) -> dict[str, Any]:
    """int8 dynamic quantization, with the validation accuracy of both files."""
    from .onnx import quantize_int8

    quantize_int8(fp32, target, exporter.spec.modality)
    report: dict[str, Any] = {"method": "onnxruntime dynamic int8",
                              "ops": "MatMul, Gemm" if exporter.spec.modality == "image" else "all"}
    if split is None:
        log.warning("no validation data: the accuracy change of int8 quantization is not measured")
        return report
    from ..data import Split

    subset = Split(split.items[:_ACCURACY_LIMIT], split.labels[:_ACCURACY_LIMIT])
    fp32_acc = accuracy_of(exporter.runner(fp32), exporter.run, subset)
    int8_acc = accuracy_of(exporter.runner(target), exporter.run, subset)
    report.update(val_accuracy_fp32=fp32_acc, val_accuracy_int8=int8_acc,
                  accuracy_change=int8_acc - fp32_acc, n=len(subset))
    return report


def _publish(staging: Path, folder: Path, names: list[str]) -> None:
    """Move the staged files into ``folder`` in the order given, replacing old ones.

    The sidecar and the model file go last, one right after the other; the sidecar carries the
    model file's hash, so if a kill falls between the two renames, loading the mixed pair is an
    error (``formats.check_pair``) rather than predictions with another export's labels.
    """
    for name in names:
        source, target = staging / name, folder / name
        if not source.exists():
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(source, target)


def export_run(
    run_dir: str | Path,
    format: str = DEFAULT_FORMAT,
    *,
    out: str | Path | None = None,
    opset: int | None = None,
    dynamic_batch: bool = True,
    quantize: str | None = None,
    verify: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    samples: int = 16,
    merge: bool = True,
    force: bool = False,
) -> ExportResult:
    """Export a run's model to ONNX, TorchScript or TensorRT, verify it, write its sidecar.

    Args:
        run_dir: a run folder written by :func:`transferkit.train`.
        format: ``onnx``, ``torchscript`` or ``tensorrt`` (CUDA + torch-tensorrt).
        out: the file to write (default ``RUN_DIR/export/model.onnx`` / ``model.pt`` / ``model.trt.ts``).
        opset: ONNX opset (default: the exporter's, 20 in torch 2.14).
        dynamic_batch: any batch size (default); else the file takes batches of one.
        quantize: ``"int8"``: ONNX Runtime dynamic quantization (ONNX only); the fp32 graph is
            verified and the validation accuracy of both is reported.
        verify: compare with the eager model on up to ``samples`` validation examples.
        tolerance: largest absolute logit difference accepted.
        merge: LoRA runs: export the merged model (default) or the adapter as separate layers.
        force: replace an existing ``out``.

    Returns:
        An :class:`ExportResult` (path, sidecar, verification, quantization report).

    Raises:
        ExportError: an operator cannot be exported, or the file does not match the eager model.
        BackendUnavailableError: TensorRT without torch-tensorrt or a CUDA device.
        ConfigError: a bad option, or ``out`` exists without ``force``.

    Example:
        >>> result = export_run("runs/my-run", "onnx")  # doctest: +SKIP
        >>> result.verification.max_abs_diff < 1e-4  # doctest: +SKIP
        True
    """
    started = time.perf_counter()
    fmt = EXPORT_FORMATS.get(format)
    _check_options(fmt, quantize, opset, tolerance, samples)
    fmt.ensure_available()  # fail before loading anything
    run = load_run(run_dir, "cpu")
    path = _out_path(run, fmt, out, quantize, force)
    model = run.model if merge else _unmerged(run)
    model.float().eval()
    split = validation_split(run) if (verify or quantize) else None
    sample, source = sample_batch(run, split, samples)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # an earlier export of this file, killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        exporter = _Exporter(run, model, fmt, staging, path.name, opset=opset, dynamic_batch=dynamic_batch)
        first = staging / ("fp32.onnx" if quantize else path.name)
        inputs = exporter.write(first, sample)
        verification = exporter.verify(exporter.runner(first), sample, source, tolerance) if verify else None
        quantization = _quantize(exporter, first, staging / path.name, split) if quantize else None
        extra = {"verification": verification.to_dict() if verification else None, "quantization": quantization,
                 "merged_lora": merge, "run_dir": str(run.run_dir.resolve())}
        sidecar = exporter.sidecar(inputs, extra)
        fmt.annotate(staging / path.name, sidecar)
        sidecar[FILE_HASH_KEY] = file_sha256(staging / path.name)  # the file as published
        atomic_write_json(staging / sidecar_path(path).name, sidecar)
        if run.model.spec.modality == "text":
            run.model.tokenizer().save_pretrained(str(staging / tokenizer_dir(path).name))
        _publish(staging, path.parent, [tokenizer_dir(path).name, path.name + ".data",
                                        sidecar_path(path).name, path.name])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = path.stat().st_size / 2**20
    log.debug("exported %s to %s (%.1f MB)", format, path, size)
    return ExportResult(path, sidecar_path(path), format, verification, quantization,
                        time.perf_counter() - started, size, dict(exporter.written))
