"""A gradual-unfreezing run killed after its second unfreezing and resumed from its folder ends
exactly like an uninterrupted run: same groups, same losses, same test metrics."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, run_cli, write_sentiment_csv
from safetensors.torch import load_file

import transferkit as tk
from transferkit.cli import main
from transferkit.io import runfolder as rf
from transferkit.io.records import Phase
from transferkit.train import checkpoint, runner
from transferkit.train.loop import Checkpoint, LoopState
from transferkit.train.run_log import run_log


def _records(run) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


def _config(tiny_bert_dir, sentiment_csv, out) -> tk.TrainConfig:
    return tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="gradual",
                          unfreeze_every=1, epochs=5, patience=10, lr_decay=0.5, out=str(out), checkpoint_every=0)


def test_gradual_killed_and_resumed_matches_uninterrupted(tmp_path, monkeypatch, capsys, tiny_bert_dir,
                                                           sentiment_csv) -> None:
    whole = tk.train(_config(tiny_bert_dir, sentiment_csv, tmp_path / "whole"))
    assert not (whole.run_dir / "checkpoint").exists()  # removed once the run finished

    real_save = runner.save_checkpoint

    def save_then_die(run_dir, ck, *run_state):
        real_save(run_dir, ck, *run_state)
        if ck.state.epoch == 3:  # epoch 3 is the second unfreezing step (K = 1)
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "save_checkpoint", save_then_die)
    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        tk.train(_config(tiny_bert_dir, sentiment_csv, killed))
    monkeypatch.setattr(runner, "save_checkpoint", real_save)
    assert not (killed / "test_metrics.json").exists()
    assert [list(r["lrs"]) for r in _records(killed)][-1] == ["head", "blocks.1", "blocks.0"]
    # the log's last line says how to go on
    assert (killed / "train.log").read_text().splitlines()[-1].endswith(
        f"was interrupted; continue it from its last finished epoch with `transferkit train --resume {killed}` "
        "(tk.resume).")

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


def test_interrupted_before_a_checkpoint_says_start_again(tmp_path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(KeyboardInterrupt), run_log(run_dir):
        raise KeyboardInterrupt
    assert "start it again with `transferkit train --config" in (run_dir / "train.log").read_text()
    assert not (run_dir / rf.FAILURE).exists()  # interrupted is not failed (the dashboard tells them apart)


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


@pytest.fixture(autouse=True)
def _no_stale_console_handler(monkeypatch) -> None:
    """An earlier test's main() left a handler on its captured (now closed) stderr."""
    log = logging.getLogger("transferkit")
    monkeypatch.setattr(log, "handlers", [h for h in log.handlers if isinstance(h, logging.FileHandler)])


_REAL = {"save_checkpoint": runner.save_checkpoint, "kill_point": runner.kill_point}


def _revive(monkeypatch) -> None:
    """Put the runner's real functions back (the next call is the resumed process)."""
    for name, function in _REAL.items():
        monkeypatch.setattr(runner, name, function)


class _Killed(BaseException):
    """Stands in for SIGKILL in-process: nothing after the raise runs (not even ``except Exception``)."""


def _kill_at(monkeypatch, point: str) -> None:
    """Make ``runner``'s test hook raise at ``point`` (the subprocess version is test_kill9.py)."""
    def kill_point(name: str) -> None:
        if name == point:
            raise _Killed(point)

    monkeypatch.setattr(runner, "kill_point", kill_point)


def _quick(tiny_bert_dir, data, out, **kw) -> tk.TrainConfig:
    return tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(data), lr=3e-3, batch_size=8,
                          out=str(out) if out else None, checkpoint_every=0,  # kills name their epoch
                          **{"strategy": "full", "epochs": 10, "patience": 10, **kw})


def _kill_after_epoch(monkeypatch, epoch: int, elapsed: float | None = None) -> None:
    """Save the checkpoint of ``epoch`` (claiming ``elapsed`` seconds spent), then die."""
    real_save = runner.save_checkpoint

    def save_then_die(run_dir, ck, *run_state):
        if elapsed is not None:
            run_state[0].elapsed = elapsed
        real_save(run_dir, ck, *run_state)
        if ck.state.epoch == epoch:
            raise _Killed(epoch)

    monkeypatch.setattr(runner, "save_checkpoint", save_then_die)


