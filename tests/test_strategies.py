"""Strategies pin exactly which parameters train, which BatchNorm layers update, and the
optimizer groups with their learning rates (tiny in-process ResNet with BatchNorm)."""

from __future__ import annotations

import pytest
from torch import nn

from transferkit import surgery
from transferkit.models import load_model
from transferkit.strategies import FeatureExtraction, FullFineTuning, get_strategy
from transferkit.errors import ConfigError


@pytest.fixture()
def model(monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")
    return load_model("torchvision:resnet18", num_classes=4, pretrained=False)


def _bn_modes(model: nn.Module) -> set[bool]:
    return {m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def test_feature_extraction_trains_only_the_head(model) -> None:
    strategy = FeatureExtraction()
    strategy.prepare(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    model.train()
    strategy.on_epoch_start(model, 1)
    assert _bn_modes(model) == {False}  # frozen backbone: statistics never move
    groups = strategy.param_groups(model, lr=1e-3, head_lr_scale=1.0)
    assert [(g["name"], g["lr"], len(g["params"])) for g in groups] == [("head", 1e-3, 2)]


def test_full_trains_everything_with_fixed_bn_statistics(model) -> None:
    strategy = FullFineTuning()
    strategy.prepare(model)
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    strategy.on_epoch_start(model, 1)
    assert _bn_modes(model) == {False}
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.weight.requires_grad and bn.bias.requires_grad  # affine parameters still train
    groups = strategy.param_groups(model, lr=1e-4, head_lr_scale=10.0)
    names = [g["name"] for g in groups]
    assert names == [g.name for g in surgery.layer_groups(model)] and names[-1] == "head"
    assert {g["name"]: g["lr"] for g in groups}["head"] == pytest.approx(1e-3)
    assert all(g["lr"] == pytest.approx(1e-4) for g in groups[:-1])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_unknown_strategy() -> None:
    assert isinstance(get_strategy("full"), FullFineTuning)
    with pytest.raises(ConfigError, match="feature-extraction"):
        get_strategy("lora-ish")
