"""Imbalanced classes: the warning, the balanced class weights, and every loss and score they weight."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_clean_error, run_cli, write_sentiment_csv

import transferkit as tk
from transferkit.train.class_balance import (
    IMBALANCE_RATIO,
    balanced_weights,
    imbalance_warning,
    weighted_scores,
)
from transferkit.train.features import CachedFeatures
from transferkit.train.head import evaluate_head, penalized_cross_entropy
from transferkit.train.head_select import AdamWHead, select_and_fit_head
from transferkit.train.loop import LoopSettings


def test_balanced_weights_give_each_class_the_same_total_weight() -> None:
    counts = [6, 1, 1, 0]
    weights = balanced_weights(counts)
    totals = weights * torch.tensor(counts, dtype=torch.float32)
    assert torch.allclose(totals[:3], totals[0].expand(3)) and weights[3] == 0  # absent class: no weight
    assert torch.isclose((weights * torch.tensor(counts)).sum() / sum(counts), torch.tensor(1.0))  # averages 1


def test_the_warning_starts_at_the_ratio_and_names_the_counts_and_the_fix() -> None:
    assert imbalance_warning([29, 10], ["a", "b"], "none") is None  # 2.9 to 1
    assert imbalance_warning([10, 10, 0], ["a", "b", "c"], "none") is None  # a class with no example is not a ratio
    text = imbalance_warning([10, int(10 * IMBALANCE_RATIO)], ["rare", "common"], "none")
    assert "common 30, rare 10" in text and "3.0 to 1" in text
    assert "--class-weights balanced" in text and "--per-class" in text and "macro-F1" in text
    on = imbalance_warning([10, 30], ["rare", "common"], "balanced")
    assert "is weighted" in on and "--per-class" not in on
    many = imbalance_warning(list(range(10, 0, -1)), [f"c{i}" for i in range(10)], "none")
    assert "c0 10, c1 9, c2 8, ..., c7 3, c8 2, c9 1 examples" in many


def test_weighted_scores_are_plain_with_equal_weights_and_balanced_accuracy_with_balanced_ones() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 30 + [1] * 5)
    logits = torch.randn(35, 2, generator=g)
    plain = weighted_scores(logits, labels)
    assert plain == pytest.approx(weighted_scores(logits, labels, torch.ones(2)))
    assert plain[0] == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    weights = balanced_weights([30, 5])
    recalls = [(logits.argmax(1)[labels == c] == c).float().mean().item() for c in (0, 1)]
    accuracy, loss = weighted_scores(logits, labels, weights)
    assert accuracy == pytest.approx(sum(recalls) / 2)
    assert loss == pytest.approx(F.cross_entropy(logits, labels, weight=weights).item())
    head = torch.nn.Linear(2, 2)
    assert evaluate_head(head, CachedFeatures(logits, labels), rows=7, class_weight=weights) == pytest.approx(
        tuple(reversed(weighted_scores(head(logits).detach(), labels, weights))))


def test_the_lbfgs_objective_and_gradient_match_autograd_with_class_weights() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 5, generator=g), torch.tensor([0] * 8 + [1] * 3 + [2])
    weight, bias = torch.randn(3, 5, generator=g), torch.randn(3, generator=g)
    class_weight = balanced_weights([8, 3, 1])
    total, grad_w, grad_b = penalized_cross_entropy(weight, bias, [(x[:7], y[:7]), (x[7:], y[7:])], 12, 0.1,
                                                    class_weight)
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    expected = F.cross_entropy(x @ w.t() + b, y, weight=class_weight, reduction="sum") / 12 + 0.05 * w.pow(2).sum()
    expected.backward()
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(grad_w, w.grad, atol=1e-5) and torch.allclose(grad_b, b.grad, atol=1e-5)


def _skewed(major: int, minor: int, seed: int) -> CachedFeatures:
    """Two overlapping classes in 4 dimensions, ``major`` against ``minor`` examples."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([0] * major + [1] * minor)
    return CachedFeatures(torch.randn(len(labels), 4, generator=g) + 1.2 * labels[:, None].float(), labels)


