"""Starting runs from the dashboard: the job queue (one job at a time, cancel, a failure's
paragraph kept), the jobs API (the CLI's own check: the same paragraph, nothing started), and the
Start-a-run page driving a real tiny `transferkit train` whose curve grows while it trains."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from transferkit.dashboard.jobs import JobError, JobQueue, options_to_argv

from .harness import screenshot, wait_for


# What `python -m transferkit` does first for a job (see transferkit/__main__.py): SIGINT raises
# KeyboardInterrupt even when the test process ignores SIGINT (pytest started in the background).
_AS_TRANSFERKIT = ("import os, signal\nif os.environ.get('TRANSFERKIT_SIGINT') == 'interrupt':\n"
                   "    signal.signal(signal.SIGINT, signal.default_int_handler)\n")


def python_job(code: str) -> Callable[[str, Any, Path], list[str]]:
    """A command builder whose jobs run ``code`` (fast, and no model involved)."""
    return lambda command, argv, out: [sys.executable, "-c", _AS_TRANSFERKIT + code]




SLEEP = "import time; time.sleep(30)"


# -- the queue ------------------------------------------------------------------------------------
def test_one_job_runs_at_a_time(tmp_path: Path) -> None:
    queue = JobQueue([tmp_path], 1, build=python_job("import time; time.sleep(0.4)"), check=None)
    first, second = queue.submit("train", {"model": "m"}), queue.submit("train", {"model": "m"})
    assert (first.status, second.status) == ("running", "queued")
    wait_for(lambda: second.status == "finished", what="the second job")
    assert first.status == "finished" and first.returncode == 0
    assert second.started >= first.ended  # it waited for the first one's slot
    assert first.out != second.out and first.out.parent == tmp_path  # a folder name each


def test_two_slots_run_two_jobs(tmp_path: Path) -> None:
    queue = JobQueue([tmp_path], 2, build=python_job(SLEEP), check=None)
    jobs = [queue.submit("train", {"model": "m"}) for _ in range(3)]
    assert [j.status for j in jobs] == ["running", "running", "queued"]
    queue.shutdown()
    assert [j.status for j in jobs] == ["cancelled"] * 3


def test_cancel_a_queued_and_a_running_job(tmp_path: Path) -> None:
    # The job reports SIGINT as Ctrl-C does: a KeyboardInterrupt it can handle (a run stays resumable).
    code = ("import sys, time\ntry:\n    print('started', flush=True); time.sleep(30)\n"
            "except KeyboardInterrupt:\n    print('interrupted', flush=True); sys.exit(130)")
    queue = JobQueue([tmp_path], 1, build=python_job(code), check=None)
    running, queued = queue.submit("train", {"model": "m"}), queue.submit("train", {"model": "m"})
    assert queue.cancel(queued.id).status == "cancelled" and queued.process is None  # never started
    wait_for(lambda: "started" in running.output, what="the job's first line")
    queue.cancel(running.id)
    wait_for(lambda: running.status == "cancelled", what="the cancelled job to stop")
    assert running.returncode == 130 and list(running.output)[-1] == "interrupted"
    assert queued.status == "cancelled" and queued.started is None


def test_a_job_that_ignores_sigint_is_terminated(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX signals")
    code = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('up', flush=True); time.sleep(30)"
    queue = JobQueue([tmp_path], 1, build=python_job(code), check=None)
    job = queue.submit("train", {"model": "m"})
    wait_for(lambda: "up" in job.output, what="the job to start")
    started = time.monotonic()
    queue.shutdown(interrupt_grace=0.3, terminate_grace=0.3)
    assert job.status == "cancelled" and job.returncode != 0 and time.monotonic() - started < 5


def test_a_failed_job_keeps_the_cli_paragraph(tmp_path: Path) -> None:
    code = ("import sys; print('loading', file=sys.stderr); "
            "print('error: The data went away. Put it back.', file=sys.stderr); sys.exit(2)")
    queue = JobQueue([tmp_path], 1, build=python_job(code), check=None)
    job = queue.submit("train", {"model": "m"})
    wait_for(lambda: job.status == "failed", what="the job to fail")
    listed = queue.list()[0]
    assert listed["error"] == "The data went away. Put it back." and listed["returncode"] == 2
    assert listed["output"] == ["loading", "error: The data went away. Put it back."]


def test_a_check_that_fails_queues_nothing(tmp_path: Path) -> None:
    queue = JobQueue([tmp_path], 1, build=python_job(SLEEP), check=lambda command, argv: "Bad data. Fix it.")
    with pytest.raises(JobError, match="Bad data. Fix it."):
        queue.submit("train", {"model": "m", "data": "x"})
    assert queue.list() == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, argv", [
    ({"per_class": 20, "epochs": "3"}, ["--per-class=20", "--epochs=3"]),
    ({"augment": True, "refit": False}, ["--augment", "--no-refit"]),
    ({"class_weights": "balanced"}, ["--class-weights=balanced"]),
    ({"group_lrs": [1e-5, 1e-3], "lora-targets": "query,value"}, ["--group-lrs=1e-05,0.001", "--lora-targets=query,value"]),
    ({"data": "--out=/elsewhere", "time_budget": None, "lr": ""}, ["--data=--out=/elsewhere"]),
])
def test_options_become_cli_flags(options: dict[str, Any], argv: list[str]) -> None:
    assert options_to_argv(options) == argv


@pytest.mark.parametrize("options", [{"out": "/tmp/x"}, {"resume": "runs/x"}, {"config": "a.yaml"},
                                     {"bad name!": 1}, {"epochs": {"nested": 1}}])
def test_reserved_or_malformed_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(JobError):
        options_to_argv(options)


# -- the CLI's --check, which the queue runs before it queues a job ---------------------------------
@pytest.mark.parametrize("args, fragment", [
    (("--model", "builtin:minilm", "--data", "builtin:digits"), None),
    (("--model", "builtin:minilm", "--data", "no/such/folder"), "does not exist"),
    (("--model", "torchvision:resnet1", "--data", "builtin:digits"), "Did you mean"),
    (("--model", "timm:resnet50.nosuchtag", "--data", "builtin:digits"), "pretrained tag"),
    (("--model", "builtin:minilm", "--data", "builtin:digits", "--strategy", "lora", "--lora-rank", "0"), "lora_rank"),
    (("--model", "builtin:minilm", "--data", "builtin:digits", "--device", "cuda:7"), "cuda:7"),
])
def test_train_check_runs_the_checks_of_train_and_writes_nothing(capsys, monkeypatch, tmp_path: Path,
                                                                 args: tuple[str, ...], fragment: str | None) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "train", *args, "--check")
    if fragment is None:
        assert (code, out.strip()) == (0, "ok")
    else:
        assert code == 2 and err.startswith("error: ") and fragment in err, err
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, nothing loaded into one


# -- the API, with the real CLI check ---------------------------------------------------------------
def post(client, options: dict[str, Any], command: str = "train") -> tuple[int, Any]:
    status, body, _ = client.request("/api/jobs", method="POST", body={"command": command, "options": options})
    return status, json.loads(body)


def test_a_bad_data_path_gets_the_cli_paragraph_and_starts_nothing(client, roots: Path, capsys, tmp_path: Path) -> None:
    bad = str(tmp_path / "no-such-data.csv")
    status, answer = post(client, {"model": "builtin:minilm", "data": bad, "strategy": "full", "epochs": 2})
    code, _, err = run_cli(capsys, "train", "--model", "builtin:minilm", "--data", bad, "--strategy", "full", "--epochs", "2")
    assert status == 400 and code == 2
    assert answer["error"] == err.strip().removeprefix("error: ") and "does not exist" in answer["error"]
    assert list(roots.iterdir()) == [] and client.json("/api/jobs")["jobs"] == []


def test_unknown_and_reserved_options_are_400(client, roots: Path) -> None:
    status, answer = post(client, {"model": "builtin:minilm", "data": "builtin:digits", "lora_rnak": 4})
    assert status == 400 and "--lora-rnak" in answer["error"] and "lora-rank" in answer["error"]  # click's hint
    status, answer = post(client, {"model": "builtin:minilm", "data": "builtin:digits", "out": "/tmp/elsewhere"})
    assert status == 400 and "new folder" in answer["error"]
    status, answer = post(client, {"model": "builtin:minilm"}, command="rm")
    assert status == 400 and "Unknown command" in answer["error"]
    assert list(roots.iterdir()) == []


def test_strategies_and_models_for_the_form(client) -> None:
    strategies = {s["name"]: s for s in client.json("/api/strategies")["strategies"]}
    options = {name: [o["name"] for o in s["options"]] for name, s in strategies.items()}
    assert {"lora_rank", "lora_alpha", "lora_targets"} <= set(options["lora"])
    assert {"unfreeze_every", "gradual_groups", "lr_decay"} <= set(options["gradual"])
    assert "last_n" in options["last-n"] and "lr_decay" in options["discriminative"]
    assert "head_solver" in options["feature-extraction"] and "head_solver" not in options["linear-probe"]  # fixed
    rank = next(o for o in strategies["lora"]["options"] if o["name"] == "lora_rank")
    assert rank["flag"] == "--lora-rank" and rank["kind"] == "int" and rank["default"] == 8
    weights = next(o for o in client.json("/api/strategies")["form"] if o["name"] == "class_weights")
    assert weights["kind"] == "choice" and weights["choices"] == ["none", "balanced"] and weights["default"] == "none"
    models = client.json("/api/models")["models"]
    assert any(m["spec"] == "builtin:minilm" for m in models)
    assert {"spec", "modality", "weights_available"} <= set(models[0])


def test_an_efficiency_study_is_checked_by_its_own_command(client, roots: Path, capsys, tmp_path: Path) -> None:
    bad = str(tmp_path / "nothing-here")
    status, answer = post(client, {"model": "builtin:minilm", "data": bad, "per_class": [5, 10]}, command="efficiency")
    code, _, err = run_cli(capsys, "efficiency", "--model", "builtin:minilm", "--data", bad, "--per-class", "5,10")
    assert status == 400 and code == 2 and answer["error"] == err.strip().removeprefix("error: ")
    status, answer = post(client, {"model": "builtin:minilm", "data": "builtin:digits", "per_class": "10,5"},
                          command="efficiency")
    assert status == 400 and "strictly increasing" in answer["error"] and list(roots.iterdir()) == []


def test_cancel_of_an_unknown_job_is_404(client) -> None:
    assert client.request("/api/jobs/99/cancel", method="POST", body={})[0] == 404


# -- the page, with a real tiny run ----------------------------------------------------------------
@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory) -> Path:
    """Enough rows of the tiny BERT's words that an epoch takes about a second on two cores, so
    the page sees the curve grow (30 rows train an epoch in milliseconds)."""
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    lines = ["text,label"]
    for _ in range(4000):  # one telling word among eleven, and a tenth of the labels flipped: a curve that climbs
        good = rng.random() < 0.5
        words = [rng.choice(("good", "great") if good else ("bad", "terrible"))]
        words += [rng.choice(("movie", "film", "a", "the", "it", "was", "very", "not")) for _ in range(10)]
        rng.shuffle(words)
        label = "pos" if good != (rng.random() < 0.1) else "neg"
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cancel_stops_a_real_run_like_ctrl_c(client, roots: Path, tiny_bert_dir: Path, reviews_csv: Path,
                                             monkeypatch) -> None:
    """SIGINT: the run stops after a finished epoch and its folder is interrupted (resumable), not failed."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # see test_start_a_run_and_watch_it_train
    status, answer = post(client, {"model": f"hf:{tiny_bert_dir}", "data": str(reviews_csv), "strategy": "full",
                                   "epochs": 50})
    assert status == 200, answer
    job_id = answer["job"]["id"]
    job = lambda: next(j for j in client.json("/api/jobs")["jobs"] if j["id"] == job_id)
    folder = wait_for(lambda: job()["folder_id"], timeout=60, what="the run folder")
    wait_for(lambda: client.json(f"/api/run/{folder}")["records"], timeout=60, what="a finished epoch")
    assert client.json(f"/api/jobs/{job_id}/cancel", method="POST", body={})["job"]["status"] == "running"
    ended = wait_for(lambda: job()["status"] != "running" and job(), timeout=30, what="the run to stop")
    assert ended["status"] == "cancelled" and ended["returncode"] == 130
    summary = client.json(f"/api/run/{folder}")["summary"]
    assert summary["status"] == "interrupted" and (roots / folder.split("/", 1)[1] / "checkpoint").is_dir()


