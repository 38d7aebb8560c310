"""LoRA against full fine-tuning inside ``transferkit train`` on a GPU (issue 17), eager and with
``--compile-mode reduce-overhead``.

``benchmarks/lora_speed.py`` times one step of hand-built models; this times what users run:
``transferkit.train`` on a CSV of texts, per-epoch seconds from the run's ``metrics.jsonl``. For
each compile mode (none, then reduce-overhead), in one process, a full fine-tuning run and a LoRA
run (``--lora-targets all-linear``, r 8) of the same randomly initialised BERT-base (the
bert-base-uncased config with MiniLM's tokenizer files; nothing is downloaded), batch 32, texts
long enough to fill 128 tokens (one batch shape, so CUDA graphs are recorded once). The median
over epochs 2 onward (epoch 1 compiles and records) is reported with the ratio LoRA / full.
An epoch's seconds include its validation pass (5% of the texts).

Target (issue 17): LoRA's epoch at most 1.0x full fine-tuning's.

Run (GPU): python3 benchmarks/gpu_lora_train.py [--tokenizer-dir DIR] [--texts 4096] [--epochs 4]
Smoke run on a CPU (checks the script, not the target):
    .venv/bin/python benchmarks/gpu_lora_train.py --device cpu --texts 64 --epochs 2 --small
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from lora_speed import bert_folder  # benchmarks/ is the script's folder, first on sys.path

import transferkit as tk
from transferkit.workflows.progress import read_metrics

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = 5


def model_folder(work: Path, tokenizer_dir: str | None, small: bool) -> Path:
    """BERT-base's folder (random weights: ``pretrained=False``); ``small``: 2 layers of 64 wide,
    for a CPU smoke run."""
    from transformers import BertConfig

    small_config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    return bert_folder(work / "bert", tokenizer_dir, small_config if small else None)


def text_csv(path: Path, texts: int) -> Path:
    """``texts`` rows of 160 words, each class using its own words more often (learnable)."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(texts):
            label = i % CLASSES
            own = words[label * 40:(label + 1) * 40]
            writer.writerow([" ".join(rng.choice(own if rng.random() < 0.3 else words) for _ in range(160)),
                             f"c{label}"])
    return path


def timed_run(model: Path, data: Path, out: Path, strategy: str, mode: str | None, device: str,
              epochs: int) -> dict[str, Any]:
    options: dict[str, Any] = {"lora_targets": "all-linear", "lora_rank": 8} if strategy == "lora" else {}
    if mode is not None:
        options.update(compile=True, compile_mode=mode)
    cfg = tk.TrainConfig(model=f"hf:{model}", data=str(data), pretrained=False, strategy=strategy,
                         epochs=epochs, patience=epochs, batch_size=32, max_length=128, device=device,
                         val_fraction=0.05, test_fraction=0.05, out=str(out), **options)
    tk.train(cfg)
    seconds = [r.seconds for r in read_metrics(out)]
    return {"epoch_seconds": seconds, "median_after_first": statistics.median(seconds[1:] or seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--tokenizer-dir", help="MiniLM's tokenizer files (default: the package's)")
    parser.add_argument("--small", action="store_true", help="a 2-layer BERT, for a CPU smoke run")
    args = parser.parse_args()
    modes = [None, "reduce-overhead"] if args.device.startswith("cuda") else [None, "default"]
    work = Path(tempfile.mkdtemp(prefix="gpu_lora_train-"))
    results: dict[str, Any] = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                               "torch": torch.__version__, "args": vars(args), "rows": []}
    try:
        model, data = model_folder(work, args.tokenizer_dir, args.small), text_csv(work / "texts.csv", args.texts)
        for mode in modes:
            row: dict[str, Any] = {"compile_mode": mode or "eager"}
            for strategy in ("full", "lora"):
                name = f"{strategy}-{mode or 'eager'}"
                row[strategy] = timed_run(model, data, work / name, strategy, mode, args.device, args.epochs)
                print(f"{name:28s} epoch s {row[strategy]['median_after_first']:.2f} "
                      f"(all: {', '.join(f'{s:.2f}' for s in row[strategy]['epoch_seconds'])})", flush=True)
                _save(results, row)
            row["lora_over_full"] = row["lora"]["median_after_first"] / row["full"]["median_after_first"]
            print(f"  {row['compile_mode']}: LoRA / full = {row['lora_over_full']:.2f} (target <= 1.0)", flush=True)
            _save(results, row)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _save(results: dict[str, Any], row: dict[str, Any]) -> None:
    """Write after every run: a device call cut short keeps what it measured."""
    if row not in results["rows"]:
        results["rows"].append(row)
    text = json.dumps(results, indent=2) + "\n"
    target = Path(os.environ["OUT"]) if os.environ.get("OUT") else RESULTS
    target.mkdir(exist_ok=True)
    (target / f"gpu_lora_train-{results['device'].replace(' ', '_')}.json").write_text(text)


if __name__ == "__main__":
    main()
