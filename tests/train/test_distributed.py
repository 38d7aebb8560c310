"""Data-parallel runs in two Gloo processes on the CPU give the one-process run (issue 16).

A dropout-free tiny BERT makes the comparison exact up to float summation order: every
strategy's weights, epochs and test accuracy agree within 1e-5, and the run folder is written
once. The two-process runs share one launch (a launch costs ~8 s of spawning, imports and
rendezvous): the workers train every config in turn in one process group, which also checks
that a worker can run ``train`` more than once.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import write_sentiment_csv
from helpers.dist_runs import train_each
from helpers.tiny import TINY_VOCAB
from safetensors.torch import load_file

import transferkit as tk
from transferkit.cli import main
from transferkit.io import runfolder as rf
from transferkit.train.distributed import WorkerFailedError, launch

pytestmark = pytest.mark.timeout(420)  # a hung collective fails here, not after the suite's limit

STRATEGIES = ["feature-extraction", "linear-probe", "full", "last-n", "discriminative", "gradual", "lp-ft", "lora"]
# train split: 22 examples (32 rows less 5 val, 5 test); global batches of 7 are 7, 7, 7, 1, so
# the last is uneven and rank 1's chunk of it is one padding example. Two epochs cover gradual's
# first unfreezing (unfreeze_every 1: the head alone, then a group joins) and LP-FT's two phases.
# fp32: in bf16 (--precision auto picks it for a transformer on a CPU with native bf16) a batch
# cut in two is rounded differently from a whole one, far above 1e-5
BASE = {"epochs": 2, "batch_size": 7, "device": "cpu", "precision": "fp32"}
CONFIGS = {s: {"strategy": s} for s in STRATEGIES} | {
    # the head's AdamW epochs on cached features run on rank 0 alone, with no collectives
    "adamw-head": {"strategy": "feature-extraction", "head_solver": "adamw"},
    # val loss 0.0014, 0.0009, then 0.0011: stops after epoch 6 of 8 (best 5)
    "early-stop": {"strategy": "full", "epochs": 8, "patience": 1, "lr": 3e-3},
    # passed before the first epoch on every clock: rank 0's decision, broadcast, stops all
    "time-budget": {"strategy": "full", "time_budget": 0.001},
}
TOLERANCE = 1e-5
KILL_AT = "train-step:6@1"  # rank 1's 2nd step of epoch 2: epoch 1's checkpoint is written


def tiny_bert_without_dropout(folder: Path) -> Path:
    """tests/helpers/tiny.py's BERT with dropout off, so two processes draw no different masks."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    BertModel(config).save_pretrained(str(folder))
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("distributed")


@pytest.fixture(scope="module")
def inputs(root: Path) -> dict[str, str]:
    return {"model": f"hf:{tiny_bert_without_dropout(root / 'bert')}",
            "data": str(write_sentiment_csv(root / "reviews.csv", per_class=16))}


def config(inputs: dict[str, str], name: str, out: Path) -> tk.TrainConfig:
    return tk.TrainConfig(**inputs, **(BASE | CONFIGS[name]), out=str(out))


@pytest.fixture(scope="module")
def runs(root: Path, inputs: dict[str, str]) -> dict[str, tuple[Path, Path]]:
    """{config name: (one-process run folder, two-process run folder)}."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared
    try:
        for name in CONFIGS:
            tk.train(config(inputs, name, root / "one" / name), nproc=1)
        results = launch(train_each, ([config(inputs, name, root / "two" / name) for name in CONFIGS],), 2)
    finally:
        torch.set_num_threads(threads)
    assert [r.run_dir for r in results] == [root / "two" / name for name in CONFIGS]
    return {name: (root / "one" / name, root / "two" / name) for name in CONFIGS}


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def max_weight_difference(a: Path, b: Path) -> float:
    """Largest difference between two run folders' weights files (model, LoRA adapter)."""
    worst = 0.0
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*.safetensors"))
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*.safetensors")) and rf.WEIGHTS in names
    for name in names:
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys(), name
        worst = max([worst] + [(x[k].double() - y[k].double()).abs().max().item() for k in x if x[k].numel()])
    return worst


def metrics_lines(folder: Path) -> list[dict]:
    path = folder / rf.METRICS  # absent when no epoch ran (a time budget spent before the first)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_metrics(folder: Path) -> dict:
    return json.loads((folder / rf.TEST_METRICS).read_text())


test_metrics.__test__ = False  # a reader, not a test


@pytest.mark.parametrize("name", [*STRATEGIES, "adamw-head"])
def test_two_processes_train_what_one_does(runs, name: str) -> None:
    one, two = runs[name]
    assert max_weight_difference(one, two) < TOLERANCE
    if name == "lora":
        assert (two / rf.ADAPTER / "adapter_model.safetensors").is_file()  # compared above
    m1, m2 = test_metrics(one), test_metrics(two)
    assert (m2["epochs"], m2["accuracy"], m2["confusion_matrix"]) == (m1["epochs"], m1["accuracy"], m1["confusion_matrix"])
    assert m2["n"] == 5 and m2["trainable_params"] == m1["trainable_params"]
    lines1, lines2 = metrics_lines(one), metrics_lines(two)
    assert [(r["phase"], r["epoch"]) for r in lines2] == [(r["phase"], r["epoch"]) for r in lines1]
    fine_tune = [r["epoch"] for r in lines2 if r["phase"] == "fine-tune"]
    assert fine_tune == list(range(1, len(fine_tune) + 1))  # one line per epoch, written once
    if name not in ("feature-extraction", "linear-probe", "adamw-head"):
        assert len(fine_tune) == m2["epochs"] == 2
    for r1, r2 in zip(lines1, lines2):  # the global batch's mean loss, whatever the ranks
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert r2[key] == pytest.approx(r1[key], abs=TOLERANCE), (r2["epoch"], key)
    assert_written_once(one, two)


