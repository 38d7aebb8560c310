"""Export: ONNX and TorchScript files verified against eager, predict from them, and every bad input.

Runs are trained once per module through the CLI: a tiny random timm CNN (``timm:test_efficientnet``,
100 k parameters) on real digits and a 2-layer BERT on a small sentiment table, so each export
takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk
from transferkit.cli import main
from transferkit.config import DEFAULT_MAX_IMAGE_PIXELS
from transferkit.data.transforms import set_max_image_pixels
from transferkit.export import read_sidecar, tensorrt_missing

from conftest import assert_clean_error, run_cli, write_digit_folder, write_sentiment_csv, write_truncated_jpeg



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export_data")
    write_digit_folder(root / "digits", per_class=10)
    write_sentiment_csv(root / "reviews.csv")
    return root


@pytest.fixture(scope="module")
def image_run(data_dir) -> Path:
    out = data_dir / "image_run"
    assert main(["-q", "train", "--model", "timm:test_efficientnet", "--no-pretrained", "--data",
                 str(data_dir / "digits"), "--out", str(out), "--epochs", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def text_run(data_dir, tiny_bert_dir) -> Path:
    out = data_dir / "text_run"
    assert main(["-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", str(data_dir / "reviews.csv"),
                 "--out", str(out), "--epochs", "3"]) == 0
    return out


def _inputs(run: Path, data_dir: Path) -> list[str]:
    if "image" in run.name:
        return [str(p) for c in ("0", "1", "2") for p in sorted((data_dir / "digits" / c).glob("*.png"))[:2]]
    return ["good great film", "bad terrible movie it was bad", "a", "the girl carrying a baby was very good"]


def _predict_rows(capsys, target: Path, inputs: list[str]) -> list[dict]:
    code, out, err = run_cli(capsys, "predict", target, *inputs, "--json", "-k", "3")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def assert_same_predictions(exported: list[dict], eager: list[dict]) -> None:
    assert [r["input"] for r in exported] == [r["input"] for r in eager]
    for a, b in zip(exported, eager):
        assert [t["label"] for t in a["top_k"]] == [t["label"] for t in b["top_k"]]
        assert [t["score"] for t in a["top_k"]] == pytest.approx([t["score"] for t in b["top_k"]], abs=1e-4)


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
@pytest.mark.parametrize("which", ["image_run", "text_run"])
def test_export_verifies_and_predicts_like_the_run(capsys, request, data_dir, which, fmt, suffix) -> None:
    run = request.getfixturevalue(which)
    out = run / "exported" / f"model{suffix}"
    code, stdout, err = run_cli(capsys, "export", run, "--format", fmt, "--out", out)
    assert code == 0, err
    assert "verified on" in stdout and "validation examples" in stdout and "top-1 agreement 100.0%" in stdout
    names = {p.name for p in out.parent.iterdir()}
    assert {out.name, out.name + ".json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]  # the staging folder is gone
    sidecar = read_sidecar(out)
    assert sidecar["format"] == fmt and sidecar["labels"] == json.loads((run / "model_spec.json").read_text())["labels"]
    assert sidecar["verification"]["max_abs_diff"] <= 1e-4 and sidecar["transferkit_version"]
    if which == "text_run":
        assert (out.parent / (out.name + ".tokenizer")).is_dir()
        assert [i["name"] for i in sidecar["inputs"]][:2] == ["input_ids", "attention_mask"]
    else:
        image = sidecar["preprocessing"]["image"]
        assert {"resize_size", "crop_size", "mean", "std", "interpolation"} <= set(image)
    inputs = _inputs(run, data_dir)
    assert_same_predictions(_predict_rows(capsys, out, inputs), _predict_rows(capsys, run, inputs))


def test_onnx_metadata_and_default_path(capsys, image_run, tmp_path, data_dir) -> None:
    code, _, err = run_cli(capsys, "export", image_run, "--format", "onnx", "--force")
    assert code == 0, err
    path = image_run / "export" / "model.onnx"
    from transferkit.export.onnx import read_metadata

    sidecar = read_sidecar(path)  # the file's own hash cannot be inside it: the JSON sidecar has it
    assert sidecar.pop("file_sha256") and read_metadata(path) == sidecar
    alone = tmp_path / "alone.onnx"  # without its JSON sidecar, the metadata is enough
    alone.write_bytes(path.read_bytes())
    inputs = _inputs(image_run, data_dir)[:2]
    assert_same_predictions(_predict_rows(capsys, alone, inputs), _predict_rows(capsys, image_run, inputs))


def test_predict_a_folder_of_images(capsys, image_run, data_dir, tmp_path) -> None:
    # A folder stands for every image below it, sorted, for the run and for its exported file alike.
    folder = tmp_path / ("a folder with a name long enough to be shortened in the listing" * 2)
    (folder / "nested").mkdir(parents=True)
    sources = sorted((data_dir / "digits" / "1").glob("*.png"))[:3]
    for i, src in enumerate(sources):
        target = folder / ("nested" if i else "") / f"digit-{i}.png"
        target.write_bytes(src.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    expected = [str(folder / "digit-0.png"), str(folder / "nested" / "digit-1.png"),
                str(folder / "nested" / "digit-2.png")]
    eager = _predict_rows(capsys, image_run, [str(folder)])
    assert [r["input"] for r in eager] == expected
    exported = image_run / "folder-export" / "model.onnx"
    assert run_cli(capsys, "export", image_run, "--format", "onnx", "--out", exported)[0] == 0
    assert_same_predictions(_predict_rows(capsys, exported, [str(folder)]), eager)
    code, stdout, _ = run_cli(capsys, "predict", image_run, str(folder), "-k", "1")
    lines = stdout.splitlines()  # long paths keep their end: the file names tell the rows apart
    assert code == 0 and len(lines) == 3
    assert lines[0].startswith("...") and lines[0].split("\t")[0].endswith("digit-0.png")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    for target in (image_run, exported):
        code, _, err = run_cli(capsys, "predict", target, str(tmp_path / "empty"))
        assert_clean_error(code, err, "holds no image files")


def test_predict_a_table_of_texts_or_image_paths(capsys, image_run, text_run, data_dir, tmp_path) -> None:
    # A table of new examples needs no label column: one column is read (texts, named by row,
    # or image paths relative to the table), rows with an empty cell left out.
    table = tmp_path / "new.csv"
    table.write_text('id,review\n1,good great film\n2,\n3,"bad, terrible movie"\n')
    code, stdout, err = run_cli(capsys, "predict", text_run, table, "--column", "review", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["input"] for r in rows] == [f"{table} (row 2)", f"{table} (row 4)"]
    direct = _predict_rows(capsys, text_run, ["good great film", "bad, terrible movie"])
    assert [r["top_k"] for r in rows] == [r["top_k"] for r in direct]
    code, _, err = run_cli(capsys, "predict", text_run, table)  # the run's text column is 'text'
    assert_clean_error(code, err, "has no column 'text'", "id, review", "--column NAME")
    code, _, err = run_cli(capsys, "predict", text_run, tmp_path / "missing.txt")  # not the string 'missing.txt'
    assert_clean_error(code, err, "no such file", "standard input")

    (tmp_path / "imgs").mkdir()
    sources = sorted((data_dir / "digits" / "2").glob("*.png"))[:2]
    for i, src in enumerate(sources):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(src.read_bytes())
    listing = tmp_path / "images.jsonl"
    listing.write_text("".join(json.dumps({"path": f"imgs/{i}.png"}) + "\n" for i in range(2)))
    expected = [str(tmp_path / "imgs" / f"{i}.png") for i in range(2)]
    rows = _predict_rows(capsys, image_run, [str(listing)])
    assert [r["input"] for r in rows] == expected
    assert_same_predictions(rows, _predict_rows(capsys, image_run, expected))


def test_predict_lists_unreadable_images_after_the_others(capsys, image_run, data_dir, tmp_path) -> None:
    # One broken file in a folder of thousands must not cost the other predictions: they are
    # printed, then one paragraph names the broken file, exit status 2 (as `cat a b` does).
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, src in zip(("a.png", "c.png"), sorted((data_dir / "digits" / "1").glob("*.png"))):
        (folder / name).write_bytes(src.read_bytes())
    write_truncated_jpeg(folder / "b.jpg")
    exported = tmp_path / "model.pt"
    assert run_cli(capsys, "export", image_run, "--format", "torchscript", "--out", exported)[0] == 0
    for target in (image_run, exported):
        code, stdout, err = run_cli(capsys, "predict", target, str(folder), "--json")
        assert [Path(json.loads(line)["input"]).name for line in stdout.splitlines()] == ["a.png", "c.png"]
        assert_clean_error(code, err, "1 of 3 image(s) cannot be read", "b.jpg (", "The other 2 were predicted")
    with pytest.raises(tk.UnreadableImagesError) as info:  # the API: the error carries the others' results
        tk.predict(image_run, [str(folder)])
    assert [Path(r["input"]).name for r in info.value.results] == ["a.png", "c.png"]
    assert list(info.value.unreadable) == [str(folder / "b.jpg")]
    try:  # a cap under the images' 32 x 32 pixels: nothing is decoded, the reason says so
        code, stdout, err = run_cli(capsys, "predict", image_run, folder / "a.png", "--max-image-pixels", "1000")
        assert stdout == ""
        assert_clean_error(code, err, "1 of 1 image(s)", "too large (32 x 32 = 1,024 pixels, limit 1,000",
                           "Nothing was predicted")
    finally:
        set_max_image_pixels(DEFAULT_MAX_IMAGE_PIXELS)
    assert run_cli(capsys, "predict", image_run, folder / "a.png")[0] == 0  # back to the run's cap


def test_torchscript_loads_without_transferkit(capsys, image_run, text_run, tmp_path) -> None:
    image_file, text_file = tmp_path / "image.pt", tmp_path / "text.pt"
    for run, out in ((image_run, image_file), (text_run, text_file)):
        assert run_cli(capsys, "export", run, "--format", "torchscript", "--out", out)[0] == 0
    script = textwrap.dedent(f"""
        import json, sys, torch
        from transformers import AutoTokenizer
        image = torch.jit.load({str(image_file)!r})
        x = torch.randn(3, 3, 160, 160, generator=torch.Generator().manual_seed(0))
        folder = {str(text_file) + ".tokenizer"!r}
        enc = AutoTokenizer.from_pretrained(folder)(["good film", "a bad terrible movie"], padding=True, return_tensors="pt")
        text = torch.jit.load({str(text_file)!r})
        out = {{"image": image(x).tolist(), "text": text(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).tolist(),
               "imported": "transferkit" in sys.modules}}
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["imported"] is False
    import transferkit as tk

    run = tk.load_run(image_run)
    x = torch.randn(3, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert np.abs(np.array(result["image"]) - run.model(x).numpy()).max() < 1e-4
    text = tk.load_run(text_run)
    enc = dict(text.model.tokenizer()(["good film", "a bad terrible movie"], padding=True, return_tensors="pt"))
    with torch.no_grad():
        assert np.abs(np.array(result["text"]) - text.model(enc).numpy()).max() < 1e-4


def test_int8_quantization_reports_accuracy(capsys, text_run) -> None:
    code, stdout, err = run_cli(capsys, "export", text_run, "--quantize", "int8", "--json")
    assert code == 0, err
    result = json.loads(stdout)
    quant = result["quantization"]
    assert result["path"].endswith("model.int8.onnx")
    assert {"val_accuracy_fp32", "val_accuracy_int8", "accuracy_change", "n"} <= set(quant) and quant["n"] > 0
    assert read_sidecar(result["path"])["quantization"] == quant


def test_fixed_batch_onnx(capsys, image_run, data_dir, tmp_path) -> None:
    out = tmp_path / "fixed.onnx"
    assert run_cli(capsys, "export", image_run, "--fixed-batch", "--out", out)[0] == 0
    sidecar = read_sidecar(out)
    assert sidecar["dynamic_batch"] is False and sidecar["inputs"][0]["shape"][0] == 1
    inputs = _inputs(image_run, data_dir)[:3]
    assert_same_predictions(_predict_rows(capsys, out, inputs), _predict_rows(capsys, image_run, inputs))


def test_failed_verification_keeps_nothing(capsys, image_run, tmp_path, monkeypatch) -> None:
    from transferkit.export import core

    real = core._Exporter.runner
    monkeypatch.setattr(core._Exporter, "runner", lambda self, path: (lambda x: real(self, path)(x) + 1e-2))
    out = tmp_path / "bad" / "model.onnx"
    code, _, err = run_cli(capsys, "export", image_run, "--out", out)
    assert_clean_error(code, err, "does not match the eager model", "0.01", "tolerance", "not kept")
    assert list(out.parent.iterdir()) == []


@pytest.mark.skipif(tensorrt_missing() is None, reason="TensorRT is available here")
def test_tensorrt_unavailable(capsys, image_run) -> None:
    code, _, err = run_cli(capsys, "export", image_run, "--format", "tensorrt")
    assert_clean_error(code, err, "TensorRT is not available on this machine", "torch-tensorrt")


def test_bad_inputs(capsys, image_run, tmp_path) -> None:
    code, _, err = run_cli(capsys, "export", tmp_path / "nothing")
    assert_clean_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "export", image_run, "--format", "tflite")
    assert code == 2 and "Invalid value for '--format'" in err
    code, _, err = run_cli(capsys, "export", image_run, "--format", "torchscript", "--quantize", "int8")
    assert_clean_error(code, err, "--format onnx")
    code, _, err = run_cli(capsys, "export", image_run, "--opset", "5")
    assert_clean_error(code, err, "opset")
    taken = tmp_path / "taken.onnx"
    taken.write_text("x")
    code, _, err = run_cli(capsys, "export", image_run, "--out", taken)
    assert_clean_error(code, err, "already exists", "--force")
    assert taken.read_text() == "x"
    code, _, err = run_cli(capsys, "predict", taken, "x.png")
    assert_clean_error(code, err, "not a transferkit export")
    code, _, err = run_cli(capsys, "predict", tmp_path / "missing.onnx", "x.png")
    assert_clean_error(code, err, "does not exist")


