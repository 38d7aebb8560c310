"""Inference speed of exported models, in one process on the same inputs: PyTorch eager,
TorchScript, ONNX Runtime fp32 and ONNX Runtime int8, at batch 1 and batch 32.

Two fine-tuned runs: ``builtin:efficientnet_lite0`` on ``builtin:digits`` and ``builtin:minilm`` on
``builtin:bbc-news`` (feature extraction, a few examples per class; or pass ``--image-run`` /
``--text-run``). Each is exported with ``transferkit.export_run`` (verified against eager) and
every backend runs the same preprocessed batch. Eager is timed channels-last (transferkit's
layout for inference) and contiguous; the faster of the two is the baseline for the ratios.

Run: .venv/bin/python benchmarks/export_speed.py [--repeats 30] [--image-run RUN] [--text-run RUN]
     [--keep-runs DIR]
Target (2-core CPU): ONNX Runtime >= 1.5x eager at batch 1 for Lite0.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import transferkit as tk
from transferkit.data import Split, load_data
from transferkit.export.onnx import onnx_session, run_session
from transferkit.export.torchscript import load_torchscript
from transferkit.train.loaders import make_loader


def train_runs(folder: Path) -> dict[str, Path]:
    """Feature-extraction runs of Lite0 (digits) and MiniLM (BBC News), a few examples per class."""
    runs = {}
    for name, model, data, extra in (
        ("lite0", "builtin:efficientnet_lite0", "builtin:digits", {}),
        ("minilm", "builtin:minilm", "builtin:bbc-news", {"val_fraction": 0.05, "test_fraction": 0.05}),
    ):
        start = time.perf_counter()
        result = tk.train(tk.TrainConfig(model=model, data=data, per_class=5, out=str(folder / name), **extra),
                          progress=False)
        print(f"trained {name}: test accuracy {result.test_metrics['accuracy']:.3f} "
              f"({time.perf_counter() - start:.0f} s)")
        runs[name] = result.run_dir
    return runs


def batch_of(run: tk.Run, n: int) -> Any:
    """``n`` validation inputs of the run, preprocessed (image [n, 3, H, W] or a tokenizer dict)."""
    cfg = run.config
    data = load_data(cfg.data, seed=cfg.seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction)
    pool = data.val if len(data.val) >= n else data.train
    items = (pool.items * n)[:n]
    inputs, _ = next(iter(make_loader(run.model, Split(items, [0] * n), batch_size=n)))
    return inputs


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(3):  # warm-up: allocations, oneDNN primitive caches, ORT arenas
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _slice(inputs: Any, n: int) -> Any:
    return inputs[:n] if isinstance(inputs, torch.Tensor) else {k: v[:n] for k, v in inputs.items()}


def backends(run: tk.Run, files: dict[str, Path]) -> dict[str, Callable[[Any], Any]]:
    """name -> function of a preprocessed batch."""
    model = run.model.eval()
    image = model.spec.modality == "image"
    names = [i["name"] for i in tk.export.read_sidecar(files["torchscript"])["inputs"]]
    script = load_torchscript(files["torchscript"])
    sessions = {k: onnx_session(files[k]) for k in ("onnx", "int8")}

    def eager_cl(x: Any) -> Any:
        return model(x.contiguous(memory_format=torch.channels_last) if image else x)

    def eager_contiguous(x: Any) -> Any:
        model.to(memory_format=torch.contiguous_format)
        try:
            return model(x.contiguous() if image else x)
        finally:
            model.to(memory_format=torch.channels_last)

    def feed(x: Any) -> dict[str, np.ndarray]:
        return {"input": x.contiguous().numpy()} if image else {k: v.numpy() for k, v in x.items()}

    table: dict[str, Callable[[Any], Any]] = {"eager": eager_cl}
    if image:
        table["eager (contiguous)"] = eager_contiguous
    table["torchscript"] = lambda x: script(*([x.contiguous()] if image else [x[n] for n in names]))
    table["onnxruntime"] = lambda x: run_session(sessions["onnx"], feed(x))
    table["onnxruntime int8"] = lambda x: run_session(sessions["int8"], feed(x))
    return table


def export_all(run_dir: Path, folder: Path) -> dict[str, Path]:
    files = {}
    for key, fmt, quantize in (("onnx", "onnx", None), ("torchscript", "torchscript", None), ("int8", "onnx", "int8")):
        start = time.perf_counter()
        result = tk.export_run(run_dir, fmt, out=folder / f"{run_dir.name}-{key}.{'pt' if key == 'torchscript' else 'onnx'}",
                               quantize=quantize, force=True)
        note = result.verification.summary() if result.verification else ""
        if result.quantization and "val_accuracy_int8" in result.quantization:
            q = result.quantization
            note += f"; int8 val accuracy {q['val_accuracy_fp32']:.3f} -> {q['val_accuracy_int8']:.3f} (n={q['n']})"
        print(f"  export {key}: {time.perf_counter() - start:.1f} s, {result.size_mb:.1f} MB; {note}")
        files[key] = result.path
    return files


def bench_run(name: str, run_dir: Path, folder: Path, repeats: int) -> None:
    print(f"\n== {name}: {run_dir}")
    run = tk.load_run(run_dir)
    files = export_all(run_dir, folder)
    inputs = batch_of(run, 32)
    table = backends(run, files)
    results: dict[tuple[str, int], float] = {}
    with torch.inference_mode():
        for batch in (1, 32):
            x = _slice(inputs, batch)
            for backend, fn in table.items():
                results[backend, batch] = median_ms(lambda: fn(x), repeats if batch == 1 else max(3, repeats // 6))
    for batch in (1, 32):
        base_name = min((b for b in table if b.startswith("eager")), key=lambda b: results[b, batch])
        base = results[base_name, batch]
        print(f"batch {batch} (baseline: {base_name}):")
        for backend in table:
            ms = results[backend, batch]
            print(f"  {backend:>20}: median {ms:8.2f} ms  {1000 * batch / ms:8.1f} items/s  "
                  f"{base / ms:5.2f}x eager")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-run", type=Path, help="A Lite0 run folder (default: train one).")
    parser.add_argument("--text-run", type=Path, help="A MiniLM run folder (default: train one).")
    parser.add_argument("--repeats", type=int, default=30, help="Timed runs at batch 1 (batch 32: a sixth).")
    parser.add_argument("--keep-runs", type=Path, help="Train the runs into this folder and keep them.")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime "
          f"{__import__('onnxruntime').__version__}")
    with tempfile.TemporaryDirectory(prefix="export-speed-") as tmp:
        folder = Path(tmp)
        runs = {}
        if not (args.image_run and args.text_run):
            runs = train_runs(args.keep_runs or folder)
        runs["lite0"] = args.image_run or runs["lite0"]
        runs["minilm"] = args.text_run or runs["minilm"]
        for name in ("lite0", "minilm"):
            bench_run(name, Path(runs[name]), folder, args.repeats)


if __name__ == "__main__":
    main()
