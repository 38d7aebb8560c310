"""The CUDA paths of training (issue 17), run where a CUDA GPU is present: a whole run in bf16
with its defaults for the device (workers, pinned memory, fused AdamW, decoded cache), the same
run compiled, no host-device synchronisation per training step, and the GPU's features agreeing
with the CPU's. CI has no GPU: these are skipped there; ``benchmarks/gpu_session.sh`` runs them on
a lent one."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from helpers.tiny import TinyClassifier

import transferkit as tk
from transferkit.models import load_model
from transferkit.train.features import extract_features
from transferkit.train.loop import LoopSettings, fit
from transferkit.workflows.progress import read_metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (CI has none; benchmarks/gpu_session.sh runs these on one)")
CUDA = torch.device("cuda")


def _run(folder: Path, out: Path, strategy: str = "full", **options) -> dict:
    cfg = tk.TrainConfig(model="torchvision:resnet18", data=str(folder), pretrained=False, strategy=strategy,
                         epochs=3, patience=10, batch_size=8, device="cuda", out=str(out), **options)
    tk.train(cfg)
    return json.loads((out / "test_metrics.json").read_text())


def test_a_full_run_trains_on_cuda_in_bf16_and_compiled(digit_folder: Path, tmp_path: Path) -> None:
    eager = _run(digit_folder, tmp_path / "eager", precision="auto")
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"  # what --precision auto picks on CUDA
    assert eager["precision"] == expected
    assert eager["peak_cuda_memory_mb"] > 0 and eager["epochs"] == 3
    compiled = _run(digit_folder, tmp_path / "compiled", precision="auto", compile=True)
    assert compiled["epochs"] == 3 and compiled["precision"] == expected
    # same seed, same batches: the compiled steps' first-epoch loss is the eager one's (bf16 rounding apart)
    first = [read_metrics(tmp_path / name)[0].train_loss for name in ("eager", "compiled")]
    assert first[1] == pytest.approx(first[0], rel=0.05)


def test_a_lora_run_trains_under_cuda_graphs(digit_folder: Path, tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    eager = _run(digit_folder, tmp_path / "eager", strategy="lora", precision="auto")
    counters.clear()
    graphed = _run(digit_folder, tmp_path / "graphed", strategy="lora", precision="auto",
                   compile_mode="reduce-overhead")
    assert graphed["epochs"] == 3 and eager["epochs"] == 3
    assert counters["inductor"]["cudagraph_skips"] == 0  # the steps did replay from CUDA graphs
    first = [read_metrics(tmp_path / name)[0].train_loss for name in ("eager", "graphed")]
    assert first[1] == pytest.approx(first[0], rel=0.05)


def test_training_steps_do_not_synchronise_with_the_host_each_step() -> None:
    g = torch.Generator().manual_seed(0)
    steps = 24
    # pinned host batches, as the CUDA loader gives them: (16, 32) inputs, (16,) labels
    batches = [(torch.randn(16, 32, generator=g).pin_memory(), torch.randint(0, 4, (16,), generator=g).pin_memory())
               for _ in range(steps)]
    model = TinyClassifier(32, 64, 4).to(CUDA)
    settings = LoopSettings(epochs=1, weight_decay=0.0, patience=10, device=CUDA)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(model, batches, batches[:1], [{"params": list(model.parameters()), "lr": 1e-3}], settings,
                phase="fine-tune")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    # the epoch's end reads its loss and the validation pass its accuracy: a few, not one a step
    assert len(syncs) < steps // 2, [str(w.message) for w in syncs[:5]]


def test_features_on_cuda_match_the_cpus(digit_folder: Path) -> None:
    from transferkit.data import load_data
    from transferkit.train.loaders import make_indexed_loader

    model = load_model("torchvision:resnet18", num_classes=3, pretrained=False).eval()
    split = load_data(str(digit_folder), seed=0).train
    loader = list(make_indexed_loader(model, split, batch_size=8))
    on_cpu = extract_features(model, loader, len(split), torch.device("cpu"))
    on_gpu = extract_features(model.to(CUDA), loader, len(split), CUDA)
    # cuDNN's convolutions may use TF32: agreement to a few parts in a thousand
    assert torch.allclose(on_gpu.features.cpu(), on_cpu.features, rtol=1e-2, atol=1e-2)
