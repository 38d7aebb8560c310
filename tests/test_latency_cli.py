"""`transferkit export --latency` and `transferkit latency`: every exported file of a run timed
against the eager model, saved in the run folder, and bad input as one paragraph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, tiny_bert_dir, sentiment_csv) -> Path:
    from transferkit.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", str(sentiment_csv), "--out", str(out),
                 "--strategy", "full", "--epochs", "1"]) == 0
    return out


def test_export_then_latency(capsys, text_run: Path) -> None:
    code, out, err = run_cli(capsys, "export", text_run, "--format", "onnx", "--latency", "--json")
    assert code == 0, err
    result = json.loads(out)
    rows = {r["name"]: r for r in result["latency"]["rows"]}
    assert set(rows) == {"eager", "onnx"} and all(rows[n]["ms"]["1"] > 0 and rows[n]["ms"]["32"] > 0 for n in rows)
    assert rows["onnx"]["verification"]["top1_agreement"] == 1.0
    assert (text_run / "export" / "latency.json").is_file()
    code, out, err = run_cli(capsys, "latency", text_run, "--batch-sizes", "1,4")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("eager") and "batch 4:" in lines[0]
    assert lines[1].startswith("onnx") and "x eager)" in lines[1]
    saved = json.loads((text_run / "export" / "latency.json").read_text())
    assert saved["batch_sizes"] == [1, 4]


def test_latency_bad_input(capsys, tmp_path: Path, text_run: Path) -> None:
    code, _, err = run_cli(capsys, "latency", tmp_path / "nowhere")
    assert_clean_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "latency", text_run, "--batch-sizes", "0")
    assert_clean_error(code, err, "batch_sizes")
