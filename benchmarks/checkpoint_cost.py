"""What checkpoints cost a whole run: ``--checkpoint-every 0`` (one after every epoch, what every
run wrote before 2026-12-01) against the default (a phase's first and last epochs, and between
them once 20x the last write's time has passed), interleaved in one process.

Each arm is a complete ``tk.train`` run (model loading, data, every epoch, test pass, outputs)
with the same seed and split; the figure is the median wall time over the repeats, and the
ratio every-epoch / default. Test accuracy is printed too: checkpoints never change training.
Checkpoints written are counted through ``transferkit.train.runner.save_checkpoint``.

Run: .venv/bin/python benchmarks/checkpoint_cost.py [--model builtin:minilm] [--data builtin:trec]
     [--per-class 20] [--epochs 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import tempfile
import time
from typing import Any

import transferkit as tk

runner = importlib.import_module("transferkit.train.runner")


def one_run(args: argparse.Namespace, every: float | None, folder: str) -> dict[str, Any]:
    """One whole run; its wall time, test accuracy and how many checkpoints it wrote."""
    real_save, written = runner.save_checkpoint, []

    def counting(*a: Any, **kw: Any) -> None:
        written.append(1)
        real_save(*a, **kw)

    runner.save_checkpoint = counting
    extra = {"image_size": 64} if args.model.endswith("efficientnet_lite0") else {}
    cfg = tk.TrainConfig(model=args.model, data=args.data, per_class=args.per_class, strategy="full",
                         epochs=args.epochs, patience=args.epochs, seed=0, precision="fp32",
                         checkpoint_every=every, out=folder, **extra)
    start = time.perf_counter()
    try:
        result = tk.train(cfg, progress=False)
    finally:
        runner.save_checkpoint = real_save
    return {"seconds": time.perf_counter() - start, "accuracy": result.test_metrics["accuracy"],
            "checkpoints": len(written)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:minilm")
    parser.add_argument("--data", default="builtin:trec")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    arms: dict[str, list[dict[str, Any]]] = {"every epoch": [], "default": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, every in (("every epoch", 0.0), ("default", None)):
                arms[name].append(one_run(args, every, f"{tmp}/{name.replace(' ', '-')}-{r}"))
                print(name, arms[name][-1], flush=True)
    medians = {name: statistics.median(run["seconds"] for run in runs) for name, runs in arms.items()}
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"{args.model} on {args.data}, full, {args.per_class}/class, {args.epochs} epochs: "
          f"every epoch {medians['every epoch']:.1f} s, default {medians['default']:.1f} s, "
          f"ratio {medians['every epoch'] / medians['default']:.2f}x")


if __name__ == "__main__":
    main()
