"""Local weights files (``weights=PATH``) and the offline policy for pre-trained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from helpers.tiny import image_batch
from transferkit.errors import ModelLoadError, WeightsMismatchError, WeightsUnavailableError
from transferkit.models import load_model
from transferkit.models.heads import strip_classifier
from transferkit.models.torchvision import weights_cache_file
from transferkit.models.weights import read_weights_file

def _source_model(spec: str) -> torch.nn.Module:
    """The *source* model with seeded random weights (classifier included, as users save them)."""
    import timm
    import torchvision

    source, name = spec.split(":")
    torch.manual_seed(1)
    return torchvision.models.get_model(name) if source == "torchvision" else timm.create_model(name)


def _source_state(spec: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in _source_model(spec).state_dict().items()}


def _save(state: dict[str, torch.Tensor], path: Path, fmt: str) -> Path:
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "torch_wrapped":
        torch.save({"state_dict": state, "epoch": 3}, str(path))
    else:
        torch.save(state, str(path))
    return path


ROUND_TRIPS = [
    ("torchvision:resnet18", "safetensors"),
    ("torchvision:resnet18", "torch"),
    ("torchvision:resnet18", "torch_wrapped"),
    ("torchvision:mobilenet_v3_small", "torch"),
    ("timm:test_efficientnet", "safetensors"),
]


@pytest.mark.parametrize(("spec", "fmt"), ROUND_TRIPS)
def test_image_weights_file_round_trip(spec: str, fmt: str, tmp_path) -> None:
    source = _source_model(spec).eval()
    state = source.state_dict()
    path = _save(state, tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt"), fmt)
    m = load_model(spec, 4, weights=str(path)).eval()
    assert m.spec.weights == f"file:{path.resolve()}" and m.spec.pretrained
    for key, value in m.backbone.model.state_dict().items():  # every backbone tensor from the file
        assert torch.equal(value, state[key]), key
    # the reference: the source model itself with its classifier removed the usual way
    if spec.startswith("timm:"):
        source.reset_classifier(0)
    else:
        strip_classifier(source)
    x = image_batch(64)
    with torch.no_grad():
        assert torch.allclose(m.forward_features(x), source(x), atol=1e-6)


def test_text_weights_file_round_trip(tiny_bert, tmp_path) -> None:
    ref = load_model(f"hf:{tiny_bert}", 2).eval()
    path = tmp_path / "bert.safetensors"
    save_file({k: v.contiguous() for k, v in ref.backbone.model.state_dict().items()}, str(path))
    m = load_model(f"hf:{tiny_bert}", 2, weights=str(path)).eval()
    assert m.spec.weights.startswith("file:")
    batch = dict(m.tokenizer()(["a good film", "bad"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        assert torch.allclose(ref.forward_features(batch), m.forward_features(batch), atol=1e-6)


def test_transfer_model_state_dict_is_accepted(tmp_path) -> None:
    trained = load_model("torchvision:resnet18", 5, pretrained=False)
    path = tmp_path / "run.safetensors"
    save_file(trained.state_dict(), str(path))
    m = load_model("torchvision:resnet18", 2, weights=str(path))
    assert torch.equal(m.backbone.model.conv1.weight, trained.backbone.model.conv1.weight)


def test_shape_mismatch_names_keys_and_shapes(tmp_path) -> None:
    state = _source_state("torchvision:resnet18")
    state["layer1.0.conv1.weight"] = torch.zeros(8, 64, 3, 3)
    path = _save(state, tmp_path / "bad.pt", "torch")
    with pytest.raises(WeightsMismatchError) as info:
        load_model("torchvision:resnet18", 2, weights=str(path))
    msg = str(info.value)
    assert "layer1.0.conv1.weight" in msg and "(64, 64, 3, 3)" in msg and "(8, 64, 3, 3)" in msg


def test_missing_and_unexpected_keys(tmp_path) -> None:
    state = _source_state("torchvision:resnet18")
    del state["layer4.1.bn2.weight"]
    state["extra.weight"] = torch.zeros(3)
    path = _save(state, tmp_path / "bad.safetensors", "safetensors")
    with pytest.raises(WeightsMismatchError) as info:
        load_model("torchvision:resnet18", 2, weights=str(path))
    assert "layer4.1.bn2.weight" in str(info.value) and "extra.weight" in str(info.value)


def test_classifier_keys_are_ignored(tmp_path) -> None:
    state = _source_state("torchvision:mobilenet_v3_small")
    state["classifier.3.weight"] = torch.zeros(10, 1024)  # a 10-class fine-tuned classifier
    state["classifier.3.bias"] = torch.zeros(10)
    m = load_model("torchvision:mobilenet_v3_small", 2, weights=str(_save(state, tmp_path / "w.pt", "torch")))
    # the pre-logits Linear (classifier.0) stays in the backbone and comes from the file
    assert torch.equal(m.backbone.model.classifier[0].weight, state["classifier.0.weight"])


def test_missing_or_unreadable_file(tmp_path) -> None:
    with pytest.raises(WeightsUnavailableError):
        load_model("torchvision:resnet18", 2, weights=str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsMismatchError):
        read_weights_file(junk)


def test_torchvision_offline_error_names_file_and_fixes(tmp_path) -> None:
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("torchvision:resnet18", 2)
    msg = str(info.value)
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in msg
    assert "--weights" in msg and "--no-pretrained" in msg and "resnet18" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_torchvision_uses_the_hub_cache(tmp_path, torchvision_cache) -> None:
    from torchvision.models import ResNet18_Weights

    state = _source_state("torchvision:resnet18")
    cache, _ = torchvision_cache(ResNet18_Weights.DEFAULT, state)
    assert str(cache).startswith(str(tmp_path))
    m = load_model("torchvision:resnet18", 2)
    assert m.spec.weights == "torchvision:IMAGENET1K_V1" and m.spec.pretrained
    assert torch.equal(m.backbone.model.conv1.weight, state["conv1.weight"])


def test_torchvision_cache_file_hash_is_checked(tmp_path) -> None:
    """A file under the published name whose SHA-256 does not start with the name's hash."""
    from torchvision.models import ResNet18_Weights

    cache = weights_cache_file(ResNet18_Weights.DEFAULT)  # .../resnet18-f37072fd.pth
    assert str(cache).startswith(str(tmp_path)) and cache.name == "resnet18-f37072fd.pth"
    cache.parent.mkdir(parents=True)
    torch.save(_source_state("torchvision:resnet18"), str(cache))  # fits, but is not the published file
    with pytest.raises(ModelLoadError) as info:
        load_model("torchvision:resnet18", 2)
    msg = str(info.value)
    assert str(cache) in msg and "f37072fd" in msg and "SHA-256" in msg
    assert "--weights" in msg and "--no-pretrained" in msg


