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


class _WatchedMoves(torch.Tensor):
    """A batch tensor that records the ``non_blocking`` flag of each ``.to`` called on it."""

    moves: list[bool] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.to:
            cls.moves.append(bool(kwargs.get("non_blocking", False)))
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)


def test_a_training_step_moves_its_inputs_and_labels_without_blocking_the_host() -> None:
    # A blocking host-to-device copy waits for every kernel queued before it: one per step keeps
    # the host from running ahead of the GPU (tests/gpu counts the syncs themselves on CUDA).
    from helpers.tiny import TinyClassifier

    from transferkit.train.loop import fit

    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 8, generator=g).as_subclass(_WatchedMoves),
                torch.randint(0, 2, (4,), generator=g).as_subclass(_WatchedMoves)) for _ in range(3)]
    _WatchedMoves.moves = []
    model = TinyClassifier(8, 16, 2)
    fit(model, batches, batches[:1], [{"params": list(model.parameters()), "lr": 1e-3}],
        LoopSettings(epochs=1, weight_decay=0.0, patience=10), phase="fine-tune")
    assert len(_WatchedMoves.moves) >= 2 * len(batches)  # inputs and labels of each training step
    assert all(_WatchedMoves.moves), _WatchedMoves.moves
