"""The dashboard's server: the token, the Host check, the headers, the Runs list, a run's details
and its live stream, and files served only from inside the roots."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from transferkit.dashboard.security import CSP

from .harness import Client, record, write_run


def test_every_request_needs_the_token(dashboard) -> None:
    anonymous = Client(dashboard)
    for path in ("/", "/api/runs", "/static/app.css", "/run/0/x", "/file/0?name=a"):
        status, body, _ = anonymous.request(path)
        assert status == 403 and b"token" in body, path
    status, _, _ = anonymous.request("/?token=wrong")
    assert status == 403
    status, _, headers = anonymous.request(dashboard.url)  # the token once: a cookie, then a clean URL
    assert status == 303 and headers["location"] == "/" and "HttpOnly" in headers["set-cookie"]
    assert anonymous.request("/api/runs")[0] == 200


def test_other_host_headers_are_refused(client) -> None:
    """DNS rebinding: a page of another site whose name resolves to 127.0.0.1 sends its own Host."""
    status, _, _ = client.request("/api/runs", headers={"Host": "attacker.example:%d" % client.dashboard.port})
    assert status == 421
    assert client.request("/api/runs", headers={"Host": "localhost:%d" % client.dashboard.port})[0] == 200


def test_responses_forbid_everything_but_the_server(client) -> None:
    status, body, headers = client.request("/")
    assert status == 200 and headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP and "http" not in CSP
    assert headers["x-content-type-options"] == "nosniff"
    html = body.decode()
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere, not even fonts


def test_runs_lists_runs_comparisons_and_statuses(client, roots: Path) -> None:
    write_run(roots / "a-finished", accuracy=0.91)
    write_run(roots / "b-interrupted", accuracy=None)
    failed = write_run(roots / "c-failed", accuracy=None)
    (failed / "failure.json").write_text(json.dumps({"error": "Training diverged at epoch 2", "type": "X"}))
    raced = write_run(roots / "d-raced", accuracy=None)  # recommend's race: trained, test split not scored
    (raced / "model.safetensors").write_bytes(b"")
    compare = roots / "compare-x"
    write_run(compare / "runs" / "full", strategy="full", accuracy=0.8)
    write_run(compare / "runs" / "lora", strategy="lora", accuracy=0.85)
    (compare / "compare.json").write_text(json.dumps([{"strategy": "full", "accuracy": 0.8},
                                                      {"strategy": "lora", "accuracy": 0.85}]))
    (roots / "not-a-run").mkdir()
    folders = {f["name"]: f for f in client.json("/api/runs")["folders"]}
    assert set(folders) == {"a-finished", "b-interrupted", "c-failed", "d-raced", "compare-x", "compare-x/full",
                            "compare-x/lora"}
    assert folders["a-finished"]["status"] == "finished" and folders["a-finished"]["accuracy"] == 0.91
    assert folders["b-interrupted"]["status"] == "interrupted"
    assert folders["d-raced"]["status"] == "finished" and folders["d-raced"]["accuracy"] is None
    assert folders["c-failed"]["status"] == "failed" and "diverged" in folders["c-failed"]["error"]
    assert folders["compare-x"]["kind"] == "compare" and folders["compare-x"]["accuracy"] == 0.85
    assert folders["compare-x/full"]["parent_id"] == folders["compare-x"]["id"]
    assert folders["a-finished"]["trainable_params"] == 12345 and folders["a-finished"]["model"]


def test_a_run_that_holds_the_lock_is_running(client, roots: Path) -> None:
    import fcntl

    run = write_run(roots / "live", accuracy=None)
    with open(run / "train.log", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        assert client.json("/api/runs")["folders"][0]["status"] == "running"
    assert client.json("/api/runs")["folders"][0]["status"] == "interrupted"


def test_run_details_come_from_the_records(client, roots: Path) -> None:
    write_run(roots / "r", records=[record(1, 0.5, phase="linear-probe"), record(1, 0.7), record(2, 0.75)])
    run = client.json("/api/run/0/r")
    assert [r["val_accuracy"] for r in run["records"]] == [0.5, 0.7, 0.75]
    assert run["records"][0]["phase"] == "linear-probe" and run["test_metrics"]["accuracy"] == 0.9
    assert "strategy: full" in run["config_text"] and "metrics.jsonl" in run["files"]


@pytest.mark.parametrize("path", [
    "/file/0/../../etc?name=passwd", "/file/0?name=../../../etc/passwd", "/file/0?name=/etc/passwd",
    "/file/0/r?name=..%2F..%2Fsecret.txt", "/file/7/r?name=config.yaml", "/file/0/r?name=missing.txt",
    "/api/run/0/..%2F..", "/run/0/nowhere", "/file/0/r?name=C:%5Cwindows", "/file/0/link-out?name=secret.txt",
    "/file/0/r?name=escape.txt",
])
def test_files_only_from_inside_the_roots(client, roots: Path, path: str) -> None:
    write_run(roots / "r")
    secret = roots.parent / "secret.txt"
    secret.write_text("do not serve")
    (roots / "link-out").symlink_to(roots.parent, target_is_directory=True)
    (roots / "r" / "escape.txt").symlink_to(secret)
    status, body, _ = client.request(path)
    assert status == 404 and b"do not serve" not in body, (path, status)


def test_files_inside_the_roots_are_served(client, roots: Path) -> None:
    write_run(roots / "r")
    status, body, headers = client.request("/file/0/r?name=config.yaml")
    assert status == 200 and b"strategy: full" in body


def _events(client: Client, path: str, until: str, timeout: float = 15.0) -> list[tuple[str, dict]]:
    """Read server-sent events until one of kind ``until`` arrives."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(client.jar))
    events, kind = [], None
    with opener.open(client.base + path, timeout=timeout) as stream:
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                events.append((kind, json.loads(line[6:])))
                if kind == until:
                    return events
    return events


