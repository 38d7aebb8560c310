"""One owner per concept: the registries are the only lists of strategies, export formats and
feature backends, and a strategy added from outside runs through train, compare and the CLI."""

from __future__ import annotations

import dataclasses
import importlib
import json
import typing

import pytest

import transferkit as tk
from transferkit.cli import cli
from transferkit.registry import FEATURE_BACKENDS, STRATEGIES, Registry
from transferkit.strategies import FineTunePhase, HeadPhase, register_strategy, strategy_class, strategy_names

from conftest import assert_clean_error, run_cli
from helpers.bitfit import BitFit

rec = importlib.import_module("transferkit.workflows.recommend")
cmp = importlib.import_module("transferkit.workflows.compare")


@pytest.fixture()
def bitfit():
    """The example strategy, registered for one test only."""
    register_strategy(BitFit)
    try:
        yield BitFit
    finally:
        STRATEGIES.remove(BitFit.name)
    assert BitFit.name not in strategy_names()


def _command(*path: str):
    command = cli
    for name in path:
        command = command.commands[name]
    return command


def test_every_strategy_named_anywhere_is_a_registered_class() -> None:
    registered = set(strategy_names())
    assert registered == {"feature-extraction", "linear-probe", "full", "last-n", "gradual", "discriminative",
                          "lp-ft", "lora"}
    for name in registered:  # each name is a class that declares itself
        cls = strategy_class(name)
        assert issubclass(cls, tk.Strategy) and cls.name == name and cls.phases and cls.summary()
        assert all(isinstance(p, (HeadPhase, FineTunePhase)) for p in cls.phases)
    assert rec.strategies_named() <= registered  # recommend's rules
    assert tuple(cmp._check_strategies(None)) == strategy_names()  # compare's default: all, in order
    strategy_option = next(p for p in _command("train").params if p.name == "strategy")
    assert all(name in strategy_option.help for name in registered)  # the CLI's --strategy help
    with pytest.raises(tk.ConfigError, match="strategy: unknown strategy 'nope'; choose one of feature-extraction"):
        tk.TrainConfig(model="m", data="d", strategy="nope")


def test_cached_head_strategies_are_the_ones_without_a_fine_tune_phase() -> None:
    cached = {n for n in strategy_names() if strategy_class(n).uses_feature_cache()}
    assert cached == {"feature-extraction", "linear-probe"}
    assert not strategy_class("lp-ft").uses_feature_cache() and strategy_class("lp-ft").trains_backbone()
    assert tk.TrainConfig(model="m", data="d", strategy="linear-probe", head_solver="adamw").resolved().head_solver == "lbfgs"


def test_export_formats_and_feature_backends_have_one_list() -> None:
    assert tk.EXPORT_FORMATS.names() == ("onnx", "torchscript", "tensorrt")
    assert tk.DEFAULT_EXPORT_FORMAT in tk.EXPORT_FORMATS
    fmt_option = next(p for p in _command("export").params if p.name == "fmt")
    assert tuple(fmt_option.type.choices) == tk.EXPORT_FORMATS.names()
    for name in tk.EXPORT_FORMATS:
        fmt = tk.EXPORT_FORMATS.get(name)
        assert fmt.name == name and fmt.default_file and fmt.title
    assert FEATURE_BACKENDS.names() == ("torch", "onnxruntime")
    with pytest.raises(tk.ConfigError, match="backend: unknown feature backend 'tvm'; choose one of torch, onnxruntime"):
        tk.TrainConfig(model="m", data="d", backend="tvm")


def test_registry_refuses_a_second_entry_under_one_name() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    reg.add("a", 1)  # the same entry again (a module imported twice) is harmless
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 2)
    with pytest.raises(tk.ConfigError, match="thing: unknown thing 'b'; choose one of a"):
        reg.get("b")


def test_a_strategy_class_is_checked_when_it_registers() -> None:
    class Broken(tk.Strategy):
        """Declares a setting TrainConfig does not have."""

        name = "broken"
        defaults = {"epochz": 3}

    with pytest.raises(TypeError, match="epochz"):
        register_strategy(Broken)
    assert "broken" not in STRATEGIES


def test_example_strategy_trains_end_to_end(bitfit, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    result = tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="bitfit",
                                     out=str(tmp_path / "run")))
    cfg = tk.TrainConfig.load(result.run_dir / "config.yaml")
    assert (cfg.strategy, cfg.epochs, cfg.lr, cfg.bn) == ("bitfit", 4, 3e-3, "freeze-stats")  # its text rate
    model = tk.load_model(f"hf:{tiny_bert_dir}", num_classes=2)
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias") and not n.startswith("head."))
    head = sum(p.numel() for p in model.head.parameters())
    assert result.metrics.trainable_params == biases + head < result.metrics.total_params
    assert {r["phase"] for r in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines())} == {"fine-tune"}
    assert tk.predict(result.run_dir, ["good film"], top_k=1)[0]["label"] in ("neg", "pos")


def test_example_strategy_in_compare_and_the_cli(bitfit, tmp_path, capsys, tiny_bert_dir, sentiment_csv) -> None:
    result = tk.compare(f"hf:{tiny_bert_dir}", str(sentiment_csv), strategies=["feature-extraction", "bitfit"],
                        out=tmp_path / "cmp", epochs=2)
    assert [(r["strategy"], r["status"]) for r in result.rows] == [("feature-extraction", "ok"), ("bitfit", "ok")]
    assert result.rows[1]["epochs"] <= 2  # --epochs reaches the strategy that trains the backbone
    code, out, err = run_cli(capsys, "-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                             "--strategy", "bitfit", "--epochs", "1", "--out", tmp_path / "cli")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "strategies")
    assert code == 0 and "bitfit" in out and "only the bias terms" in out


def test_unknown_strategy_from_the_cli_lists_the_registered_ones(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "--model", "m", "--data", "d", "--strategy", "adapters",
                           "--out", tmp_path / "r")
    assert_clean_error(code, err, "unknown strategy 'adapters'", *strategy_names())
    assert not (tmp_path / "r").exists()


def test_strategies_command_lists_defaults_per_modality(capsys) -> None:
    code, out, _ = run_cli(capsys, "strategies", "--json")
    rows = {r["strategy"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and list(rows) == list(strategy_names())
    assert rows["lp-ft"]["defaults"]["image"]["lr"] == 3e-4 and rows["lp-ft"]["defaults"]["text"]["lr"] == 1e-4
    assert rows["lp-ft"]["phases"] == ["linear-probe", "fine-tune"] and rows["feature-extraction"]["uses_feature_cache"]


def test_config_fields_are_typed() -> None:
    hints = typing.get_type_hints(tk.TrainConfig)
    for name in ("head_solver", "bn", "pooling"):
        assert typing.Literal in {typing.get_origin(a) for a in (hints[name], *typing.get_args(hints[name]))}, name
    data_fields = {f.name for f in dataclasses.fields(tk.DataOptions)}
    assert data_fields <= {f.name for f in dataclasses.fields(tk.TrainConfig)}  # a TrainConfig is DataOptions
    assert data_fields == {"data", "seed", "val_fraction", "test_fraction", "per_class", "text_column",
                           "label_column", "path_column", "image_size", "skip_bad_rows", "max_image_pixels",
                           "max_bad_fraction"}
