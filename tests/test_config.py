"""Typed configuration: every field checked against its annotation (Python, YAML and CLI alike),
``group_lrs`` parsed once, one ``DataOptions`` for every command that reads data."""

from __future__ import annotations

import json
import stat

import pytest
import yaml

import transferkit as tk
from transferkit.data import load_data

from conftest import assert_clean_error, run_cli, write_digit_folder


@pytest.mark.parametrize("text, fragments", [
    ("epochs: ten", ["epochs", "whole number", "'ten'"]),
    ("lr: fast", ["lr", "a number", "'fast'"]),
    ("pretrained: maybe", ["pretrained", "true or false"]),
    ("bn: sometimes", ["bn", "one of train, freeze, freeze-stats"]),
    ("per_class: 2.5", ["per_class", "whole number"]),
    ("epoch: 3", ["epoch", "did you mean epochs?"]),
    ("lr: .nan", ["lr", "a finite number"]),
])
def test_yaml_values_are_type_checked(tmp_path, capsys, text, fragments) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"model: m\ndata: d\n{text}\n")
    with pytest.raises(tk.ConfigError) as info:
        tk.TrainConfig.load(path)
    assert all(f in str(info.value) for f in fragments), str(info.value)
    code, _, err = run_cli(capsys, "train", "--config", path, "--out", tmp_path / "r")
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "r").exists()


def test_yaml_numbers_written_the_yaml_1_1_way_are_numbers(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: m\ndata: d\nlr: 1e-4\nepochs: 3\n")  # YAML 1.1 reads 1e-4 as text
    cfg = tk.TrainConfig.load(path)
    assert cfg.lr == 1e-4 and isinstance(cfg.lr, float) and cfg.epochs == 3


def test_group_lrs_are_parsed_once_and_saved_as_numbers(tmp_path) -> None:
    cfg = tk.TrainConfig(model="m", data="d", strategy="full", group_lrs="1e-5, 1e-4,1e-3")
    assert cfg.group_lrs == [1e-5, 1e-4, 1e-3]
    cfg.save(tmp_path / "c.yaml")
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["group_lrs"] == [1e-5, 1e-4, 1e-3]
    assert tk.TrainConfig.load(tmp_path / "c.yaml") == cfg
    with pytest.raises(tk.ConfigError, match="group_lrs: 'a,b' is not a comma-separated list"):
        tk.TrainConfig(model="m", data="d", group_lrs="a,b")
    with pytest.raises(tk.ConfigError, match="group_lrs: every learning rate must be positive"):
        tk.TrainConfig(model="m", data="d", group_lrs=[1e-3, -1.0])


def test_data_options_are_one_validated_type() -> None:
    options = tk.DataOptions("builtin:digits", per_class=5, seed=1)
    assert load_data(options).train.class_counts(10) == [5] * 10
    assert load_data("builtin:digits", per_class=5, seed=1).train.labels == load_data(options).train.labels
    cfg = tk.TrainConfig(model="m", data="builtin:digits", per_class=5, seed=1, lr=1e-3)
    assert cfg.data_options == options and type(cfg.data_options) is tk.DataOptions
    for bad, fragment in (({"image_size": 8}, "image_size"), ({"image_size": "big"}, "image_size"),
                          ({"seed": -1}, "seed"), ({"val_fraction": 0.95}, "val_fraction")):
        with pytest.raises(tk.ConfigError, match=fragment):
            tk.DataOptions("d", **bad)


def test_image_size_trains_and_saves_the_preprocessing(capsys, tmp_path) -> None:
    root = write_digit_folder(tmp_path / "imgs", classes=(0, 1), per_class=8)
    code, _, err = run_cli(capsys, "-q", "train", "--model", "builtin:efficientnet_lite0", "--data", root,
                           "--image-size", "auto", "--strategy", "full", "--epochs", "1", "--out", tmp_path / "r")
    assert code == 0, err
    spec = json.loads((tmp_path / "r" / "model_spec.json").read_text())
    assert spec["image"]["crop_size"] == 64  # 32-px digits: twice the side, a multiple of 32
    assert spec["image"]["resize_size"] == round(64 * 256 / 224)
    assert tk.TrainConfig.load(tmp_path / "r" / "config.yaml").image_size == 64  # the size chosen is saved
    rows = tk.predict(tmp_path / "r", [str(next((root / "0").iterdir()))], top_k=1)
    assert rows[0]["label"] in ("0", "1")


def test_recommend_measures_at_the_image_size_training_would_use(tmp_path) -> None:
    root = write_digit_folder(tmp_path / "imgs", classes=(0, 1), per_class=8)
    rec = tk.recommend("builtin:efficientnet_lite0", tk.DataOptions(str(root), image_size="auto"), race=False)
    assert rec.measurements["image_size"] == 64 and "--image-size auto" in rec.command


def test_image_size_on_a_text_model_is_an_error(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    code, _, err = run_cli(capsys, "train", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                           "--image-size", "64", "--out", tmp_path / "r")
    assert_clean_error(code, err, "image_size", "text")
    assert not (tmp_path / "r").exists()


def test_atomic_writes_respect_the_umask_without_changing_it(tmp_path) -> None:
    import os

    from transferkit.io.atomic import atomic_write_text

    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
        assert os.umask(0o027) == 0o027  # nothing changed the process's umask
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640


@pytest.mark.parametrize("args, fragments", [
    (["--bn", "sometimes"], ["--bn", "'sometimes' is not one of", "freeze-stats", "transferkit train --help"]),
    (["--epochs", "ten"], ["--epochs", "'ten' is not a valid integer"]),
])
def test_option_values_click_rejects_are_one_paragraph(capsys, tmp_path, args, fragments) -> None:
    code, _, err = run_cli(capsys, "train", "--model", "m", "--data", "d", *args, "--out", tmp_path / "r")
    assert_clean_error(code, err, *fragments)
