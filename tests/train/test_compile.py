"""``--compile``: the training step under torch.compile gives the eager step's losses."""

from __future__ import annotations

import shutil

import pytest
import torch
from helpers.tiny import TinyClassifier

from transferkit.train.features import CachedFeatures, extract_features
from transferkit.train.loop import LoopSettings, fit

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="torch.compile's CPU backend (inductor) needs a C++ compiler")


def test_compiled_and_eager_steps_give_the_same_losses_and_features() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 8, generator=g), torch.randint(0, 2, (32,), generator=g)
    batches = [(x[i::2], y[i::2]) for i in range(2)]
    losses, weights = {}, {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = TinyClassifier()
        settings = LoopSettings(epochs=2, weight_decay=0.0, patience=10, compile=compiled)
        result = fit(model, batches, batches, [{"params": list(model.parameters()), "lr": 1e-2}], settings,
                     phase="fine-tune")
        losses[compiled] = [r.train_loss for r in result.history]
        weights[compiled] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert torch.allclose(weights[True], weights[False], atol=1e-5)
    loader = [(x, y, torch.arange(32))]
    eager = extract_features(model, loader, 32, torch.device("cpu"))
    compiled_features = extract_features(model, loader, 32, torch.device("cpu"), compile=True)
    assert isinstance(compiled_features, CachedFeatures)
    assert torch.allclose(compiled_features.features, eager.features, atol=1e-5)
