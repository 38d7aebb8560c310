"""``--nproc`` beyond ``train``: compare and efficiency run their training data-parallel, and the
dashboard's job queue runs a ``--nproc`` job whose cancel stops the launcher and every worker."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
from conftest import run_cli, write_sentiment_csv

from transferkit.dashboard.jobs import JobQueue
from transferkit.workflows import sample_efficiency


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    return write_sentiment_csv(tmp_path_factory.mktemp("dist") / "reviews.csv", per_class=30)


def test_compare_with_nproc_trains_every_strategy_in_two_processes(capsys, tmp_path, tiny_bert_dir, reviews) -> None:
    out = tmp_path / "cmp"
    with socket.socket() as busy:  # torch.distributed's usual port taken: the launcher picks a free one
        with contextlib.suppress(OSError):  # already taken by something else: just as good
            busy.bind(("127.0.0.1", 29500))
            busy.listen()
        code, stdout, err = _compare(capsys, tiny_bert_dir, reviews, out)
    assert code == 0, err
    rows = {r["strategy"]: r for r in json.loads(stdout)}
    assert {s: r["status"] for s, r in rows.items()} == {"feature-extraction": "ok", "full": "ok"}
    for name in rows:
        log = (out / "runs" / name / "train.log").read_text()
        assert log.count("distributed: 2 processes") == 1  # rank 0 alone wrote the run's log
        assert len((out / "runs" / name / "metrics.jsonl").read_text().splitlines()) >= 1


def _compare(capsys, tiny_bert_dir, reviews, out):
    return run_cli(capsys, "-q", "compare", "--model", f"hf:{tiny_bert_dir}", "--data", reviews,
                   "--strategies", "feature-extraction,full", "--epochs", "2", "--nproc", "2", "--out", out, "--json")


def test_efficiency_with_nproc_writes_its_study_once(tmp_path, tiny_bert_dir, reviews) -> None:
    out = tmp_path / "eff"
    result = sample_efficiency(f"hf:{tiny_bert_dir}", str(reviews), per_class="2,4", seeds=1,
                               methods=["feature-extraction", "fine-tune"], out=out, time_budget=30, nproc=2)
    points = json.loads((out / "efficiency.json").read_text())
    assert points == result.points and [(p["method"], p["per_class"]) for p in points] == [
        ("feature-extraction", 2), ("fine-tune", 2), ("feature-extraction", 4), ("fine-tune", 4)]
    for p in points:
        assert p["status"] == "ok" and 0.0 <= p["accuracy"] <= 1.0
    assert (out / "efficiency_summary.json").is_file() and (out / "efficiency.png").is_file()


def _session_members(sid: int) -> list[int]:
    """Processes still alive in session ``sid`` (a job leads a session of its own)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid and "State:\tZ" not in (entry / "status").read_text():
                    alive.append(int(entry.name))
            except (OSError, ProcessLookupError):
                continue
    return alive


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc (Linux)")
def test_a_cancelled_nproc_job_stops_its_workers_and_stays_resumable(tmp_path, tiny_bert_dir, reviews,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    queue = JobQueue([tmp_path], 1)
    job = queue.submit("train", {"model": f"hf:{tiny_bert_dir}", "data": str(reviews), "strategy": "full",
                                 "epochs": 200, "nproc": 2})
    deadline = time.monotonic() + 120
    while not (job.out / "metrics.jsonl").is_file():  # a finished epoch: a checkpoint to resume from
        assert job.status == "running" and time.monotonic() < deadline, list(job.output)
        time.sleep(0.2)
    pid = job.process.pid
    assert len(_session_members(pid)) >= 3  # the launcher and its two workers
    queue.cancel(job.id)
    while job.status == "running":
        assert time.monotonic() < deadline, list(job.output)
        time.sleep(0.2)
    assert job.status == "cancelled" and job.returncode == 130, list(job.output)
    time.sleep(1.0)
    assert _session_members(pid) == []  # no worker outlives the job
    assert (job.out / "checkpoint").is_dir() and not (job.out / "failure.json").exists()
