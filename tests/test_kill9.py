"""kill -9 and resume: a real ``transferkit train`` process SIGKILLed at exact points, each time
resumed with ``--resume``, ends with the same test metrics, records and weights as a run that was
never interrupted, and leaves no temporary file behind.

The points are reached through the test hook ``TRANSFERKIT_TEST_KILL_AT=<point>[:<n>]``
(``transferkit.io.atomic.kill_point``): the process sends itself SIGKILL there, so nothing of
Python's clean-up runs, exactly as with ``kill -9``. One run is killed four times in a row, each
resume dying at the next point, which also checks that a resumed run can itself be resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from transferkit.io.atomic import KILL_AT_ENV

# (point, what the run folder must show after the kill)
CHAIN = [
    ("train-step:5", "during epoch 2 (3 steps an epoch): the checkpoint holds epoch 1"),
    ("write:state.pt:2", "while writing the checkpoint of epoch 3: its temporary file is left behind"),
    ("fit-done", "after early stopping decided (epoch 6), before the test pass"),
    ("test-pass", "during the test pass"),
]


def _train_args(tiny_bert_dir: Path, data: Path) -> list[str]:
    # lr 3e-3, patience 2: validation peaks at epoch 4 and early stopping ends the run at epoch 6
    return ["train", "--model", f"hf:{tiny_bert_dir}", "--data", str(data), "--strategy", "full",
            "--epochs", "10", "--patience", "2", "--lr", "3e-3", "--batch-size", "8", "--seed", "0",
            "--checkpoint-every", "0"]  # a checkpoint after every epoch, so each kill point has one


def _cli(cwd: Path, args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_ENV}
    env.update(TRANSFERKIT_OFFLINE="1", HF_HUB_OFFLINE="1")
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    return subprocess.run([sys.executable, "-m", "transferkit.cli", "-q", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def _test_metrics(run: Path) -> dict:
    metrics = json.loads((run / "test_metrics.json").read_text())
    for key in ("seconds", "peak_memory_mb", "peak_cuda_memory_mb"):  # wall time and memory vary
        metrics.pop(key, None)
    return metrics


def _temporaries(run: Path) -> list[Path]:
    return sorted(run.rglob("*.tmp"))


def _state_epoch(run: Path) -> int:
    state = torch.load(run / "checkpoint" / "state.pt", map_location="cpu", weights_only=True)
    return int(state["epoch"])


def test_killed_four_times_and_resumed_matches_uninterrupted(tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    args = _train_args(tiny_bert_dir, sentiment_csv)
    whole = _cli(tmp_path, [*args, "--out", "whole"])
    assert whole.returncode == 0, whole.stderr
    reference = tmp_path / "whole"
    kinds = [[e["kind"] for e in r["events"]] for r in _records(reference)]
    assert len(kinds) == 6 and kinds[-1] == ["early-stop"], kinds  # the matrix needs the early stop

    run = tmp_path / "run"
    for i, (point, where) in enumerate(CHAIN):
        command = [*args, "--out", "run"] if i == 0 else ["train", "--resume", "run"]
        killed = _cli(tmp_path, command, kill_at=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.returncode, killed.stderr)
        assert not (run / "test_metrics.json").exists(), where
        if point.startswith("train-step"):
            assert _state_epoch(run) == 1 and len(_records(run)) == 1, where
        if point.startswith("write:"):
            assert _state_epoch(run) == 2, where
            assert [p.name.startswith(".state.pt.") for p in _temporaries(run)] == [True], where
        if point == "fit-done":
            assert _state_epoch(run) == 6, where

    final = _cli(tmp_path, ["train", "--resume", "run"])
    assert final.returncode == 0, final.stderr
    assert _records(run) == _records(reference)
    assert _test_metrics(run) == _test_metrics(reference)
    mine, theirs = load_file(str(run / "model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert _temporaries(run) == [] and not (run / "checkpoint").exists()
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in reference.iterdir())
