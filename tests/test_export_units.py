"""Export pieces: sidecar preprocessing against torchvision, an operator ONNX cannot export,
and the ONNX Runtime feature-extraction backend (same features, same accuracy)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from transferkit.data import build_image_transform, load_data
from transferkit.models import ImagePreprocessing, ModelSpec, TransferModel, load_model
from transferkit.train.features import extract_features
from transferkit.train.loaders import make_indexed_loader

from test_export import assert_clean_error, run_cli


@pytest.mark.parametrize("size,interpolation", [((50, 40), "bicubic"), ((31, 77), "bilinear"),
                                                ((20, 20), "nearest"), ((64, 64), "bicubic")])
def test_sidecar_preprocessing_matches_torchvision(size, interpolation) -> None:
    from transferkit.export.preprocess import preprocess_images

    pre = ImagePreprocessing(36, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), interpolation)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    ours = preprocess_images([img], {**pre.__dict__})[0]  # [3, 32, 32]
    reference = build_image_transform(pre)(img).numpy()
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-6)


class _KthBackbone(nn.Module):
    """Conv, then the 2nd smallest activation per channel: aten.kthvalue has no ONNX translation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(2).kthvalue(2, dim=2).values  # [B, 4]


def test_unsupported_operator_is_named(capsys, tmp_path, monkeypatch, digit_folder) -> None:
    import transferkit as tk
    from transferkit.export import core

    spec = ModelSpec(source="torchvision", name="kth", modality="image", labels=["0", "1", "2"],
                     image=ImagePreprocessing(36, 32, (0.5,) * 3, (0.5,) * 3, "bilinear"))
    model = TransferModel(_KthBackbone(), 4, 3, spec, [("stem", ["conv"])]).eval()
    config = tk.TrainConfig(model="torchvision:kth", data=str(digit_folder))
    monkeypatch.setattr(core, "load_run", lambda run_dir, device: tk.Run(tmp_path, model, config, spec.labels))
    code, _, err = run_cli(capsys, "export", tmp_path, "--format", "onnx")
    assert_clean_error(code, err, "operator aten.kthvalue", "cannot convert", "--format torchscript")
    assert not (tmp_path / "export" / "model.onnx").exists()
    code, _, err = run_cli(capsys, "export", tmp_path, "--format", "torchscript")  # TorchScript runs any op
    assert code == 0, err


def _cosine_min(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).min())


@pytest.mark.parametrize("kind", ["image", "text"])
def test_onnxruntime_features_match_torch(kind, digit_folder, sentiment_csv, tiny_bert_dir) -> None:
    from transferkit.export.features import OnnxBackbone

    spec, data = ("timm:test_efficientnet", digit_folder) if kind == "image" else (f"hf:{tiny_bert_dir}", sentiment_csv)
    model = load_model(spec, num_classes=3, pretrained=kind == "text").eval()
    split = load_data(str(data), seed=0).train
    loader = make_indexed_loader(model, split, batch_size=8)
    device = torch.device("cpu")
    eager = extract_features(model, loader, len(split), device)
    onnx = extract_features(model, loader, len(split), device, encode=OnnxBackbone.from_loader(model, loader))
    assert torch.equal(eager.labels, onnx.labels)
    assert _cosine_min(eager.features, onnx.features) >= 0.9999
    assert float((eager.features - onnx.features).abs().max()) < 1e-4


def test_onnxruntime_backend_trains_to_the_same_accuracy(capsys, tmp_path, digit_folder, monkeypatch) -> None:
    # the backend keeps torch where torch encodes faster: make ONNX Runtime win, so it is tested
    monkeypatch.setattr("transferkit.export.features.time_engines", lambda *args: (1.0, 0.5))
    results = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        code, stdout, err = run_cli(capsys, "-q", "train", "--model", "timm:test_efficientnet", "--no-pretrained",
                                    "--data", digit_folder, "--out", out, "--epochs", "5", "--backend", backend, "--json")
        assert code == 0, err
        results[backend] = json.loads(stdout)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        results[backend]["val"] = [r["val_accuracy"] for r in records]
    # Features agree to ~1e-6, but a head step on a 5-example validation split can still flip one
    # borderline example mid-training; where training ends up is the same.
    assert results["onnxruntime"]["accuracy"] == results["torch"]["accuracy"]
    assert max(results["onnxruntime"]["val"]) == max(results["torch"]["val"])
    assert results["onnxruntime"]["confusion_matrix"] == results["torch"]["confusion_matrix"]