def test_resume_honours_a_spent_time_budget(monkeypatch, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    _kill_after_epoch(monkeypatch, 2, elapsed=1e6)  # killed after epoch 2, its time budget long spent
    with pytest.raises(_Killed):
        tk.train(_quick(tiny_bert_dir, sentiment_csv, tmp_path / "run", time_budget=600))
    _revive(monkeypatch)
    result = tk.resume(tmp_path / "run")
    assert [r["epoch"] for r in _records(result.run_dir)] == [1, 2]  # no epoch after the budget
    assert any("time budget reached before epoch 3" in w for w in result.test_metrics["warnings"])
    assert result.test_metrics["seconds"] >= 1e6  # the time before the kill counts


def test_resume_after_early_stop_trains_no_further(monkeypatch, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    """Killed after the early stop and the best weights were final (test_kill9.py kills a real
    process at the other points, fit-done and test-pass): the resume only tests."""
    whole = tk.train(_quick(tiny_bert_dir, sentiment_csv, tmp_path / "whole", patience=2))
    assert len(_records(whole.run_dir)) == 6  # epoch 6 decides the early stop
    _kill_at(monkeypatch, "outputs")
    run = tmp_path / "run"
    with pytest.raises(_Killed):
        tk.train(_quick(tiny_bert_dir, sentiment_csv, run, patience=2))
    _revive(monkeypatch)
    assert (run / "model.safetensors").is_file() and not (run / "test_metrics.json").exists()
    result = tk.resume(run)
    assert _records(run) == _records(whole.run_dir)
    assert result.test_metrics["confusion_matrix"] == whole.test_metrics["confusion_matrix"]
    assert result.test_metrics["best_epoch"] == whole.test_metrics["best_epoch"] == 4


def _interrupted(monkeypatch, tmp_path, tiny_bert_dir, data) -> Path:
    _kill_after_epoch(monkeypatch, 1)
    with pytest.raises(_Killed):
        tk.train(_quick(tiny_bert_dir, data, tmp_path / "run", epochs=3))
    _revive(monkeypatch)
    return tmp_path / "run"


def test_resume_refuses_changed_data(monkeypatch, capsys, tmp_path, tiny_bert_dir) -> None:
    data = write_sentiment_csv(tmp_path / "reviews.csv")
    run = _interrupted(monkeypatch, tmp_path, tiny_bert_dir, data)
    lines = data.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",neg"  # one label changed
    data.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, "train", "--resume", run)
    assert_clean_error(code, err, "changed since the run started", "Restore the data", "--config")
    assert (run / "checkpoint" / "state.pt").is_file()  # nothing lost: restoring the data resumes


def test_resume_refuses_changed_split_or_config(monkeypatch, capsys, tmp_path, tiny_bert_dir,
                                                sentiment_csv) -> None:
    run = _interrupted(monkeypatch, tmp_path, tiny_bert_dir, sentiment_csv)
    config = run / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("seed: 0", "seed: 1"))  # another split of the same files
    code, _, err = run_cli(capsys, "train", "--resume", run)
    assert_clean_error(code, err, "config.yaml changed since the run started")
    config.write_text("# a comment changes nothing\n" + original)
    assert main(["-q", "train", "--resume", str(run)]) == 0


def test_split_change_alone_changes_the_fingerprint(sentiment_csv) -> None:
    from transferkit.data import load_data

    a, b = load_data(str(sentiment_csv), seed=0), load_data(str(sentiment_csv), seed=1)
    assert sorted(a.train.items + a.val.items + a.test.items) == sorted(b.train.items + b.val.items + b.test.items)
    assert checkpoint.data_fingerprint(a) != checkpoint.data_fingerprint(b)
    assert checkpoint.data_fingerprint(a) == checkpoint.data_fingerprint(load_data(str(sentiment_csv), seed=0))


def test_cuda_random_state_saved_and_restored(monkeypatch, tmp_path) -> None:
    """No GPU here: torch.cuda's state functions are stood in for, the code path is the real one."""
    states = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    ck = Checkpoint(Phase.FINE_TUNE, LoopState(epoch=1), {"w": torch.ones(2)}, None, {}, [0],
                    torch.get_rng_state(), None, [])
    checkpoint.save_checkpoint(tmp_path, ck, checkpoint.RunState("d", "c", 1.5, ["w1"], {"head": {"l2": 0.1}}))
    loaded = checkpoint.load_checkpoint(tmp_path)
    checkpoint.restore_cuda_rng(loaded)
    assert [s.tolist() for s in restored] == [[1, 2, 3], [4, 5]]
    assert loaded.run == checkpoint.RunState("d", "c", 1.5, ["w1"], {"head": {"l2": 0.1}})


