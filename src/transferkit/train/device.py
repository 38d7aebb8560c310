"""Device and precision: the runtime decides, the loop stays the same."""

from __future__ import annotations

import contextlib
import random
from typing import Any, ContextManager

import numpy as np
import torch

from ..config import check_device_name
from ..errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; an unavailable explicit device is an error.

    Raises:
        ConfigError: ``name`` is not a device name (``cuda:x``), or the device is not on this
            machine (no CUDA, a GPU number past the last one, no MPS).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    name = check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device: {name} was asked for but no CUDA device is available on this "
                              "machine; use --device cpu (or auto).")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device: {name} was asked for but this machine has {count} CUDA "
                              f"device(s), cuda:0 to cuda:{count - 1}; pick one of those, or auto.")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device: {name} was asked for but MPS (Apple GPU) is not available on this "
                          "machine; use --device cpu (or auto).")
    return device


def autocast(device: torch.device, enabled: bool) -> ContextManager[Any]:
    """bfloat16 autocast on CUDA devices that support it; a no-op elsewhere.

    CPU autocast is left off: on most CPUs bf16 matmuls are slower than fp32.
    """
    if enabled and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator for data shuffling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def move_to(batch: Any, device: torch.device) -> Any:
    """Move a tensor or a dict of tensors (tokenizer output) to ``device``.

    Image batches [B, C, H, W] become channels-last: convolutions run up to twice as fast in
    that layout on CPUs (oneDNN) and on tensor-core GPUs.
    """
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict) or hasattr(batch, "items"):
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return batch


def batch_size_of(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    return int(next(iter(batch.values())).shape[0])


def inference_batch_size(train_batch_size: int, device: torch.device, modality: str) -> int:
    """Batch size for encoding and evaluation (no gradients).

    On a CPU, image models run fastest on small batches whose activations stay in cache
    (EfficientNet-Lite0 on 2 cores, channels-last: ~90 images/s at 4-8, ~45 at 32); GPUs want big
    batches.
    """
    if device.type == "cuda":
        return max(train_batch_size, 64)
    return 8 if modality == "image" else 32


def prepare_model_layout(model: torch.nn.Module, modality: str) -> torch.nn.Module:
    """Channels-last weights for image models (see :func:`move_to`)."""
    if modality == "image":
        model.to(memory_format=torch.channels_last)
    return model
