"""Latency of a run's exported files against its eager model, at the same batch sizes.

Each file in ``RUN_DIR/export/`` written by :func:`export_run` (the default file name of its
format, with its sidecar) is timed beside the eager model loaded with :func:`load_run`, on the
same synthetic preprocessed batch, so the numbers compare the model runtimes only (reading and
resizing images, tokenizing: the same for all, left out). A time is the median of several timed
calls after warm-up calls. The report is kept in ``RUN_DIR/export/latency.json``.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, TransferkitError
from ..inference import Run, load_run
from ..io.atomic import atomic_write_json
from .formats import EXPORT_DIR, EXPORT_FORMATS
from .graph import GraphInputs, build_graph
from .predictor import load_exported
from .sidecar import read_sidecar, sidecar_path
from .verify import sample_batch

__all__ = [
    "LATENCY_JSON",
    "LatencyReport",
    "LatencyRow",
    "exported_files",
    "measure_latency",
    "median_seconds",
    "read_latency",
]

log = logging.getLogger("transferkit")

LATENCY_JSON = "latency.json"
_SCHEMA = 1


@dataclass
class LatencyRow:
    """One model timed at each batch size.

    Attributes:
        name: ``eager`` or the export format (``onnx``, ``torchscript``, ``tensorrt``).
        device: where it ran (``cpu``; TensorRT and its eager reference: ``cuda``).
        ms: median milliseconds per call, by batch size (as a string key: JSON object keys).
        file: the exported file's name inside ``RUN_DIR/export/`` (None for eager).
        verification: the file's verification from its sidecar (max_abs_diff, top1_agreement, ...).
        error: why the file could not be timed (then ``ms`` is empty).
    """

    name: str
    device: str
    ms: dict[str, float] = field(default_factory=dict)
    file: str | None = None
    verification: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class LatencyReport:
    """What :func:`measure_latency` measured (the content of ``latency.json``)."""

    batch_sizes: list[int]
    rows: list[LatencyRow]
    measured_at: float
    schema_version: int = _SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyReport:
        rows = [LatencyRow(**row) for row in data.get("rows", [])]
        return cls([int(b) for b in data["batch_sizes"]], rows, float(data.get("measured_at", 0.0)),
                   int(data.get("schema_version", _SCHEMA)))


def median_seconds(call: Callable[[], Any], *, warmup: int = 2, repeats: int = 15, budget: float = 3.0,
                   sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``call()`` after ``warmup`` untimed calls.

    Stops early (after at least 3 timed calls) once ``budget`` seconds were spent timing, so a
    slow model on a large batch does not take minutes. ``sync`` waits for queued GPU work.

    Example:
        >>> median_seconds(lambda: sum(range(1000)), repeats=5) < 0.1
        True
    """
    done = sync or (lambda: None)
    for _ in range(warmup):
        call()
    done()
    times: list[float] = []
    spent = 0.0
    while len(times) < max(repeats, 1) and (len(times) < 3 or spent < budget):
        start = time.perf_counter()
        call()
        done()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return statistics.median(times)


def _batch(run: Run, size: int) -> Any:
    """A synthetic preprocessed batch of ``size`` (image [B, 3, H, W] or tokenizer dict [B, T])."""
    sample, _ = sample_batch(run, None, size)
    return sample


def _sync(device: str) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device == "cuda" else None


def _time_eager(run: Run, device: str, batch_sizes: Sequence[int], inputs: dict[int, GraphInputs],
                **timing: Any) -> LatencyRow:
    model = run.model.to(device).eval()
    row = LatencyRow("eager", device)
    with torch.inference_mode():
        for size in batch_sizes:
            batch = _on(_batch(run, size), device)
            seconds = median_seconds(lambda: model(batch), sync=_sync(device), **timing)
            row.ms[str(size)] = 1000 * seconds
            inputs[size] = build_graph(model, batch)[1]
    return row


def _on(batch: Any, device: str) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    return {k: v.to(device) for k, v in batch.items()}


