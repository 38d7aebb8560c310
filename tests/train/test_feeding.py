"""What keeps a GPU fed, decided per device: loader workers, pinned memory, fused AdamW.

These are decisions, checked here without CUDA; the GPU figures are benchmarks/throughput.py's."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from transferkit.data import Split
from transferkit.models import ImagePreprocessing
from transferkit.train import device as dev
from transferkit.train.loaders import make_loader
from transferkit.train.loop import LoopSettings, _Optimizer

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_loader_workers_default_to_none_on_a_cpu_and_the_shared_cores_on_cuda(monkeypatch) -> None:
    monkeypatch.setattr(dev.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert dev.loader_workers(None, CPU) == 0
    assert dev.loader_workers(None, CUDA) == 8  # 16 cores: capped at 8
    assert dev.loader_workers(None, CUDA, processes=4) == 3  # 4 cores each, one for training
    assert dev.loader_workers(2, CUDA) == 2 and dev.loader_workers(2, CPU) == 2  # asked for: given
    monkeypatch.setattr(dev.os, "sched_getaffinity", lambda pid: {0})
    assert dev.loader_workers(None, CUDA) == 1


class _ImageModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.spec = type("Spec", (), {"modality": "image",
                                      "image": ImagePreprocessing(8, 8, (0.5,) * 3, (0.5,) * 3)})()


def test_a_cuda_loader_pins_memory_and_prefetches_with_persistent_workers() -> None:
    split = Split([np.zeros((8, 8), np.uint8)] * 4, [0, 1, 0, 1])
    fed = make_loader(_ImageModel(), split, batch_size=2, train=True, num_workers=2, pin_memory=True)
    assert fed.pin_memory and fed.num_workers == 2 and fed.prefetch_factor == 4 and fed.persistent_workers
    plain = make_loader(_ImageModel(), split, batch_size=2, train=True)
    assert not plain.pin_memory and plain.num_workers == 0 and not plain.persistent_workers


def test_adamw_is_fused_on_cuda_only() -> None:
    params = [{"params": [nn.Parameter(torch.zeros(2))], "lr": 1e-3}]
    on_cuda = _Optimizer(params, LoopSettings(epochs=1, weight_decay=0.0, device=CUDA), 1)
    assert on_cuda.opt.defaults["fused"] is True
    params = [{"params": [nn.Parameter(torch.zeros(2))], "lr": 1e-3}]
    assert not _Optimizer(params, LoopSettings(epochs=1, weight_decay=0.0), 1).opt.defaults["fused"]