def fill_form(browser: Any, model: str, data: Path | str, epochs: int | None = None) -> None:
    page = browser.page
    page.goto(browser.origin + "/new")
    page.wait_for_selector("#opt-epochs")
    page.fill("#model-text", model)
    page.fill("#data", str(data))
    page.select_option("#strategy", "full")
    if epochs is not None:
        page.fill("#opt-epochs", str(epochs))


def test_start_a_run_and_watch_it_train(browser, roots: Path, tiny_bert_dir: Path, reviews_csv: Path,
                                       monkeypatch) -> None:
    # One torch thread in the job: with the browser, the server and other tests on two cores,
    # torch's spin-waiting threads make an epoch 10-50x slower (measured: 0.5 s against 5-28 s).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    page = browser.page
    fill_form(browser, f"hf:{tiny_bert_dir}", reviews_csv, epochs=6)
    page.click("#start")
    link = page.wait_for_selector("#jobs a.job-folder", timeout=60_000)
    assert page.inner_text("#jobs .job-status") == "running"
    screenshot(page, "start-run")
    link.click()
    page.wait_for_selector("#run-status")
    seen: list[int] = []
    shot = False
    deadline = time.monotonic() + 120
    while page.inner_text("#run-status") != "finished":
        assert time.monotonic() < deadline, f"the run did not finish; points seen: {seen}"
        points = int(page.get_attribute("#chart-accuracy", "data-val-points") or 0)
        if points and (not seen or seen[-1] != points):
            seen.append(points)
        if len(seen) >= 2 and points >= 3 and not shot:  # a few points drawn: the page as people see it
            screenshot(page, "run-progress")
            shot = True
        time.sleep(0.1)
    assert len(set(seen)) >= 2 and seen == sorted(seen), f"the validation curve did not grow live: {seen}"
    page.wait_for_selector("#results:not([hidden])")
    assert "accuracy" in page.inner_text("#metrics")
    assert int(page.get_attribute("#chart-accuracy", "data-val-points")) >= seen[-1]


