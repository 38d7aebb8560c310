"""Decoded-image cache: the epoch time of an image fine-tuning run from JPEG files, with the
cache (each image decoded and resized once) against decoding every image every epoch.

The images are real photographs: windows of 300-600 px cut from scikit-learn's two sample
photos (``china.jpg``, ``flower.jpg``, 640 x 427) at random positions and sizes, saved as JPEG
(quality 90) in a temporary folder, one class per photo and half (top/bottom) of it. The run is
``tk.train`` with EfficientNet-Lite0, strategy ``full``, ``--epochs`` epochs; each epoch's
``seconds`` (training batches and the validation pass) come from the run's ``metrics.jsonl``.
Epoch 1 is dropped (it decodes in both arms, and carries the warm-up); the figure is the
median of epochs 2 onward over the repeats. "Without" is today's path: the run's
``DecodedCache.store`` is patched to hand out no store, so every access decodes. The arms run
interleaved in one process (with, without, with, ...) so that load from other processes hits
both alike; the load average is recorded before and after.

Results: ``benchmarks/results/decoded_cache-<device>-<size>px.json`` and ``.md``.

Run: .venv/bin/python benchmarks/decoded_cache.py [--images 240] [--epochs 5] [--repeats 2]
     [--image-size 96] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

import transferkit as tk
from transferkit.data import (
    DecodedCache,
    ImageDataset,
    build_image_transform,
    load_data,
)
from transferkit.io import runfolder as rf
from transferkit.io.records import read_epoch_records
from transferkit.models import load_model
from transferkit.models.builtin import EFFICIENTNET_LITE0_PREPROCESSING

RESULTS = Path(__file__).resolve().parent / "results"


def write_photos(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEG windows (300-600 px sides) of the sample photos in ``folder/<class>/``."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images  # two [427, 640, 3] uint8 photographs
    rng = np.random.default_rng(seed)
    for k in range(n):
        p = k % len(photos)
        photo = photos[p]
        h, w = int(rng.integers(300, 428)), int(rng.integers(300, 601))
        top = int(rng.integers(0, photo.shape[0] - h + 1))
        left = int(rng.integers(0, photo.shape[1] - w + 1))
        label = f"photo{p}-{'top' if top + h / 2 < photo.shape[0] / 2 else 'bottom'}"
        target = folder / label / f"{k:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        window = Image.fromarray(photo[top : top + h, left : left + w])
        if rng.random() < 0.5:  # some upscaled to 600 px, as camera images are larger than shown
            window = window.resize((min(600, w * 3 // 2), min(600, h * 3 // 2)), Image.BICUBIC)
        window.save(target, quality=90)
    return folder


def epoch_seconds(run_dir: Path) -> list[float]:
    """Seconds of every epoch of the run (one fine-tuning phase)."""
    return [r.seconds for r in read_epoch_records(run_dir / rf.METRICS) if r.phase.is_epoch]


def run_once(config: dict[str, Any], cached: bool, out: Path) -> dict[str, Any]:
    store = DecodedCache.store
    if not cached:
        DecodedCache.store = lambda self, split, pre: None  # type: ignore[method-assign,assignment]
    try:
        start = time.perf_counter()
        result = tk.train(tk.TrainConfig(**config, out=str(out)))
        wall = time.perf_counter() - start
    finally:
        DecodedCache.store = store  # type: ignore[method-assign]
    weights = load_file(str(result.run_dir / rf.WEIGHTS))
    # equal in both arms: the eval transform (no --augment) gives the same tensors, bit for bit
    checksum = sum(float(t.double().abs().sum()) for t in weights.values() if t.is_floating_point())
    return {"epoch_seconds": epoch_seconds(result.run_dir), "accuracy": result.metrics.accuracy,
            "wall_seconds": wall, "weights_abs_sum": checksum}


def pipeline_seconds(data: Path, image_size: int, epochs: int) -> dict[str, Any]:
    """The data pipeline alone (no model): seconds of a DataLoader epoch over the training
    split, batch 16, no workers, with the cache (epoch 1 fills it) and without."""
    pre = EFFICIENTNET_LITE0_PREPROCESSING.at_size(image_size)
    split = load_data(str(data), seed=0).train
    transform = build_image_transform(pre, train=True)
    out: dict[str, Any] = {"images": len(split), "resize_size": pre.resize_size}
    for arm, store in (("without", None), ("with", DecodedCache().store(split, pre))):
        loader = torch.utils.data.DataLoader(ImageDataset(split, transform, cache=store), batch_size=16)
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            for _batch in loader:
                pass
            times.append(time.perf_counter() - start)
        out[arm] = times
    out["speedup_epochs_2_on"] = statistics.median(out["without"][1:]) / statistics.median(out["with"][1:])
    return out


def paired_epochs(data: Path, image_size: int, epochs: int) -> dict[str, Any]:
    """Load-robust figure: one model, and per epoch one training + validation pass with the
    cache and one without, back to back (order alternating), so that both see the same load;
    the ratio of each pair (epochs 2 onward) and their median."""
    bundle = load_data(str(data), seed=0)
    model = load_model("builtin:efficientnet_lite0", len(bundle.classes))
    pre = model.spec.image.at_size(image_size)
    transform, budget = build_image_transform(pre), DecodedCache()
    generator = torch.Generator().manual_seed(0)

    def loaders(split: Any, cached: bool, shuffle: bool) -> torch.utils.data.DataLoader:
        dataset = ImageDataset(split, transform, cache=budget.store(split, pre) if cached else None)
        return torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=shuffle, generator=generator)

    arms = {arm: (loaders(bundle.train, arm == "with", True), loaders(bundle.val, arm == "with", False))
            for arm in ("with", "without")}
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    times: dict[str, list[float]] = {"with": [], "without": []}
    for epoch in range(epochs):
        for arm in ("with", "without") if epoch % 2 == 0 else ("without", "with"):
            train, val = arms[arm]
            start = time.perf_counter()
            model.train()
            for x, y in train:
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
            model.eval()
            with torch.no_grad():
                for x, _ in val:
                    model(x)
            times[arm].append(time.perf_counter() - start)
    ratios = [b / a for a, b in zip(times["with"][1:], times["without"][1:])]
    return {"epoch_seconds": times, "ratios_epochs_2_on": ratios, "median_ratio": statistics.median(ratios)}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    later = {arm: [s for r in rs for s in r["epoch_seconds"][1:]] for arm, rs in runs.items()}
    first = {arm: [r["epoch_seconds"][0] for r in rs] for arm, rs in runs.items()}
    med = {arm: statistics.median(v) for arm, v in later.items()}
    return {"epoch1_seconds": first, "later_epoch_seconds_median": med, "later_epoch_seconds": later,
            "speedup_epochs_2_on": med["without"] / med["with"],
            "accuracy": {arm: [r["accuracy"] for r in rs] for arm, rs in runs.items()},
            "same_weights": len({r["weights_abs_sum"] for rs in runs.values() for r in rs}) == 1,
            "wall_seconds": {arm: [r["wall_seconds"] for r in rs] for arm, rs in runs.items()}}


def markdown(summary: dict[str, Any], info: dict[str, Any]) -> str:
    med = summary["later_epoch_seconds_median"]
    lines = [f"# Decoded-image cache: {info['images']} JPEGs, EfficientNet-Lite0 full, {info['epochs']} epochs",
             "", f"{info['machine']}; image size {info['image_size']}; {info['threads']} thread(s); "
             f"load {info['load_start']} -> {info['load_end']}", "",
             "| arm | epoch 1 s (per repeat) | epochs 2+ median s | test accuracy |", "|---|---|---|---|"]
    for arm in ("without", "with"):
        lines.append(f"| {arm} cache | {', '.join(f'{s:.2f}' for s in summary['epoch1_seconds'][arm])} | "
                     f"{med[arm]:.3f} | {', '.join(f'{a:.4f}' for a in summary['accuracy'][arm])} |")
    lines += ["", f"Epochs 2+: **{summary['speedup_epochs_2_on']:.2f}x** faster with the cache. "
              f"Final weights equal in every run: {summary['same_weights']}."]
    pipe = info.get("pipeline")
    if pipe:
        lines += ["", f"Data pipeline alone ({pipe['images']} training images, resize {pipe['resize_size']}, "
                  "DataLoader batch 16, no model): epochs 2+ median "
                  f"{statistics.median(pipe['without'][1:]):.3f} s without, {statistics.median(pipe['with'][1:]):.3f} s "
                  f"with the cache: **{pipe['speedup_epochs_2_on']:.1f}x** (epoch 1 with: {pipe['with'][0]:.3f} s)."]
    pair = info.get("paired")
    if pair:
        lines += ["", "Paired epochs (one model, each epoch trained once with and once without the cache, "
                  "back to back, training + validation): epochs 2+ ratios "
                  f"{', '.join(f'{r:.2f}' for r in pair['ratios_epochs_2_on'])}; median **{pair['median_ratio']:.2f}x**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=96, help="model input pixels (--image-size)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="decoded-cache-", dir=os.environ.get("BENCH_DIR")))
    try:
        data = write_photos(work / "photos", args.images)
        config = {"model": "builtin:efficientnet_lite0", "data": str(data), "strategy": "full",
                  "epochs": args.epochs, "patience": args.epochs, "image_size": args.image_size,
                  "batch_size": 16, "device": args.device, "seed": 0}
        load_start = [round(x, 2) for x in os.getloadavg()]
        pipeline = pipeline_seconds(data, args.image_size, args.epochs)
        paired = paired_epochs(data, args.image_size, args.epochs)
        print(f"paired: {paired}", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {"with": [], "without": []}
        for repeat in range(args.repeats):
            for arm in ("without", "with") if repeat % 2 else ("with", "without"):
                run = run_once(config, arm == "with", work / f"{arm}{repeat}")
                runs[arm].append(run)
                print(f"repeat {repeat + 1} {arm}: epochs {', '.join(f'{s:.2f}' for s in run['epoch_seconds'])} s",
                      flush=True)
        info = {"images": args.images, "epochs": args.epochs, "image_size": args.image_size,
                "threads": args.threads, "device": args.device, "load_start": load_start, "pipeline": pipeline, "paired": paired,
                "load_end": [round(x, 2) for x in os.getloadavg()],
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                           f"torch {torch.__version__}, python {platform.python_version()}",
                "date": datetime.datetime.now().isoformat(timespec="seconds"), "argv": sys.argv[1:]}
        summary = summarise(runs)
        RESULTS.mkdir(exist_ok=True)
        stem = RESULTS / f"decoded_cache-{args.device}-{args.image_size}px"
        stem.with_suffix(".json").write_text(json.dumps({**info, **summary, "runs": runs}, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(summary, info))
        print(markdown(summary, info))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
