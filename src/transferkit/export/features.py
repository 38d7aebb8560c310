"""``--backend onnxruntime``: the frozen backbone exported once, features computed in ONNX Runtime.

Feature extraction (and LP-FT's first phase) runs a frozen backbone over every example once.
ONNX Runtime runs that forward pass faster on a CPU than eager PyTorch (fused kernels, no Python
per layer), so the backbone is exported to ONNX in a temporary folder, loaded into a session, and
the file deleted; the session then encodes every split. Features match torch's to float
rounding (cosine similarity > 0.9999).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..registry import FEATURE_BACKENDS
from .graph import at_least_two, build_graph, with_padding
from .onnx import export_onnx, onnx_session, run_session

__all__ = ["OnnxBackbone"]

log = logging.getLogger("transferkit")


class OnnxBackbone:
    """A model's backbone in an ONNX Runtime session: inputs -> pooled features [B, F] (float32, CPU).

    Args:
        model: a TransferModel (only ``forward_features`` is exported).
        sample: one batch of its inputs (image [B, 3, H, W] or a tokenizer dict), used to trace.
        device: ``cuda`` uses ONNX Runtime's CUDA provider when installed, else the CPU.

    Example:
        >>> encode = OnnxBackbone(model, next(iter(loader))[0])  # doctest: +SKIP
        >>> encode(images).shape  # doctest: +SKIP
        torch.Size([8, 1280])
    """

    def __init__(self, model: nn.Module, sample: Any, device: str = "cpu") -> None:
        started = time.perf_counter()
        if not isinstance(sample, torch.Tensor):
            tokenizer = model.tokenizer()
            sample = with_padding(sample, getattr(tokenizer, "pad_token_id", None) or 0)
        where = next(model.parameters()).device  # trace where the weights are (CUDA in training)
        sample = sample.to(where) if isinstance(sample, torch.Tensor) else {k: v.to(where) for k, v in sample.items()}
        graph, inputs = build_graph(model.eval(), at_least_two(sample), features=True)
        text = model.spec.text
        with tempfile.TemporaryDirectory(prefix="transferkit-backbone-") as folder:
            path = Path(folder) / "backbone.onnx"
            export_onnx(graph, inputs, path, max_tokens=text.max_length if text else None)
            self.session = onnx_session(path, device=device)  # holds the graph in memory; the file can go
        log.info("backbone exported to ONNX Runtime in %.1f s", time.perf_counter() - started)

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


FEATURE_BACKENDS.add("onnxruntime", OnnxBackbone.from_loader)