def test_a_bad_data_path_shows_the_cli_error_on_the_page(browser, roots: Path, capsys, tmp_path: Path) -> None:
    bad = tmp_path / "missing-folder"
    page = browser.page
    fill_form(browser, "builtin:minilm", bad)
    page.click("#start")
    page.wait_for_selector("#form-error:not([hidden])", timeout=60_000)
    code, _, err = run_cli(capsys, "train", "--model", "builtin:minilm", "--data", bad, "--strategy", "full")
    assert code == 2 and page.inner_text("#form-error") == err.strip().removeprefix("error: ")
    assert list(roots.iterdir()) == [] and page.query_selector("#jobs tbody tr") is None
    # Chromium logs the expected 400 answer as a failed resource; any other error still fails the test
    expected = [e for e in browser.console_errors if "status of 400" in e]
    assert len(expected) == 1
    browser.console_errors.remove(expected[0])


def test_exports_write_only_into_runs_inside_the_roots(tmp_path: Path) -> None:
    from .harness import write_run

    root = tmp_path / "runs"
    run = write_run(root / "r")
    queue = JobQueue([root], build=python_job("print('ok')"), check=None)
    for options in ({}, {"run": str(tmp_path)}, {"run": str(root / "missing")}):
        with pytest.raises(JobError, match="run folder inside"):
            queue.submit("export", {**options, "format": "onnx"})
    job = queue.submit("export", {"run": str(run), "format": "onnx", "force": True})
    assert job.out == run.resolve() and job.argv == [str(run.resolve()), "--format=onnx", "--force"]
    wait_for(lambda: job.status == "finished", what="the export job")
    assert sorted(p.name for p in root.iterdir()) == ["r"]  # no new folder
