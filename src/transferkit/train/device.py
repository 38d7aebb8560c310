"""Device and precision: the runtime decides, the loop stays the same."""

from __future__ import annotations

import contextlib
import os
import random
import resource
from pathlib import Path
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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX), where bf16 autocast
    is faster than fp32; elsewhere torch emulates it, slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if any(getattr(torch.cpu, name, lambda: False)() for name in checks):
        return True
    try:  # an older torch without the checks: the kernel's CPU flags
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def convolutional(model: torch.nn.Module) -> bool:
    """Whether ``model`` holds more weights in convolutions than in ``Linear`` layers (a CNN,
    not a transformer; embeddings count for neither)."""
    def weights(kind: type) -> int:
        return sum(m.weight.numel() for m in model.modules() if isinstance(m, kind))
    return weights(torch.nn.modules.conv._ConvNd) > weights(torch.nn.Linear)


def resolve_precision(name: str, device: torch.device, model: torch.nn.Module | None = None) -> str:
    """``--precision`` for ``device``: ``fp32``, ``bf16`` or ``fp16``.

    ``auto`` is bf16 on CUDA devices that support it. On a CPU it is bf16 where the CPU has
    native bf16 and ``model`` is not convolutional (:func:`convolutional`; no model: any):
    measured on an AMD EPYC with AVX-512 BF16 (benchmarks/throughput.py), MiniLM's training step
    ran 1.39x faster in bf16 with the same test accuracy, while EfficientNet-Lite0's depthwise
    convolutions gained nothing (0.98x) and lost 6 points of test accuracy; so convolutional
    models stay fp32 on a CPU. Elsewhere fp32.

    Raises:
        ConfigError: fp16 on a device other than CUDA (it needs a gradient scaler and fp16
            kernels; bf16 has fp32's range and needs neither).

    Example:
        >>> resolve_precision("fp32", torch.device("cpu"))
        'fp32'
    """
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        cnn = model is not None and convolutional(model)
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() and not cnn else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision: fp16 needs a CUDA device (this run is on {device.type}); use "
                          "--precision bf16 (same speed-up where the CPU has bf16 instructions) or fp32.")
    if name not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"precision: {name!r}; choose auto, fp32, bf16 or fp16.")
    return name


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> ContextManager[Any]:
    """Autocast to the resolved ``precision`` (``bf16``/``fp16``); ``fp32``: a no-op.

    Weights, optimizer state and the loss stay float32; matrix products and convolutions run
    in the lower precision.
    """
    if precision in _DTYPES and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=_DTYPES[precision])
    return contextlib.nullcontext()


def loader_workers(option: int | None, device: torch.device, processes: int = 1) -> int:
    """DataLoader workers for ``--num-workers`` (``None``: the default for ``device``).

    On CUDA the GPU waits for decoding unless workers prepare the next batches: the machine's
    cores shared out over the local processes, one kept for the training process, at most 8.
    On a CPU the same cores do the arithmetic, so workers only move the work around.

    Example:
        >>> loader_workers(None, torch.device("cpu")), loader_workers(3, torch.device("cpu"))
        (0, 3)
    """
    if option is not None:
        return option
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // max(1, processes) - 1))


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


def reset_peak_rss() -> bool:
    """Reset the process's resident-memory high-water mark (Linux: ``clear_refs`` value 5), so
    that a run's peak is its own even after earlier runs in the same process (``compare``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB -> MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
