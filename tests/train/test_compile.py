"""``--compile`` and ``--compile-mode``: the training step under torch.compile gives the eager
step's losses, and the mode reaches torch.compile with a step boundary marked for CUDA graphs."""

from __future__ import annotations

import shutil

import pytest
import torch
from helpers.tiny import TinyClassifier

import transferkit as tk
from transferkit.errors import ConfigError
from transferkit.train import loop
from transferkit.train.features import CachedFeatures, extract_features
from transferkit.train.loop import LoopSettings, fit

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="torch.compile's CPU backend (inductor) needs a C++ compiler")


def test_compiled_and_eager_steps_give_the_same_losses_and_features() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 8, generator=g), torch.randint(0, 2, (32,), generator=g)
    batches = [(x[i::2], y[i::2]) for i in range(2)]
    losses, weights = {}, {}
    # reduce-overhead compiles as default does on a CPU (CUDA graphs are for CUDA tensors), so
    # here it checks that the step boundaries it marks change nothing
    for mode in (None, "default", "reduce-overhead"):
        torch.manual_seed(0)
        model = TinyClassifier()
        settings = LoopSettings(epochs=2, weight_decay=0.0, patience=10, compile=mode is not None,
                                compile_mode=mode or "default")
        result = fit(model, batches, batches, [{"params": list(model.parameters()), "lr": 1e-2}], settings,
                     phase="fine-tune")
        losses[mode] = [r.train_loss for r in result.history]
        weights[mode] = torch.cat([p.detach().flatten() for p in model.parameters()])
    for mode in ("default", "reduce-overhead"):
        assert losses[mode] == pytest.approx(losses[None], rel=1e-4)
        assert torch.allclose(weights[mode], weights[None], atol=1e-5)
    loader = [(x, y, torch.arange(32))]
    eager = extract_features(model, loader, 32, torch.device("cpu"))
    compiled_features = extract_features(model, loader, 32, torch.device("cpu"), compile=True)
    assert isinstance(compiled_features, CachedFeatures)
    assert torch.allclose(compiled_features.features, eager.features, atol=1e-5)


def test_the_compile_mode_reaches_torch_compile_and_marks_each_step_for_cuda_graphs(monkeypatch) -> None:
    modes, marks = [], []
    monkeypatch.setattr(loop.torch, "compile", lambda net, mode=None: modes.append(mode) or net)
    monkeypatch.setattr(loop.torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    batches = [(torch.randn(4, 8), torch.randint(0, 2, (4,))) for _ in range(3)]
    for mode, steps_marked in (("reduce-overhead", 2 * 3), ("max-autotune", 0)):
        modes.clear(), marks.clear()
        model = TinyClassifier()
        fit(model, batches, batches[:1], [{"params": list(model.parameters()), "lr": 1e-3}],
            LoopSettings(epochs=2, weight_decay=0.0, patience=10, compile=True, compile_mode=mode),
            phase="fine-tune")
        assert modes == [mode] and len(marks) == steps_marked  # 2 epochs of 3 steps


def test_a_compile_mode_implies_compile_and_an_unknown_one_is_refused() -> None:
    assert tk.TrainConfig(model="m", data="d", compile_mode="reduce-overhead").compile is True
    assert tk.TrainConfig(model="m", data="d").compile is False
    with pytest.raises(ConfigError, match="compile_mode"):
        tk.TrainConfig(model="m", data="d", compile_mode="fast")
