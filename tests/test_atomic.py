"""Atomic writes reach the disk (fsync of the file before the rename, of the folder after it),
leftover temporaries of a killed process are found and removed, and default folder names are
taken exclusively."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from transferkit.io import atomic
from transferkit.io import runfolder as rf


def _record_fsyncs(monkeypatch) -> list[tuple[str, bool]]:
    """(path, whether it already had its final name) for every fsync."""
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((path, not Path(path).name.endswith(".tmp")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name file descriptors")
@pytest.mark.parametrize("write", [
    lambda p: atomic.atomic_write_text(p, "hello"),
    lambda p: atomic.atomic_write_json(p, {"a": 1}),
    lambda p: atomic.atomic_save_torch(p, {"step": 3}),
    lambda p: atomic.atomic_save_weights(p, {"w": __import__("torch").ones(2)}),
])
def test_file_and_folder_are_synced_before_and_after_the_rename(monkeypatch, tmp_path, write) -> None:
    synced = _record_fsyncs(monkeypatch)
    write(tmp_path / "out.bin")
    tmp_files = [p for p, final in synced if not final]
    assert len(tmp_files) == 1 and Path(tmp_files[0]).name.startswith(".out.bin.")  # before the rename
    assert synced[-1] == (str(tmp_path), True)  # the folder, after the rename
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_failed_write_leaves_nothing(tmp_path) -> None:
    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic.atomic_write(tmp_path / "x.json", fail)
    assert list(tmp_path.iterdir()) == []


def test_kill_point_sigkills_at_the_named_point_only(tmp_path) -> None:
    code = ("from transferkit.io.atomic import atomic_write_text as w, kill_point as k\n"
            "k('other'); w('a.txt', '1'); w('b.txt', '2'); w('b.txt', '3')\n")
    env = {**os.environ, atomic.KILL_AT_ENV: "write:b.txt:2"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # the second write of b.txt died between its temporary file and the rename
    assert (tmp_path / "b.txt").read_text() == "2"
    assert len(rf.remove_temporaries(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_kill_point_is_inert_without_the_variable(monkeypatch) -> None:
    monkeypatch.delenv(atomic.KILL_AT_ENV, raising=False)
    atomic.kill_point("write:x")  # returns: no variable, no kill
    monkeypatch.setenv(atomic.KILL_AT_ENV, "train-step:2")
    atomic.kill_point("write:x")  # another point


def test_remove_temporaries_finds_files_and_staging_folders(tmp_path) -> None:
    keep = [tmp_path / "model.safetensors", tmp_path / "checkpoint" / "state.pt", tmp_path / ".hidden"]
    drop = [tmp_path / ".metrics.jsonl.abcd1234.tmp", tmp_path / "checkpoint" / ".state.pt.00112233.tmp",
            tmp_path / "export" / ".model.onnx.x1y2.tmp" / "model.onnx", tmp_path / ".adapter.k3j4.old" / "x"]
    for path in keep + drop:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    rf.remove_temporaries(tmp_path)
    assert all(p.exists() for p in keep)
    assert sorted(tmp_path.rglob("*.tmp")) == [] and not (tmp_path / ".adapter.k3j4.old").exists()


def test_default_folder_is_taken_exclusively(tmp_path) -> None:
    base = tmp_path / "runs" / "minilm-full-20260101-120000"
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(rf.new_empty_folder(base, unique=True)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 8 and base in results
    assert sorted(p.name for p in results)[:2] == [base.name, base.name + "-2"]


def test_an_explicit_out_may_be_an_existing_empty_folder(tmp_path) -> None:
    (tmp_path / "mine").mkdir()
    assert rf.new_empty_folder(tmp_path / "mine") == tmp_path / "mine"
    (tmp_path / "mine" / "f").write_text("x")
    with pytest.raises(rf.RunFolderError, match="not empty"):
        rf.new_empty_folder(tmp_path / "mine")
