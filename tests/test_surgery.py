"""surgery: layer groups, freezing by group, the BatchNorm policy, parameter counts (tiny models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers, whatever the rootdir mode

from helpers.tiny import image_batch, tiny_resnet  # noqa: E402
from transferkit.errors import ConfigError  # noqa: E402
from transferkit.models import ModelSpec, TransferModel  # noqa: E402
from transferkit.models.groups import chunk_units, compute_layer_groups  # noqa: E402
from transferkit.models.torchvision import from_module  # noqa: E402
from transferkit.surgery import (  # noqa: E402
    LayerGroup,
    count_parameters,
    freeze_groups,
    frozen_batchnorm_eval,
    group_parameter_counts,
    layer_groups,
    set_trainable_groups,
    unfreeze_groups,
)


class _Backbone(nn.Module):
    """conv+BN stem, a block with an affine-free BN, a final norm left to the fallback group."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4, affine=False))
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.block(self.stem(x)).mean((2, 3)))  # [B, 4]


def _tiny_model() -> TransferModel:
    spec = ModelSpec(source="torchvision", name="tiny", modality="image")
    return TransferModel(_Backbone(), 4, 3, spec, [("stem", ["stem"]), ("block", ["block"])])


@pytest.fixture(params=["custom", "tiny_resnet", "timm_test_efficientnet"])
def model(request) -> TransferModel:
    if request.param == "custom":
        return _tiny_model()
    if request.param == "tiny_resnet":
        return from_module(tiny_resnet(), 3)
    import timm

    from transferkit.models.timm import wrap_timm_model

    spec = ModelSpec(source="timm", name="test_efficientnet", modality="image")
    return wrap_timm_model(timm.create_model("test_efficientnet", pretrained=False), 3, spec)


def test_groups_cover_every_parameter_once(model: TransferModel) -> None:
    groups = layer_groups(model)
    assert all(isinstance(g, LayerGroup) for g in groups)
    names = [n for g in groups for n in g.param_names]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(set(names)) == len(names)
    assert groups[0].name == "stem" and groups[-1].name == "head"
    assert [m for _, m in groups[-1].modules] == [model.head]
    bn_modules = [m for g in groups for _, m in g.modules if isinstance(m, _BatchNorm)]
    assert len(bn_modules) == sum(isinstance(m, _BatchNorm) for m in model.modules())


def test_fallback_group_takes_leftovers() -> None:
    groups = {g.name: g for g in _tiny_model().layer_groups()}
    assert "backbone.norm.weight" in groups["block"].param_names


def test_set_trainable_groups(model: TransferModel) -> None:
    names = [g.name for g in layer_groups(model)]
    set_trainable_groups(model, names[-2:])
    rows = {name: (total, trainable) for name, total, trainable in group_parameter_counts(model)}
    assert all((rows[n][1] == rows[n][0]) == (n in names[-2:]) for n in names)
    set_trainable_groups(model, lambda name: name == "head")
    assert count_parameters(model) == (
        sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.head.parameters())
    )
    set_trainable_groups(model, "head")  # a single name is not split into letters
    assert all(p.requires_grad for p in model.head.parameters())


def test_freeze_unfreeze_toggle(model: TransferModel) -> None:
    stem = layer_groups(model)[0]
    params = dict(model.named_parameters())
    freeze_groups(model, ["stem"])
    assert not any(params[n].requires_grad for n in stem.param_names)
    assert all(p.requires_grad for p in model.head.parameters())
    unfreeze_groups(model, ["stem"])
    assert all(params[n].requires_grad for n in stem.param_names)


def test_unknown_group_is_a_config_error(model: TransferModel) -> None:
    with pytest.raises(ConfigError, match="stem"):
        freeze_groups(model, ["layer9"])


def test_frozen_batchnorm_eval(model: TransferModel) -> None:
    groups = layer_groups(model)
    set_trainable_groups(model, [g.name for g in groups[1:]])  # only the stem frozen
    model.train()
    frozen_batchnorm_eval(model)
    stem_ids = {id(m) for _, m in groups[0].modules}
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns
    for bn in bns:
        assert bn.training == (id(bn) not in stem_ids)

    set_trainable_groups(model, ["head"])
    model.train()
    frozen_batchnorm_eval(model)
    assert not any(bn.training for bn in bns)  # includes BN without affine parameters
    before = [bn.running_mean.clone() for bn in bns]
    model(image_batch(32))
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, bns))  # stats untouched


def test_timm_batchnormact_is_covered() -> None:
    from timm.layers import BatchNormAct2d

    import timm
    from transferkit.models.timm import wrap_timm_model

    m = wrap_timm_model(timm.create_model("test_efficientnet"), 2, ModelSpec("timm", "test_efficientnet", "image"))
    assert any(isinstance(x, BatchNormAct2d) for x in m.modules())
    set_trainable_groups(m, ["head"])
    m.train()
    frozen_batchnorm_eval(m)
    assert not any(x.training for x in m.modules() if isinstance(x, BatchNormAct2d))


def test_count_parameters_matches_direct_count(model: TransferModel) -> None:
    freeze_groups(model, ["stem"])
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count_parameters(model) == (total, trainable)
    rows = group_parameter_counts(model)
    assert sum(r[1] for r in rows) == total and sum(r[2] for r in rows) == trainable


def test_chunk_units() -> None:
    units = [(f"b.{i}", [f"b.{i}"]) for i in range(17)]
    rules = chunk_units(units, limit=10, target=8)
    assert len(rules) <= 8
    assert [p for _, ps in rules for p in ps] == [f"b.{i}" for i in range(17)]
    assert rules[0][0] == "b.0-2"
    assert chunk_units(units[:5]) == [(n, p) for n, p in units[:5]]


def test_compute_layer_groups_longest_prefix_wins() -> None:
    m = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), nn.Linear(2, 1))
    groups = compute_layer_groups(m, [("stem", ["0"]), ("inner", ["0.1"]), ("head", ["1"])], "stem")
    by_name = {g.name: g.param_names for g in groups}
    assert by_name == {"stem": ["0.0.weight", "0.0.bias"], "inner": ["0.1.weight", "0.1.bias"],
                       "head": ["1.weight", "1.bias"]}


def test_prefixes_match_at_dot_boundaries_only() -> None:
    """``1`` must not claim ``11.weight``; the empty prefix takes what nothing else names; where two
    rules name one prefix, the first wins."""
    m = nn.Sequential(*[nn.Linear(1, 1) for _ in range(12)])
    groups = compute_layer_groups(m, [("rest", [""]), ("one", ["1", "1"]), ("again", ["1"]), ("head", ["11"])], None)
    by_name = {g.name: g.param_names for g in groups}
    assert by_name["one"] == ["1.weight", "1.bias"] and by_name["head"] == ["11.weight", "11.bias"]
    assert "again" not in by_name and len(by_name["rest"]) == 20