class _RunsCode:
    """A pickled object that would run code on unpickling (``weights_only=False``)."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("unpickled: code ran",))


def test_torchvision_cache_file_is_never_unpickled(torchvision_cache, capsys) -> None:
    """torchvision's own loader unpickles a cached file with weights_only=False; ours refuses."""
    from torchvision.models import ResNet18_Weights

    state = _source_state("torchvision:resnet18")
    path, _ = torchvision_cache(ResNet18_Weights.DEFAULT, {**state, "extra": _RunsCode()})  # hash matches
    with pytest.raises(ModelLoadError, match="cannot be read as a state_dict") as info:
        load_model("torchvision:resnet18", 2)
    assert str(path) in str(info.value)
    assert "code ran" not in capsys.readouterr().out


def test_timm_offline_error_and_cache(tmp_path) -> None:
    from huggingface_hub import constants

    with pytest.raises(WeightsUnavailableError) as info:
        load_model("timm:test_efficientnet.r160_in1k", 2)
    msg = str(info.value)
    assert "timm/test_efficientnet.r160_in1k" in msg and constants.HF_HUB_CACHE in msg
    assert "--weights" in msg and "--no-pretrained" in msg

    # a file in the HF cache layout is used without any network access
    state = _source_state("timm:test_efficientnet")
    repo = Path(constants.HF_HUB_CACHE) / "models--timm--test_efficientnet.r160_in1k"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    m = load_model("timm:test_efficientnet.r160_in1k", 2)
    assert m.spec.weights == "timm:timm/test_efficientnet.r160_in1k"
    assert torch.equal(m.backbone.model.conv_stem.weight, state["conv_stem.weight"])

    # a damaged cached file is named, with the loader's reason (not a raw safetensors traceback)
    cached = snap / "model.safetensors"
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    with pytest.raises(ModelLoadError) as info:
        load_model("timm:test_efficientnet.r160_in1k", 2)
    assert str(cached) in str(info.value) and "fails to load" in str(info.value)


def test_hf_hub_id_offline_error() -> None:
    from huggingface_hub import constants

    with pytest.raises(WeightsUnavailableError) as info:
        load_model("hf:some-org/some-tiny-model", 2)
    msg = str(info.value)
    assert "some-org/some-tiny-model" in msg and constants.HF_HUB_CACHE in msg
    assert "--weights" in msg and "--no-pretrained" in msg


@pytest.mark.parametrize("variable", ["TRANSFERKIT_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_env_is_respected(variable: str, online, monkeypatch) -> None:
    from transferkit.models.weights import is_offline, offline_variable

    assert not is_offline()
    for value in ("1", "true", "YES", "on"):
        monkeypatch.setenv(variable, value)
        assert is_offline() and offline_variable() == variable
    monkeypatch.setenv(variable, "0")
    assert not is_offline()


def test_torchvision_download_path(online, monkeypatch, torchvision_cache) -> None:
    """Online code path without network: a fake download fills the cache, a failing one explains."""
    import urllib.error

    from torchvision.models import ResNet18_Weights

    state = _source_state("torchvision:resnet18")
    path, raw = torchvision_cache(ResNet18_Weights.DEFAULT, state, write=False)
    calls = []

    def fake_download(url: str, dst: str, progress: bool = True) -> None:
        calls.append(url)
        assert dst == str(path)
        Path(dst).write_bytes(raw)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    m = load_model("torchvision:resnet18", 2)
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    assert torch.equal(m.backbone.model.conv1.weight, state["conv1.weight"])

    def no_network(url: str, dst: str, progress: bool = True) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsUnavailableError, match="Downloading failed"):
        load_model("torchvision:resnet34", 2)


@pytest.mark.parametrize(("spec", "module"), [("hf:org/not-cached", "hf"), ("timm:test_vit.r160_in1k", "timm")])
def test_unreachable_hub_fails_fast(spec: str, module: str, online, monkeypatch) -> None:
    import importlib

    source = importlib.import_module(f"transferkit.models.{module}")
    monkeypatch.setattr(source, "hub_unreachable", lambda: OSError("no route to host"))
    with pytest.raises(WeightsUnavailableError, match="no route to host"):
        load_model(spec, 2)