@pytest.mark.integration
def test_efficientnet_lite0_exports(capsys, data_dir, tmp_path) -> None:
    run = tmp_path / "lite0_image_run"
    code, _, err = run_cli(capsys, "-q", "train", "--model", "builtin:efficientnet_lite0", "--data",
                           data_dir / "digits", "--out", run)
    assert code == 0, err
    inputs = _inputs(run, data_dir)
    eager = _predict_rows(capsys, run, inputs)
    for fmt, name in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
        code, stdout, err = run_cli(capsys, "export", run, "--format", fmt, "--json")
        assert code == 0, err
        result = json.loads(stdout)
        assert result["verification"]["max_abs_diff"] <= 1e-4 and result["verification"]["top1_agreement"] == 1.0
        assert_same_predictions(_predict_rows(capsys, run / "export" / name, inputs), eager)


def test_lora_run_exports_merged_and_unmerged(capsys, data_dir, tiny_bert_dir, text_run, tmp_path) -> None:
    pytest.importorskip("transferkit.lora")
    run = tmp_path / "lora_text_run"
    code, _, err = run_cli(capsys, "-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", data_dir / "reviews.csv",
                           "--out", run, "--strategy", "lora", "--epochs", "2", "--lr", "1e-2")
    assert code == 0, err
    assert (run / "adapter").is_dir()
    inputs = _inputs(Path("text"), data_dir)
    eager = _predict_rows(capsys, run, inputs)
    for fmt, merge, name in (("onnx", "--merge", "merged.onnx"), ("onnx", "--no-merge", "adapter.onnx"),
                             ("torchscript", "--no-merge", "adapter.pt")):
        code, _, err = run_cli(capsys, "export", run, "--format", fmt, merge, "--out", tmp_path / name)
        assert code == 0, err
        assert read_sidecar(tmp_path / name)["merged_lora"] is (merge == "--merge")
        assert_same_predictions(_predict_rows(capsys, tmp_path / name, inputs), eager)
    import onnx

    def matmuls(path: Path) -> int:
        return sum(node.op_type == "MatMul" for node in onnx.load(str(path)).graph.node)

    # Unmerged, every adapted layer keeps its low-rank path: two more MatMuls each (x A^T, then B^T).
    assert matmuls(tmp_path / "adapter.onnx") > matmuls(tmp_path / "merged.onnx")
    code, _, err = run_cli(capsys, "export", text_run, "--no-merge", "--out", tmp_path / "x.onnx")
    assert_clean_error(code, err, "not a LoRA run")