@pytest.mark.parametrize("solver", ["lbfgs", "adamw"])
def test_balanced_weights_raise_the_small_class_recall_of_a_head(solver: str) -> None:
    train, val, test = _skewed(300, 30, 0), _skewed(100, 10, 1), _skewed(500, 500, 2)
    recalls = {}
    for name, weights in (("none", None), ("balanced", balanced_weights([300, 30]))):
        opts = AdamWHead(LoopSettings(epochs=15, weight_decay=1e-4, patience=15), 1e-2, 32,
                         torch.Generator().manual_seed(0))
        choice, _ = select_and_fit_head(train, val, 2, solver, adamw=opts, class_weight=weights)
        predicted = choice.head(test.features).argmax(1)
        recalls[name] = (predicted[test.labels == 1] == 1).float().mean().item()
    # unweighted, the head mostly answers the large class; balanced, the small one is found
    assert recalls["balanced"] > recalls["none"] + 0.2, recalls


def test_a_run_warns_of_imbalance_and_records_its_class_weights(tmp_path, tiny_bert_dir) -> None:
    data = write_sentiment_csv(tmp_path / "skewed.csv", 60, neg=12)
    result = tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(data), strategy="full", epochs=2,
                                     class_weights="balanced", out=str(tmp_path / "run")), progress=False)
    warnings = json.loads((result.run_dir / "test_metrics.json").read_text())["warnings"]
    assert any(re.search(r"imbalanced: pos \d+, neg \d+ examples", w) and "is weighted" in w for w in warnings), warnings
    assert "class_weights: balanced" in (result.run_dir / "config.yaml").read_text()
    assert "imbalanced" in (result.run_dir / "train.log").read_text()


def test_the_cli_takes_class_weights_and_refuses_an_unknown_one(capsys, tmp_path) -> None:
    code, _, err = run_cli(capsys, "train", "--model", "builtin:minilm", "--data", "builtin:sms-spam",
                           "--class-weights", "inverse", "--check")
    assert_clean_error(code, err, "class-weights", "balanced")
    code, out, err = run_cli(capsys, "train", "--model", "builtin:minilm", "--data", "builtin:sms-spam",
                             "--class-weights", "balanced", "--check")
    assert code == 0 and "ok" in out, err


def test_recommend_carries_class_weights_into_its_command(tmp_path, tiny_bert_dir) -> None:
    data = write_sentiment_csv(tmp_path / "skewed.csv", 40, neg=10)
    with pytest.raises(tk.ConfigError, match="class_weights"):
        tk.recommend(f"hf:{tiny_bert_dir}", str(data), race=False, class_weights="inverse")
    rec = tk.recommend(f"hf:{tiny_bert_dir}", str(data), race=False, class_weights="balanced")
    assert "--class-weights balanced" in rec.command
    assert any(r.startswith("The classes are imbalanced") and "weight each class" in r for r in rec.reasons)
    plain = tk.recommend(f"hf:{tiny_bert_dir}", str(data), race=False)
    assert any("run recommend again with --class-weights balanced" in r for r in plain.reasons), plain.reasons


def test_compare_trains_every_strategy_with_class_weights_and_says_so(tmp_path, tiny_bert_dir) -> None:
    data = write_sentiment_csv(tmp_path / "skewed.csv", 40, neg=10)
    result = tk.compare(f"hf:{tiny_bert_dir}", str(data), strategies=["feature-extraction", "full"], epochs=1,
                        class_weights="balanced", out=str(tmp_path / "cmp"))
    assert "class weights: balanced" in result.markdown.splitlines()[2]
    for row in result.rows:
        assert "class_weights: balanced" in (Path(row["run_dir"]) / "config.yaml").read_text()


def test_balanced_accuracy_is_scikit_learns_and_is_printed(capsys, tmp_path, tiny_bert_dir) -> None:
    from sklearn.metrics import balanced_accuracy_score

    from transferkit.train.metrics import classification_metrics

    truth, predicted = [0, 0, 0, 0, 1, 1, 2], [0, 0, 0, 1, 1, 0, 0]
    metrics = classification_metrics(truth, predicted, ["a", "b", "c", "absent"])
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    data = write_sentiment_csv(tmp_path / "skewed.csv", 40, neg=10)
    code, out, err = run_cli(capsys, "train", "--model", f"hf:{tiny_bert_dir}", "--data", data, "--strategy",
                             "feature-extraction", "--out", tmp_path / "run")
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    recalls = [c["recall"] for c in saved["per_class"].values()]
    assert saved["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))
    assert f"balanced accuracy: {saved['balanced_accuracy']:.4f}" in out
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "run")
    assert code == 0 and "balanced accuracy: " in out, err
