"""``--backend onnxruntime``: the frozen backbone exported once, features computed in ONNX Runtime.

Feature extraction (and LP-FT's first phase) runs a frozen backbone over every example once.
ONNX Runtime runs an image backbone's forward pass several times faster than eager PyTorch on a
CPU (fused convolutions, no Python per layer), so the backbone is exported to ONNX in a temporary
folder, loaded into a session, and the file deleted; the session then encodes every split.
Features match torch's to float rounding (cosine similarity > 0.9999).

A transformer gains much less: its time is in large MatMuls, where ONNX Runtime and PyTorch
call equally fast kernels (MiniLM, batches of 32 x 128 tokens on 2 CPU cores: 0.95-1.2x torch,
depending on load). So the factory times both engines on the first batch and keeps torch when it
is faster, saying so in the log: ``--backend onnxruntime`` is never silently slower than torch.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..registry import FEATURE_BACKENDS
from ..train.device import move_to
from .graph import at_least_two, build_graph, with_padding
from .onnx import export_onnx, onnx_session, run_session

__all__ = ["OnnxBackbone", "faster_engine", "onnxruntime_backend"]

log = logging.getLogger("transferkit")

#: Timed turns of each engine on the first batch (after one warm-up run each); the best counts.
TIMED_RUNS = 2
#: How much faster ONNX Runtime must be on that batch to encode instead of torch. Two engines
#: within a few percent trade places from one timing to the next on a shared machine (MiniLM on
#: the 2-core CPU: 0.94-1.08x on one batch, 0.89x over a whole split), and torch is the engine
#: the model trains in: a near-tie keeps it.
MIN_SPEEDUP = 1.1


class OnnxBackbone:
    """A model's backbone in an ONNX Runtime session: inputs -> pooled features [B, F] (float32, CPU).

    Args:
        model: a TransferModel (only ``forward_features`` is exported).
        sample: one batch of its inputs (image [B, 3, H, W] or a tokenizer dict), used to trace.
        device: ``cuda`` uses ONNX Runtime's CUDA provider when installed, else the CPU.
        threads: ONNX Runtime's intra-op threads; default torch's (``torch.get_num_threads()``),
            so a ``--nproc`` worker keeps to its share of the cores as torch does.

    Example:
        >>> encode = OnnxBackbone(model, next(iter(loader))[0])  # doctest: +SKIP
        >>> encode(images).shape  # doctest: +SKIP
        torch.Size([8, 1280])
    """

    def __init__(self, model: nn.Module, sample: Any, device: str = "cpu", threads: int | None = None) -> None:
        started = time.perf_counter()
        if not isinstance(sample, torch.Tensor):
            tokenizer = model.tokenizer()
            sample = with_padding(sample, getattr(tokenizer, "pad_token_id", None) or 0)
        where = next(model.parameters()).device  # trace where the weights are (CUDA in training)
        sample = sample.to(where) if isinstance(sample, torch.Tensor) else {k: v.to(where) for k, v in sample.items()}
        with _plain_attention(model):
            graph, inputs = build_graph(model.eval(), at_least_two(sample), features=True)
        text = model.spec.text
        with tempfile.TemporaryDirectory(prefix="transferkit-backbone-") as folder:
            path = Path(folder) / "backbone.onnx"
            export_onnx(graph, inputs, path, max_tokens=text.max_length if text else None)
            # holds the graph in memory; the file can go
            self.session = onnx_session(path, device=device, threads=threads or torch.get_num_threads())
        self.export_seconds = time.perf_counter() - started  # what the engine cost before its first batch
        log.info("backbone exported to ONNX Runtime in %.1f s", self.export_seconds)

    def __call__(self, inputs: Any) -> torch.Tensor:
        """Pooled features [B, F] for one loader batch."""
        if isinstance(inputs, torch.Tensor):
            feed = {"input": inputs.float().contiguous().numpy()}  # NCHW, as exported
        else:
            feed = {k: v.long().numpy() for k, v in dict(inputs).items()}
        return torch.from_numpy(run_session(self.session, feed))

    @classmethod
    def from_loader(cls, model: nn.Module, loader: Any, device: torch.device | str = "cpu") -> "OnnxBackbone":
        """Trace on the first batch of an indexed loader (``(inputs, labels, indices)`` batches)."""
        inputs = next(iter(loader))[0]
        return cls(model, inputs, str(device))


@contextlib.contextmanager
def _plain_attention(model: nn.Module) -> Iterator[None]:
    """Hugging Face models traced with their ``eager`` attention (softmax(QK^T)V), then restored.

    Their default, ``sdpa``, exports with NaN guards for fully masked rows (IsNaN, Where) and
    extra Slice/Transpose nodes; ONNX Runtime runs the plain graph faster (MiniLM, three batches
    of 32 x 128 tokens on 2 shared CPU cores: 1.9 s against 2.3 s, best of 5) with the same
    features (cosine 0.9999999).
    """
    changed = []
    for module in model.modules():
        config = getattr(module, "config", None)
        before = getattr(config, "_attn_implementation", None)
        if hasattr(module, "set_attn_implementation") and before not in (None, "eager"):
            try:
                module.set_attn_implementation("eager")
                changed.append((module, before))
            except Exception as exc:  # a model without an eager path keeps its own (ValueError ...)
                log.debug("eager attention not set on %s: %s", type(module).__name__, exc)
    try:
        yield
    finally:
        for module, before in reversed(changed):
            module.set_attn_implementation(before)


def _best_seconds(runs: list[Callable[[], Any]], sync: Callable[[], None]) -> list[float]:
    """Each run's fastest of ``TIMED_RUNS`` after a warm-up (first-call allocations excluded);
    the runs take turns, so a change of load on a shared machine hits every one."""
    for run in runs:
        run()
    best = [float("inf")] * len(runs)
    for _ in range(TIMED_RUNS):
        for i, run in enumerate(runs):
            sync()
            start = time.perf_counter()
            run()
            sync()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


@torch.no_grad()
def time_engines(model: nn.Module, backbone: OnnxBackbone, inputs: Any, device: torch.device) -> tuple[float, float]:
    """Seconds one batch takes in (eager torch, ONNX Runtime), best of a few turns each."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    moved = move_to(inputs, device)
    eager, onnx = _best_seconds([lambda: model.forward_features(moved), lambda: backbone(inputs)], sync)
    return eager, onnx