def _time_file(path: Path, fmt_name: str, batch_sizes: Sequence[int], inputs: dict[int, GraphInputs],
               **timing: Any) -> LatencyRow:
    fmt = EXPORT_FORMATS.get(fmt_name)
    row = LatencyRow(fmt_name, fmt.device, file=path.name)
    try:
        row.verification = _verification(path)
        exported = load_exported(path, fmt.device)
        with torch.inference_mode():
            for size in batch_sizes:
                graph_inputs = inputs[size]
                seconds = median_seconds(lambda: exported.run_inputs(graph_inputs), sync=_sync(fmt.device), **timing)
                row.ms[str(size)] = 1000 * seconds
    except (TransferkitError, RuntimeError, OSError) as exc:  # a stale or broken file: say so, time the rest
        row.ms, row.error = {}, " ".join(str(exc).split())[:400]
    return row


def _verification(path: Path) -> dict[str, Any] | None:
    """The verification the export wrote into the file's sidecar (None if it was not verified)."""
    try:
        return read_sidecar(path).get("verification")
    except TransferkitError:
        return None


def exported_files(run_dir: str | Path) -> dict[str, Path]:
    """``{format: file}`` for each format whose default file (with its sidecar) is in ``RUN_DIR/export/``."""
    folder = Path(run_dir) / EXPORT_DIR
    found = {}
    for name in EXPORT_FORMATS.names():
        path = folder / EXPORT_FORMATS.get(name).default_file
        if path.is_file() and sidecar_path(path).is_file():
            found[name] = path
    return found


def measure_latency(run_dir: str | Path, batch_sizes: Sequence[int] = (1, 32), *, repeats: int = 15,
                    warmup: int = 2, budget: float = 3.0, save: bool = True) -> LatencyReport:
    """Time the eager model and every exported file of a run at each batch size.

    The eager model runs on the CPU, and also on CUDA when a file runs there (TensorRT), so each
    file has an eager reference on its own device.

    Args:
        run_dir: a finished run folder.
        batch_sizes: batch sizes to time (synthetic preprocessed inputs).
        repeats, warmup, budget: see :func:`median_seconds` (budget: seconds per model and size).
        save: write the report to ``RUN_DIR/export/latency.json``.

    Returns:
        A :class:`LatencyReport`: one row per model, medians in milliseconds.

    Example:
        >>> report = measure_latency("runs/my-run")  # doctest: +SKIP
        >>> {r.name: r.ms["32"] for r in report.rows}  # doctest: +SKIP
        {'eager': 41.2, 'onnx': 18.9}
    """
    sizes = [int(b) for b in batch_sizes]
    if not sizes or any(b < 1 for b in sizes):
        raise ConfigError(f"batch_sizes: give batch sizes of at least 1, got {list(batch_sizes)}.")
    files = exported_files(run_dir)
    timing = {"repeats": repeats, "warmup": warmup, "budget": budget}
    rows: list[LatencyRow] = []
    devices = sorted({EXPORT_FORMATS.get(f).device for f in files} | {"cpu"})
    for device in devices:
        on_device = {f: p for f, p in files.items() if EXPORT_FORMATS.get(f).device == device}
        if device == "cuda" and not torch.cuda.is_available():  # a TensorRT file made on another machine
            rows += [LatencyRow(f, device, file=p.name, verification=_verification(p),
                                error="needs a CUDA device to run; none is visible here") for f, p in on_device.items()]
            continue
        run = load_run(run_dir, device)
        inputs: dict[int, GraphInputs] = {}
        rows.append(_time_eager(run, device, sizes, inputs, **timing))
        rows += [_time_file(path, f, sizes, inputs, **timing) for f, path in on_device.items()]
    report = LatencyReport(sizes, rows, time.time())
    if save:
        atomic_write_json(Path(run_dir) / EXPORT_DIR / LATENCY_JSON, report.to_dict())
    log.debug("latency of %s: %s", run_dir, report.to_dict())
    return report


def read_latency(run_dir: str | Path) -> LatencyReport | None:
    """The report :func:`measure_latency` saved for a run, or None (none yet, or unreadable)."""
    path = Path(run_dir) / EXPORT_DIR / LATENCY_JSON
    try:
        return LatencyReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
