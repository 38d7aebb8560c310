"""Bad input ends in one paragraph, exit status 2, no traceback and nothing left behind.

Damaged weights, run folders, adapters and sidecars; non-finite or out-of-range numbers in every
numeric option; devices that are not there; ``--top-k`` below 1; ``--max-length`` past a model's
position embeddings; failed file operations (disk full, permission denied); and a training loss
that becomes NaN. Runs use the tiny BERT folder from ``conftest`` (a few seconds each).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import transferkit as tk
from conftest import assert_clean_error, run_cli

# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, tiny_bert_dir, sentiment_csv) -> Path:
    """A finished one-epoch full fine-tuning run of the tiny BERT (never modified by tests)."""
    from transferkit.cli import main

    out = tmp_path_factory.mktemp("runs") / "text-run"
    code = main(["-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", str(sentiment_csv),
                 "--out", str(out), "--strategy", "full", "--epochs", "1"])
    assert code == 0
    return out


@pytest.fixture
def run_copy(tmp_path, text_run) -> Path:
    """A private copy of ``text_run`` that a test may damage."""
    return Path(shutil.copytree(text_run, tmp_path / "run"))


def _leftovers(folder: Path) -> list[str]:
    """Temporary files an interrupted write would leave (``.<name>.<random>.tmp``)."""
    return [str(p) for p in folder.rglob("*.tmp")]


def _train(capsys, tiny_bert_dir, sentiment_csv, out, *extra):
    return run_cli(capsys, "-q", "train", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                   "--out", out, *extra)


# -- damaged files -------------------------------------------------------------------------------

DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"\x00\x01not a safetensors file" * 4,
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_weights_are_one_paragraph_everywhere(capsys, run_copy, damage) -> None:
    weights = run_copy / "model.safetensors"
    weights.write_bytes(DAMAGE[damage](weights.read_bytes()))
    before = sorted(p.name for p in run_copy.iterdir())
    for args in (["evaluate", run_copy], ["predict", run_copy, "good film"],
                 ["export", run_copy, "--format", "torchscript"]):
        code, _, err = run_cli(capsys, *args)
        assert_clean_error(code, err, str(weights), "damaged", "train the run again")
    assert sorted(p.name for p in run_copy.iterdir()) == before  # no export/ folder, nothing new
    assert not _leftovers(run_copy)


@pytest.mark.parametrize("name, content", [
    ("w.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": trunc"),
    ("w.pt", b"this is not a torch file"),
    ("w.bin", b""),
])
def test_damaged_weights_file(capsys, tmp_path, tiny_bert_dir, sentiment_csv, name, content) -> None:
    weights = tmp_path / name
    weights.write_bytes(content)
    code, _, err = _train(capsys, tiny_bert_dir, sentiment_csv, tmp_path / "r", "--weights", weights)
    assert_clean_error(code, err, str(weights), "weights file")
    assert not (tmp_path / "r").exists()


def _adapter(tiny_bert_dir: Path, folder: Path) -> Path:
    model = tk.load_model(f"hf:{tiny_bert_dir}", 2, pretrained=False)
    tk.apply_lora(model, rank=2)
    return tk.save_adapter(model, folder)


@pytest.mark.parametrize("damage", ["truncated weights", "config not an object", "config rank text"])
def test_damaged_adapter(capsys, tmp_path, tiny_bert_dir, damage) -> None:
    folder = _adapter(tiny_bert_dir, tmp_path / "adapter")
    weights, config = folder / "adapter_model.safetensors", folder / "adapter_config.json"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
        fragments = ["adapter", "unreadable", "save or copy the adapter again"]
    elif damage == "config not an object":
        config.write_text("[1, 2]")
        fragments = ["adapter_config.json", "JSON object"]
    else:
        config.write_text(json.dumps({**json.loads(config.read_text()), "r": "eight"}))
        fragments = ["r = 'eight'", "positive whole number"]
    with pytest.raises(tk.ConfigError):
        tk.load_adapter(tk.load_model(f"hf:{tiny_bert_dir}", 2, pretrained=False), folder)
    code, _, err = run_cli(capsys, "explore", "lora", "--model", f"hf:{tiny_bert_dir}", "--num-classes", "2",
                           "--adapter", folder, "--ranks", "1")
    assert_clean_error(code, err, str(folder), *fragments)


def test_sidecar_missing_a_key(capsys, tmp_path, run_copy) -> None:
    out = tmp_path / "model.pt"
    code, _, err = run_cli(capsys, "-q", "export", run_copy, "--format", "torchscript", "--out", out,
                           "--no-verify")
    assert code == 0, err
    sidecar = Path(str(out) + ".json")
    good = json.loads(sidecar.read_text())
    assert run_cli(capsys, "predict", out, "good film", "--json")[0] == 0
    for key, path in (("preprocessing", ("preprocessing",)), ("max_length", ("preprocessing", "text", "max_length")),
                      ("modality", ("modality",)), ("inputs", ("inputs",))):
        broken = json.loads(json.dumps(good))
        holder = broken
        for part in path[:-1]:
            holder = holder[part]
        del holder[path[-1]]
        sidecar.write_text(json.dumps(broken))
        code, _, err = run_cli(capsys, "predict", out, "good film")
        assert_clean_error(code, err, str(sidecar), key, "export the run again")
        with pytest.raises(tk.ExportError):
            tk.load_exported(out)


# -- numbers ------------------------------------------------------------------------------------

TRAIN = ["train", "--model", "m", "--data", "d"]
NUMBER_CASES = [
    (TRAIN + ["--lr", "nan"], ["lr", "finite"]),
    (TRAIN + ["--lr", "inf"], ["lr", "finite"]),
    (TRAIN + ["--lr", "-inf"], ["lr", "finite"]),
    (TRAIN + ["--head-lr-scale", "nan"], ["head_lr_scale", "finite"]),
    (TRAIN + ["--head-lr-scale", "0"], ["head_lr_scale", "positive"]),
    (TRAIN + ["--overfit-gap", "nan"], ["overfit_gap", "finite"]),
    (TRAIN + ["--overfit-gap", "1.5"], ["overfit_gap", "between 0.0 and 1.0"]),
    (TRAIN + ["--weight-decay", "inf"], ["weight_decay", "finite"]),
    (TRAIN + ["--warmup-fraction", "nan"], ["warmup_fraction", "finite"]),
    (TRAIN + ["--grad-clip", "nan"], ["grad_clip", "finite"]),
    (TRAIN + ["--label-smoothing", "inf"], ["label_smoothing", "finite"]),
    (TRAIN + ["--time-budget", "inf"], ["time_budget", "finite"]),
    (TRAIN + ["--probe-energy", "nan"], ["probe_energy", "finite"]),
    (TRAIN + ["--wise-alpha", "1.5"], ["wise_alpha", "between 0.0 and 1.0"]),
    (TRAIN + ["--lr-decay", "nan"], ["lr_decay", "finite"]),
    (TRAIN + ["--lora-alpha", "nan"], ["lora_alpha", "finite"]),
    (TRAIN + ["--lora-dropout", "nan"], ["lora_dropout", "finite"]),
    (TRAIN + ["--group-lrs", "1e-4,nan"], ["group_lrs", "finite"]),
    (TRAIN + ["--val-fraction", "nan"], ["val_fraction"]),
    (TRAIN + ["--image-size", "100000"], ["image_size", "4096"]),
    (["compare", "--model", "m", "--data", "d", "--time-budget", "nan"], ["--time-budget", "finite"]),
    (["compare", "--model", "m", "--data", "d", "--time-budget", "-5"], ["--time-budget", "above 0"]),
    (["recommend", "--model", "m", "--data", "d", "--budget", "inf"], ["--budget", "finite"]),
    (["efficiency", "--model", "m", "--data", "d", "--time-budget", "nan"], ["--time-budget", "finite"]),
    (["efficiency", "--model", "m", "--data", "d", "--seeds", "0"], ["--seeds", "x>=1"]),
    (["explore", "freezing", "--model", "m", "--epochs", "0"], ["--epochs"]),
    (["explore", "freezing", "--model", "m", "--time-budget", "nan"], ["--time-budget", "finite"]),
    (["explore", "lora", "--model", "m", "--num-classes", "0"], ["--num-classes"]),
    (["explore", "transferability", "--model", "m", "--data", "d", "--eval-per-class", "0"], ["--eval-per-class"]),
    (["export", "RUN", "--tolerance", "nan"], ["--tolerance", "finite"]),
    (["export", "RUN", "--samples", "0"], ["--samples"]),
    (["predict", "RUN", "x", "--top-k", "0"], ["--top-k", "x>=1"]),
    (["predict", "RUN", "x", "--top-k", "-3"], ["--top-k", "x>=1"]),
]


@pytest.mark.parametrize("args, fragments", NUMBER_CASES, ids=[" ".join(a[-2:]) + f" ({a[0]})" for a, _ in NUMBER_CASES])
def test_numbers_are_finite_and_in_range(capsys, tmp_path, args, fragments) -> None:
    code, _, err = run_cli(capsys, *args, *(["--out", tmp_path / "o"] if args[0] in ("train", "compare") else []))
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text, fragments", [
    ("lr: .inf", ["lr", "finite"]),
    ("overfit_gap: .nan", ["overfit_gap", "finite"]),
    ("lr: nan", ["lr", "finite"]),  # text to YAML 1.1, a float to Python
    ("epochs: ten", ["epochs", "whole number", "'ten'"]),
    ("patiense: 3", ["patiense", "did you mean patience?"]),
    ("compile_mode: fast", ["compile_mode", "reduce-overhead", "'fast'"]),
])
def test_yaml_config_values(capsys, tmp_path, text, fragments) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"model: m\ndata: d\n{text}\n")
    code, _, err = run_cli(capsys, "train", "--config", path, "--out", tmp_path / "r")
    assert_clean_error(code, err, *fragments)
    assert not (tmp_path / "r").exists()


def test_top_k_in_the_library(text_run) -> None:
    run = tk.load_run(text_run)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(tk.ConfigError, match="top_k"):
            tk.predict(run, ["good film"], top_k=bad)
    assert len(tk.predict(run, ["good film"], top_k=10)[0]["top_k"]) == 2  # more than the classes: all


# -- devices --------------------------------------------------------------------------------------

def _absent_gpu() -> str:
    return f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"


@pytest.mark.parametrize("device, fragments", [
    ("cuda:x", ["'cuda:x' is not a device", "cuda:N"]),
    ("tpu", ["'tpu' is not a device"]),
    (_absent_gpu(), [_absent_gpu(), "was asked for"]),
])
def test_device_checked_before_the_run_folder(capsys, tmp_path, tiny_bert_dir, sentiment_csv, device, fragments) -> None:
    out = tmp_path / "r"
    code, _, err = _train(capsys, tiny_bert_dir, sentiment_csv, out, "--device", device)
    assert_clean_error(code, err, "device", *fragments)
    assert not out.exists()


def test_out_is_reusable_after_a_device_error(capsys, tmp_path, tiny_bert_dir, sentiment_csv, text_run) -> None:
    out = tmp_path / "r"
    code, _, err = _train(capsys, tiny_bert_dir, sentiment_csv, out, "--device", _absent_gpu())
    assert_clean_error(code, err, "device")
    code, _, err = _train(capsys, tiny_bert_dir, sentiment_csv, out, "--device", "cpu")
    assert code == 0, err
    assert (out / "model.safetensors").is_file()
    for args in (["evaluate", text_run], ["predict", text_run, "good film"]):
        code, _, err = run_cli(capsys, *args, "--device", "cuda:x")
        assert_clean_error(code, err, "'cuda:x' is not a device")


@pytest.mark.parametrize("command", [["compare", "--strategies", "feature-extraction"], ["recommend", "--budget", "5"],
                                     ["explore", "transferability"]])
def test_workflows_check_the_device_before_their_folder(capsys, tmp_path, tiny_bert_dir, sentiment_csv, command) -> None:
    out = tmp_path / "o"
    code, _, err = run_cli(capsys, *command, "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                           "--device", _absent_gpu(), "--out", out)
    assert_clean_error(code, err, "device", _absent_gpu())
    assert not out.exists()


# -- text length ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model, limit", [("tiny", 64), ("builtin:minilm", 512)])
def test_max_length_past_the_position_embeddings(capsys, tmp_path, tiny_bert_dir, sentiment_csv, model, limit) -> None:
    spec = f"hf:{tiny_bert_dir}" if model == "tiny" else model
    code, _, err = run_cli(capsys, "train", "--model", spec, "--data", sentiment_csv, "--out", tmp_path / "r",
                           "--max-length", str(limit + 1))
    assert_clean_error(code, err, "max_length", f"at most {limit} tokens", f"--max-length {limit} or less")
    assert not (tmp_path / "r").exists()
    # The default (128) is lowered to what the model reads, instead of failing mid-epoch.
    assert tk.load_model(spec, 2, pretrained=False).spec.text.max_length == min(128, limit)
    assert tk.load_model(spec, 2, pretrained=False, max_length=limit).spec.text.max_length == limit


def test_long_texts_train_with_the_default_length(capsys, tmp_path, tiny_bert_dir) -> None:
    # 100-word texts: past the tiny BERT's 64 positions. Today's default of 128 tokens indexed
    # past its position embeddings (IndexError) in the first batch.
    import numpy as np

    from conftest import NEGATIVE, POSITIVE

    rng = np.random.default_rng(0)
    rows = ["text,label"] + [f"{' '.join(rng.choice(words, 100))},{label}" for label, words in
                             (("pos", POSITIVE), ("neg", NEGATIVE)) for _ in range(15)]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    code, _, err = _train(capsys, tiny_bert_dir, tmp_path / "long.csv", tmp_path / "r", "--strategy", "full",
                          "--epochs", "1")
    assert code == 0, err


# -- file operations -----------------------------------------------------------------------------

def test_out_below_a_file(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    (tmp_path / "afile").write_text("x")
    code, _, err = _train(capsys, tiny_bert_dir, sentiment_csv, tmp_path / "afile" / "run")
    assert_clean_error(code, err, f"could not create the folder {tmp_path / 'afile' / 'run'}", "Not a directory")


def test_disk_full_while_saving_weights(capsys, tmp_path, monkeypatch, tiny_bert_dir, sentiment_csv) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")  # a partial file, as a full disk leaves it
        # safetensors reports I/O errors as its own type, not as an OSError:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    out = tmp_path / "r"
    code, _, err = _train(capsys, tiny_bert_dir, sentiment_csv, out)
    assert_clean_error(code, err, f"could not write {out / 'model.safetensors'}: No space left on device",
                       "free some space")
    assert not (out / "model.safetensors").exists() and not _leftovers(out)
    assert not (out / "test_metrics.json").exists()


def test_permission_denied_writing_and_reading(capsys, tmp_path, monkeypatch, run_copy, tiny_bert_dir,
                                               sentiment_csv) -> None:
    from transferkit.io import atomic

    real = atomic._temporary_file

    def denied(path: Path) -> Path:
        if path.name == "config.yaml":
            raise PermissionError(errno.EACCES, "Permission denied", str(path.parent / f".{path.name}.tmp"))
        return real(path)

    monkeypatch.setattr(atomic, "_temporary_file", denied)
    out = tmp_path / "r"
    code, _, err = _train(capsys, tiny_bert_dir, sentiment_csv, out)
    assert_clean_error(code, err, f"could not write {out / 'config.yaml'}: Permission denied", "permissions")
    monkeypatch.undo()

    real_read = Path.read_text

    def read_text(self: Path, *args, **kwargs):  # named as the real one: the CLI reads the traceback
        if self.name == "model_spec.json":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    code, _, err = run_cli(capsys, "evaluate", run_copy)
    assert_clean_error(code, err, f"could not read {run_copy / 'model_spec.json'}: Permission denied")


def test_file_size_limit_in_a_real_process(tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    """A real ``transferkit train`` whose files may not grow past 16 KB (``ulimit -f``): the
    weights file cannot be written; exit 2, one paragraph naming it, no temporary file left."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    out = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, "-m", "transferkit.cli", "-q", "train", "--model", f"hf:{tiny_bert_dir}",
         "--data", str(sentiment_csv), "--out", str(out)],
        capture_output=True, text=True, preexec_fn=limit, timeout=120,
        env={**os.environ, "TRANSFERKIT_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert_clean_error(proc.returncode, proc.stderr, f"could not write {out / 'model.safetensors'}", "File too large")
    assert not _leftovers(out) and not (out / "model.safetensors").exists()


# -- training that diverges ----------------------------------------------------------------------

def test_nan_loss_stops_the_run(capsys, tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    out = tmp_path / "r"
    code, _, err = _train(capsys, tiny_bert_dir, sentiment_csv, out, "--strategy", "full", "--lr", "1e30",
                          "--epochs", "3")
    assert_clean_error(code, err, "diverged", "at epoch 1, batch", "lower --lr", "no weights were saved")
    names = {p.name for p in out.iterdir()}
    assert not names & {"model.safetensors", "test_metrics.json", "checkpoint"}, names  # no epoch with NaN kept
    assert not _leftovers(out)


def test_non_finite_weights_are_never_saved() -> None:
    from transferkit.train.loop import check_finite_weights

    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    check_finite_weights(model, "ok")
    with torch.no_grad():
        model[0].bias[1] = float("inf")
    with pytest.raises(tk.TrainingDivergedError, match=r"0\.bias"):
        check_finite_weights(model, "the head phase")


def test_loss_check_names_the_step_on_an_accelerator_schedule(monkeypatch) -> None:
    """Losses are read every few steps off the CPU (no sync per step); the error still names the
    exact batch whose loss was not finite."""
    from transferkit.train import loop

    tally = loop._EpochTally(torch.device("cpu"), ("full fine-tune", 4), [1e-3, 1e-2])
    tally.check_every = 8  # as on a GPU
    logits, targets = torch.zeros(2, 3), torch.tensor([0, 1])
    for batch in range(1, 6):
        tally.add(batch, 100 + batch, torch.tensor(float("nan") if batch == 3 else 1.0), 2, logits, targets)
    with pytest.raises(tk.TrainingDivergedError, match="epoch 4, batch 3 \\(optimizer step 103\\)"):
        tally.result()