def test_live_stream_sends_complete_lines_only(client, roots: Path) -> None:
    """A partial last line is not sent until it is complete; the stream ends with the run."""
    import fcntl

    run = write_run(roots / "live", records=[record(1, 0.5)], accuracy=None)
    handle = open(run / "train.log", "a")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    line = json.dumps(record(2, 0.6).to_dict())

    def writer() -> None:
        time.sleep(0.6)
        with open(run / "metrics.jsonl", "a") as f:
            f.write(line[:20])  # a writer in the middle of a line
            f.flush()
            time.sleep(0.8)
            f.write(line[20:] + "\n")
        time.sleep(0.6)
        write_run(run, records=[record(1, 0.5), record(2, 0.6)], accuracy=0.7)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()

    thread = threading.Thread(target=writer)
    started = time.monotonic()
    thread.start()
    events = _events(client, "/api/events/run/0/live", until="end")
    thread.join()
    epochs = [e["record"]["val_accuracy"] for k, e in events if k == "epoch"]
    assert epochs == [0.5, 0.6]
    assert [e["status"] for k, e in events if k == "status"] == ["running", "finished"]
    assert time.monotonic() - started < 10


def test_a_folder_deleted_under_the_server(client, roots: Path) -> None:
    run = write_run(roots / "gone", accuracy=None)
    import fcntl

    handle = open(run / "train.log", "a")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)

    def remove() -> None:
        time.sleep(0.5)
        handle.close()
        shutil.rmtree(run)

    threading.Thread(target=remove).start()
    events = _events(client, "/api/events/run/0/gone", until="end")
    assert events[-1] == ("end", {"status": "deleted"})
    assert client.json("/api/runs")["folders"] == []
    assert client.request("/api/run/0/gone")[0] == 404


def test_a_thousand_run_folders_list_in_under_a_second(client, roots: Path) -> None:
    template = write_run(roots / "run-0000")
    for i in range(1, 1000):
        shutil.copytree(template, roots / f"run-{i:04d}")
    os.utime(roots / "run-0500" / "test_metrics.json")  # the newest
    seconds = []
    for _ in range(2):  # the first request parses every folder; later ones only look at their times
        started = time.perf_counter()
        folders = client.json("/api/runs")["folders"]
        seconds.append(time.perf_counter() - started)
        assert len(folders) == 1000 and folders[0]["name"] == "run-0500"
    assert max(seconds) < 1.0, seconds  # measured here: 0.30 s, then 0.13 s