def test_numpy_and_python_random_states_restored(tmp_path) -> None:
    import random

    import numpy as np

    ck = Checkpoint(Phase.FINE_TUNE, LoopState(epoch=1), {"w": torch.ones(2)}, None, {}, [0],
                    torch.get_rng_state(), None, [])
    checkpoint.save_checkpoint(tmp_path, ck)
    expected = (np.random.random(), random.random())
    checkpoint.restore_host_rng(checkpoint.load_checkpoint(tmp_path).host_rng)
    assert (np.random.random(), random.random()) == expected


def test_resume_removes_leftover_temporaries(monkeypatch, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    run = _interrupted(monkeypatch, tmp_path, tiny_bert_dir, sentiment_csv)
    leftovers = [run / ".metrics.jsonl.1a2b3c4d.tmp", run / "checkpoint" / ".state.pt.00ff00ff.tmp",
                 run / ".adapter.x8y9.tmp" / "adapter_model.safetensors"]
    for path in leftovers:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half")
    tk.resume(run)
    assert sorted(run.rglob("*.tmp")) == []


def test_unreadable_checkpoint_is_a_clean_error(monkeypatch, capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    run = _interrupted(monkeypatch, tmp_path, tiny_bert_dir, sentiment_csv)
    (run / "checkpoint" / "state.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "train", "--resume", run)
    assert_clean_error(code, err, "state.pt is unreadable", "--config")


def test_default_folders_of_runs_started_together_differ(monkeypatch, tmp_path, tiny_bert_dir,
                                                         sentiment_csv) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda *_: "20260101-120000")  # the same second
    taken = rf.default_folder(f"hf:{tiny_bert_dir}", strategy="full")
    taken.mkdir(parents=True)  # another run's folder, created a moment ago and still empty
    result = tk.train(_quick(tiny_bert_dir, sentiment_csv, None, epochs=1))
    assert result.run_dir.name == taken.name + "-2" and not any(taken.iterdir())


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("seconds", "peak_memory_mb", "peak_cuda_memory_mb")}


def test_lp_ft_resumed_keeps_its_probe_entries(monkeypatch, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    """The probe phase ran before the kill: its test-record entries (head choice, probe scale) and
    warnings come back from the checkpoint, not from a phase the resume skips."""
    config = {"strategy": "lp-ft", "epochs": 3, "overfit_gap": 0.01, "wise_alpha": 0.75}
    whole = tk.train(_quick(tiny_bert_dir, sentiment_csv, tmp_path / "whole", **config))
    _kill_after_epoch(monkeypatch, 1)
    with pytest.raises(_Killed):
        tk.train(_quick(tiny_bert_dir, sentiment_csv, tmp_path / "run", **config))
    _revive(monkeypatch)
    resumed = tk.resume(tmp_path / "run")
    assert "head" in resumed.test_metrics and "probe_scale" in resumed.test_metrics
    assert _comparable(resumed.test_metrics) == _comparable(whole.test_metrics)
    # phase 2's start (the probe) came back from the checkpoint: the same weights ensemble
    assert resumed.test_metrics["wise_alpha"] == 0.75
    kept, resumed_weights = (load_file(str(r / rf.WEIGHTS)) for r in (whole.run_dir, resumed.run_dir))
    assert all(torch.equal(kept[k], resumed_weights[k]) for k in kept)


def test_lp_ft_resume_without_its_probe_weights_is_a_clean_error(monkeypatch, capsys, tmp_path, tiny_bert_dir,
                                                                 sentiment_csv) -> None:
    """--wise-alpha needs phase 2's starting weights: a checkpoint without them is refused, not
    resumed into a run that keeps other weights than its config says."""
    _kill_after_epoch(monkeypatch, 1)
    with pytest.raises(_Killed):
        tk.train(_quick(tiny_bert_dir, sentiment_csv, tmp_path / "run", strategy="lp-ft", epochs=3, wise_alpha=0.5))
    _revive(monkeypatch)
    start = tmp_path / "run" / "checkpoint" / "phase-start.safetensors"
    assert start.is_file()  # it survived the checkpoint's pruning of older weights
    start.unlink()
    code = main(["-q", "train", "--resume", str(tmp_path / "run")])
    assert_clean_error(code, capsys.readouterr().err, "phase-start.safetensors is missing", "--wise-alpha")
