"""A gradual-unfreezing run killed after its second unfreezing and resumed from its folder ends
exactly like an uninterrupted run: same groups, same losses, same test metrics."""

from __future__ import annotations

import json

import pytest

import transferkit as tk
from transferkit.cli import main
from transferkit.train import runner


def _records(run) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def _config(tiny_bert_dir, sentiment_csv, out) -> tk.TrainConfig:
    return tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="gradual",
                          unfreeze_every=1, epochs=5, patience=10, lr_decay=0.5, out=str(out))


def test_gradual_killed_and_resumed_matches_uninterrupted(tmp_path, monkeypatch, capsys, tiny_bert_dir,
                                                           sentiment_csv) -> None:
    whole = tk.train(_config(tiny_bert_dir, sentiment_csv, tmp_path / "whole"))
    assert not (whole.run_dir / "checkpoint").exists()  # removed once the run finished

    real_save = runner.save_checkpoint

    def save_then_die(run_dir, ck):
        real_save(run_dir, ck)
        if ck.state.epoch == 3:  # epoch 3 is the second unfreezing step (K = 1)
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "save_checkpoint", save_then_die)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        tk.train(_config(tiny_bert_dir, sentiment_csv, killed))
    monkeypatch.setattr(runner, "save_checkpoint", real_save)
    assert not (killed / "test_metrics.json").exists()
    assert [list(r["lrs"]) for r in _records(killed)][-1] == ["head", "blocks.1", "blocks.0"]

    assert main(["-q", "train", "--resume", str(killed)]) == 0
    assert _records(killed) == _records(whole.run_dir)
    a = json.loads((killed / "test_metrics.json").read_text())
    b = whole.test_metrics
    assert (a["accuracy"], a["confusion_matrix"]) == (b["accuracy"], b["confusion_matrix"])
    assert not (killed / "checkpoint").exists()


def test_resume_without_checkpoint(capsys, tmp_path) -> None:
    (tmp_path / "run").mkdir()
    code = main(["train", "--resume", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "no checkpoint" in err and "Traceback" not in err


@pytest.mark.parametrize("strategy, extra", [
    ("last-n", ["--last-n", "1"]),
    ("lp-ft", []),
    ("discriminative", ["--group-lrs", "1e-4,1e-4,1e-4,1e-3"]),
    ("linear-probe", []),
])
def test_strategies_end_to_end(capsys, tmp_path, tiny_bert_dir, sentiment_csv, strategy, extra) -> None:
    run = tmp_path / "run"
    code = main(["-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", str(sentiment_csv),
                 "--strategy", strategy, "--epochs", "2", "--out", str(run), *extra])
    assert code == 0, capsys.readouterr().err
    phases = [json.loads(x)["phase"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    # LP-FT's probe is the default L-BFGS head: its sweep steps are head-lbfgs records.
    expected = {"lp-ft": {"head-lbfgs", "fine-tune"}, "linear-probe": {"head-lbfgs"}}.get(strategy, {"fine-tune"})
    assert set(phases) == expected
    metrics = json.loads((run / "test_metrics.json").read_text())
    if strategy == "lp-ft":  # the probe phase ends before fine-tuning starts
        assert phases.index("fine-tune") == phases.count("head-lbfgs")
        assert 0 < metrics["probe_scale"] <= 1  # the probe was tempered (or already had the loss)
    assert metrics["strategy"] == strategy
    if strategy == "linear-probe":  # an L-BFGS sweep has no epochs
        assert metrics["epochs_to_best"] is None and metrics["epochs"] == 0 and metrics["lbfgs"]["l2"] > 0
    else:
        assert metrics["epochs_to_best"] >= 1
