"""A real run's status as the dashboard sees it (running while it trains, failed with its error),
and the `transferkit dashboard` command: one line with the address, the token, bad input."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from conftest import assert_clean_error, run_cli

import transferkit as tk
from transferkit import workflows


def test_a_real_run_is_running_then_finished(tmp_path: Path, tiny_bert_dir, sentiment_csv) -> None:
    out = tmp_path / "run"
    cfg = tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="full", epochs=4,
                         out=str(out))
    seen: set[str] = set()
    thread = threading.Thread(target=tk.train, args=(cfg,))
    thread.start()
    while thread.is_alive():
        summary = workflows.summarize_folder(out) if out.is_dir() else None
        if summary is not None:
            seen.add(summary.status)
        time.sleep(0.05)
    thread.join()
    assert "running" in seen and "interrupted" not in seen and "failed" not in seen, seen
    assert workflows.summarize_folder(out).status == "finished"


def test_a_diverged_run_is_failed_with_its_error(tmp_path: Path, tiny_bert_dir, sentiment_csv) -> None:
    out = tmp_path / "run"
    cfg = tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="full", epochs=2,
                         lr=1e30, out=str(out))
    try:
        tk.train(cfg)
    except tk.TrainingDivergedError:
        pass
    summary = workflows.summarize_folder(out)
    assert summary.status == "failed" and "diverged" in summary.error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_prints_one_line_and_serves(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    process = subprocess.Popen([sys.executable, "-m", "transferkit", "dashboard", "--runs", str(tmp_path / "runs"),
                                "--port", "0", "--no-open"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"dashboard: http://127\.0\.0\.1:(\d+)/\?token=([\w-]{20,})", line)
        assert match, (line, process.poll(), process.poll() is not None and process.stderr.read())
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())  # keeps the cookie
        with opener.open(line.split(" ", 1)[1], timeout=30) as response:  # follows the redirect
            assert response.status == 200 and b"transferkit" in response.read()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/api/runs", timeout=30)
            raise AssertionError("a request without the token was answered")
        except urllib.error.HTTPError as exc:
            assert exc.code == 403
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_tokens_differ_between_starts(tmp_path: Path) -> None:
    from transferkit.dashboard import start

    first, second = start([tmp_path], port=0), start([tmp_path], port=0)
    try:
        assert first.token != second.token and first.port != second.port
    finally:
        first.stop()
        second.stop()


def test_bad_input(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "dashboard", "--runs", tmp_path / "nowhere", "--port", "0")
    assert_clean_error(code, err, "nowhere", "no such folder")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        code, _, err = run_cli(capsys, "dashboard", "--runs", tmp_path, "--port", busy.getsockname()[1])
        assert_clean_error(code, err, "Cannot listen", "--port 0")
    code, _, err = run_cli(capsys, "dashboard", "--runs", tmp_path, "--port", "70000")
    assert code == 2 and "70000" in err
