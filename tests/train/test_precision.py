"""``--precision``: how it resolves per device and CPU, and that bf16 training works end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit.train import device as dev
from transferkit.train.loop import LoopSettings, fit

CPU = torch.device("cpu")


def test_auto_is_bf16_on_a_cpu_with_native_bf16_and_fp32_without(monkeypatch) -> None:
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert dev.resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: False)
    assert dev.resolve_precision("auto", CPU) == "fp32"
    assert dev.resolve_precision("bf16", CPU) == "bf16"  # asked for: emulated, but honoured
    assert dev.resolve_precision("fp32", CPU) == "fp32"


def test_auto_on_a_cpu_keeps_convolutional_models_in_fp32(monkeypatch) -> None:
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    transformer_like = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(400, 400))
    convolutional = nn.Sequential(nn.Conv2d(3, 400, 3), nn.Conv2d(400, 400, 3), nn.Flatten(), nn.Linear(4, 2))
    assert dev.resolve_precision("auto", CPU, transformer_like) == "bf16"
    assert dev.resolve_precision("auto", CPU, convolutional) == "fp32"
    assert dev.resolve_precision("bf16", CPU, convolutional) == "bf16"  # asked for: given
    assert dev.resolve_precision("auto", torch.device("cuda"), convolutional) in ("bf16", "fp32")


def test_auto_on_cuda_follows_the_gpus_bf16_support(monkeypatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert dev.resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert dev.resolve_precision("auto", cuda) == "fp32"
    assert dev.resolve_precision("fp16", cuda) == "fp16"


def test_this_machines_cpu_flags_decide(monkeypatch) -> None:
    """The check agrees with the kernel's CPU flags (this project's CPUs have AVX-512 BF16)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo to compare with")
    assert dev.cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags or "amx_tile" in flags)


def test_fp16_on_a_cpu_is_bad_input() -> None:
    with pytest.raises(tk.ConfigError, match="fp16 needs a CUDA device"):
        dev.resolve_precision("fp16", CPU)


def test_autocast_runs_matmuls_in_bf16_and_fp32_is_a_no_op() -> None:
    a = torch.randn(4, 4)
    with dev.autocast(CPU, "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with dev.autocast(CPU, "fp32"):
        assert (a @ a).dtype == torch.float32


def test_bf16_training_of_a_tiny_model_converges_like_fp32() -> None:
    """Two Gaussian blobs: bf16 autocast reaches the accuracy fp32 does, with float32 weights."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(64, 8, generator=g) + 1.5, torch.randn(64, 8, generator=g) - 1.5])
    y = torch.cat([torch.zeros(64, dtype=torch.long), torch.ones(64, dtype=torch.long)])
    batches = [(x[i::4], y[i::4]) for i in range(4)]
    accuracies = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        settings = LoopSettings(epochs=20, weight_decay=0.0, patience=100, precision=precision)
        result = fit(model, batches, batches, [{"params": list(model.parameters()), "lr": 3e-2}], settings,
                     phase="fine-tune")
        accuracies[precision] = result.best_val_accuracy
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert accuracies["bf16"] >= 0.95 and abs(accuracies["bf16"] - accuracies["fp32"]) <= 0.02


def test_an_old_config_with_amp_loads_as_precision() -> None:
    old = {"model": "m", "data": "d", "amp": False}
    assert tk.TrainConfig.from_dict(old).precision == "fp32"
    assert tk.TrainConfig.from_dict({**old, "amp": True}).precision == "auto"


def test_a_run_records_the_precision_it_trained_in(tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="full",
                                epochs=1, precision=precision, out=str(out)))
        assert json.loads((out / "test_metrics.json").read_text())["precision"] == precision
        assert f"precision {precision}" in (out / "train.log").read_text()
