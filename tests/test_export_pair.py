"""An exported file and its sidecar are a pair: the sidecar carries the file's SHA-256, an export
replaced with ``--force`` and killed between the two renames leaves a pair that refuses to load
(instead of predicting with another export's labels or input shape), and the next export cleans
up the killed one's staging folder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from conftest import assert_clean_error, run_cli, write_digit_folder

import transferkit as tk
from transferkit.cli import main
from transferkit.export import core


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pair")
    write_digit_folder(root / "digits", classes=(0, 1), per_class=8)
    out = root / "run"
    assert main(["-q", "train", "--model", "timm:test_efficientnet", "--no-pretrained", "--data",
                 str(root / "digits"), "--out", str(out), "--epochs", "1"]) == 0
    return out


@pytest.fixture(autouse=True)
def _no_stale_console_handler(monkeypatch) -> None:
    """An earlier main() left a console handler on its captured (now closed) stderr."""
    log = logging.getLogger("transferkit")
    monkeypatch.setattr(log, "handlers", [h for h in log.handlers if isinstance(h, logging.FileHandler)])


def _export(run: Path, out: Path, *extra: str) -> None:
    assert main(["-q", "export", str(run), "--format", "torchscript", "--out", str(out), "--samples", "2",
                 *extra]) == 0


def test_sidecar_carries_the_file_hash(run, tmp_path) -> None:
    out = tmp_path / "model.pt"
    _export(run, out)
    sidecar = json.loads((tmp_path / "model.pt.json").read_text())
    assert sidecar["file_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert tk.load_exported(out).labels == ["0", "1"]


class _Killed(BaseException):
    pass


def test_force_export_killed_between_the_renames_is_detected(run, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "model.pt"
    _export(run, out)  # dynamic batch
    old_file = out.read_bytes()
    real_replace = os.replace

    def replace_then_die(source, target) -> None:  # the sidecar lands, then the process dies
        real_replace(source, target)
        if Path(target) == out.with_name("model.pt.json"):
            raise _Killed(target)

    monkeypatch.setattr(core.os, "replace", replace_then_die)
    with pytest.raises(_Killed):
        core.export_run(run, "torchscript", out=out, dynamic_batch=False, samples=2, force=True)
    monkeypatch.setattr(core.os, "replace", real_replace)
    assert out.read_bytes() == old_file  # the old file with the new sidecar: a mixed pair
    assert json.loads((tmp_path / "model.pt.json").read_text())["dynamic_batch"] is False
    with pytest.raises(tk.ExportError, match="does not match its sidecar"):
        tk.load_exported(out)
    code, _, err = run_cli(capsys, "predict", out, str(next((run.parent / "digits" / "0").glob("*.png"))))
    assert_clean_error(code, err, "does not match its sidecar", "--force")

    stale = tmp_path / ".model.pt.dead1234.tmp"  # a SIGKILLed export's staging folder (no finally ran)
    stale.mkdir()
    (stale / "model.pt").write_bytes(b"half")
    _export(run, out, "--force", "--fixed-batch")  # exporting again repairs the pair and tidies up
    assert tk.load_exported(out).sidecar["dynamic_batch"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]


def test_a_sidecar_copied_beside_another_file_is_refused(run, tmp_path) -> None:
    a, b = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"
    _export(run, a)
    _export(run, b, "--fixed-batch")
    shutil.copy(a.with_name("model.pt.json"), b.with_name("model.pt.json"))
    with pytest.raises(tk.ExportError, match="does not match its sidecar"):
        tk.load_exported(b)