def faster_engine(model: nn.Module, backbone: OnnxBackbone, inputs: Any, device: torch.device,
                  examples: int | None = None) -> OnnxBackbone | None:
    """``backbone``, or None (torch encodes) unless ONNX Runtime runs ``inputs`` at least
    ``MIN_SPEEDUP`` times as fast as eager torch; logged either way. With ``examples`` (what the
    run will encode), also say when the export cost more than ONNX Runtime saves on them: the run
    is then slower than with torch."""
    eager, onnx = time_engines(model, backbone, inputs, device)
    rows = len(inputs) if isinstance(inputs, torch.Tensor) else len(next(iter(dict(inputs).values())))
    if eager < onnx * MIN_SPEEDUP:
        log.info("--backend onnxruntime: ONNX Runtime is not clearly faster for this model here (%.0f ms "
                 "against torch's %.0f ms for a batch of %d; it must be %.1fx), so torch computes the features",
                 onnx * 1e3, eager * 1e3, rows, MIN_SPEEDUP)
        return None
    log.info("--backend onnxruntime: ONNX Runtime encodes a batch of %d in %.0f ms (torch %.0f ms, %.2fx)",
             rows, onnx * 1e3, eager * 1e3, eager / onnx)
    export = getattr(backbone, "export_seconds", 0.0)
    if examples:
        saved = (eager - onnx) * examples / rows  # seconds ONNX Runtime saves over the whole run
        if saved < export:
            log.warning("--backend onnxruntime: exporting the backbone took %.1f s, more than ONNX Runtime "
                        "saves on the %d examples this run encodes (about %.1f s); torch (--backend torch) "
                        "is faster end to end below about %d examples", export, examples, saved,
                        math.ceil(round(export / (eager - onnx) * rows, 6)))
    return backbone


def onnxruntime_backend(model: nn.Module, loader: Any, device: torch.device | str = "cpu", *,
                        examples: int | None = None) -> OnnxBackbone | None:
    """The ``--backend onnxruntime`` factory: the exported backbone, or None where torch is faster.
    ``examples``: how many the run will encode (for the end-to-end verdict of :func:`faster_engine`)."""
    inputs = next(iter(loader))[0]
    backbone = OnnxBackbone(model, inputs, str(device))
    return faster_engine(model.eval(), backbone, inputs, torch.device(device), examples)


FEATURE_BACKENDS.add("onnxruntime", onnxruntime_backend)