def assert_written_once(one: Path, two: Path) -> None:
    """The same files as the one-process folder, no temporaries, one "distributed" log line."""
    assert files(two) == files(one)
    assert not [p for p in files(two) if p.endswith((".tmp", ".old")) or "/." in f"/{p}"]
    assert not (two / rf.CHECKPOINT).exists() and not (two / rf.FAILURE).exists()
    log = (two / rf.LOG).read_text()
    assert log.count("distributed: 2 processes (Gloo), 1 threads each") == 1
    assert log.count("test accuracy") == 1  # rank 1 wrote no log lines of its own
    assert "distributed:" not in (one / rf.LOG).read_text()


def test_early_stop_and_time_budget_are_decided_alike(runs) -> None:
    for name, epochs in (("early-stop", 6), ("time-budget", 0)):
        one, two = runs[name]
        m1, m2 = test_metrics(one), test_metrics(two)
        assert m1["epochs"] == m2["epochs"] == epochs == len(metrics_lines(two)), name
        assert m2["epochs_to_best"] == m1["epochs_to_best"] and m2["warnings"] == m1["warnings"]
        assert max_weight_difference(one, two) < TOLERANCE
        assert_written_once(one, two)
    assert metrics_lines(runs["early-stop"][1])[-1]["events"][0]["kind"] == "early-stop"
    assert "time budget reached before epoch 1" in test_metrics(runs["time-budget"][1])["warnings"][0]


def test_killed_worker_stops_the_run_and_resume_continues_it(runs, inputs, root: Path, monkeypatch) -> None:
    folder = root / "killed"
    monkeypatch.setenv("TRANSFERKIT_TEST_KILL_AT", KILL_AT)
    started = time.perf_counter()
    with pytest.raises(WorkerFailedError) as caught:
        tk.train(config(inputs, "full", folder), nproc=2)
    seconds = time.perf_counter() - started
    monkeypatch.delenv("TRANSFERKIT_TEST_KILL_AT")
    assert seconds < 60, seconds
    message = str(caught.value)
    assert "Worker process 1 of 2 died (SIGKILL)" in message
    assert f"--resume {folder} --nproc 2" in message
    assert json.loads((folder / rf.FAILURE).read_text())["type"] == "WorkerFailedError"
    assert (folder / rf.CHECKPOINT).exists() and not (folder / rf.WEIGHTS).exists()
    assert [r["epoch"] for r in metrics_lines(folder)] == [1]
    shutil.copytree(folder, root / "killed-copy")

    whole = runs["full"][1]  # the same config, uninterrupted, in two processes
    resumed = tk.resume(folder, nproc=2)
    assert resumed.run_dir == folder and resumed.test_metrics["epochs"] == 2
    # the launch (spawn, imports, rendezvous) counts in the run's seconds, and is said apart
    assert 0 < resumed.test_metrics["launch_seconds"] < resumed.test_metrics["seconds"]
    assert test_metrics(folder)["seconds"] == resumed.test_metrics["seconds"]
    assert max_weight_difference(whole, folder) == 0.0
    assert not (folder / rf.FAILURE).exists() and not (folder / rf.CHECKPOINT).exists()
    assert [r["epoch"] for r in metrics_lines(folder)] == [1, 2]

    alone = tk.resume(root / "killed-copy", nproc=1)  # the other number of processes
    assert alone.test_metrics["accuracy"] == resumed.test_metrics["accuracy"]
    assert max_weight_difference(whole, root / "killed-copy") < TOLERANCE


def cli_train(inputs: dict[str, str], out: Path, *extra: str) -> int:
    return main(["-q", "train", "--model", inputs["model"], "--data", inputs["data"], "--strategy", "full",
                 "--epochs", "1", "--batch-size", "7", "--device", "cpu", "--out", str(out), "--nproc", "2", *extra])


def assert_reported_once(code: int, out: str, err: str, fragment: str) -> None:
    """Exit status 2 and one one-paragraph error however many workers failed, no traceback."""
    assert code == 2, err
    assert "Traceback" not in out + err and "[worker" not in err, err
    assert err.count("error:") == 1 and err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert fragment in err, err


def test_diverging_run_is_reported_once_through_the_cli(inputs, root: Path, capfd) -> None:
    code = cli_train(inputs, root / "diverged", "--lr", "1e9")
    out, err = capfd.readouterr()  # the workers' own file descriptors too
    assert_reported_once(code, out, err, "diverged")
    assert json.loads((root / "diverged" / rf.FAILURE).read_text())["type"] == "TrainingDivergedError"


def test_bad_input_on_rank_zero_after_launch_is_reported_once(inputs, root: Path, capfd) -> None:
    taken = root / "taken"  # only rank 0 creates the run folder, after the workers started
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code = cli_train(inputs, taken)
    out, err = capfd.readouterr()
    assert_reported_once(code, out, err, str(taken))
    assert files(taken) == {"notes.txt"}  # not a run folder: no failure.json left in it
