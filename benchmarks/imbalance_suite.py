"""Imbalanced classes: the defaults against ``--class-weights balanced``, on data built to be imbalanced.

The defaults suite trains on ``--per-class N``, so every class it ever saw was balanced; a user's
folder rarely is. This builds imbalanced datasets from shipped ones, as files a user would have
(``train/ val/ test/`` class folders of PNGs, or ``train.csv``/``val.csv``/``test.csv``), with
validation and test splits as imbalanced as training (what a user who splits their own folder
gets; each seed draws other examples and trains with that seed), and trains each strategy with ``class_weights`` none and balanced on the same files:

- ``sms-spam``: ham against spam, 13 to 1 (MiniLM);
- ``mnist-tail``: digits 0-4 with 10x the examples of digits 5-9 (EfficientNet-Lite0, 64 px);
- ``bbc-tail``: two news topics with 10x the articles of the other three (MiniLM).

Prints, per dataset, strategy and setting, the mean over seeds of the test accuracy, macro-F1
and balanced accuracy (the mean of the per-class recalls), and writes every run as a JSON line.

Run: .venv/bin/python benchmarks/imbalance_suite.py [--datasets sms-spam,mnist-tail,bbc-tail]
     [--strategies feature-extraction,lp-ft] [--seeds 0,1] [--work /tmp/tk-imbalance]
     [--results benchmarks/results/imbalance.jsonl] [--table]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import transferkit as tk
from transferkit.data import load_data

# name: (builtin source, model, {class: (train, val, test) examples})
MAJOR, MINOR = (100, 20, 100), (10, 2, 10)
DATASETS: dict[str, tuple[str, str, dict[str, tuple[int, int, int]]]] = {
    "sms-spam": ("builtin:sms-spam", "builtin:minilm", {"ham": (340, 60, 650), "spam": (26, 5, 50)}),
    "mnist-tail": ("builtin:mnist", "builtin:efficientnet_lite0",
                   {str(d): MAJOR if d < 5 else MINOR for d in range(10)}),
    "bbc-tail": ("builtin:bbc-news", "builtin:minilm",
                 {"business": MAJOR, "sports": MAJOR, "politics": MINOR, "tech": MINOR, "entertainment": MINOR}),
}
SIZE = {"image": {"image_size": 64}, "text": {"max_length": 128}}


def build(name: str, work: Path, seed: int) -> Path:
    """Write dataset ``name``'s draw ``seed`` under ``work`` (once) and return its folder: each seed
    draws other examples, so the seeds measure the data's variation, not only the training's."""
    source, _, plan = DATASETS[name]
    folder = work / f"{name}-seed{seed}"
    if (folder / "done").exists():
        return folder
    bundle = load_data(source)
    pool: dict[str, list[Any]] = {c: [] for c in plan}
    for split in (bundle.train, bundle.val, bundle.test):
        for item, label in zip(split.items, split.labels):
            if bundle.classes[label] in pool:
                pool[bundle.classes[label]].append(item)
    rng = random.Random(seed)
    parts: dict[str, list[tuple[Any, str]]] = {"train": [], "val": [], "test": []}
    for cls, counts in plan.items():
        items = pool[cls]
        rng.shuffle(items)
        if sum(counts) > len(items):
            raise SystemExit(f"{name}: {cls} has {len(items)} examples, the plan needs {sum(counts)}")
        start = 0
        for part, n in zip(parts, counts):
            parts[part] += [(item, cls) for item in items[start:start + n]]
            start += n
    folder.mkdir(parents=True, exist_ok=True)
    for part, rows in parts.items():
        if bundle.modality == "text":
            with open(folder / f"{part}.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                writer.writerows(rows)
        else:
            for i, (item, cls) in enumerate(rows):
                (folder / part / cls).mkdir(parents=True, exist_ok=True)
                image = Image.open(item) if isinstance(item, str) else Image.fromarray(np.asarray(item))
                image.save(folder / part / cls / f"{i:05d}.png")
    (folder / "done").write_text("")
    return folder


def run(name: str, folder: Path, strategy: str, weights: str, seed: int, work: Path) -> dict[str, Any]:
    model = DATASETS[name][1]
    modality = "image" if "efficientnet" in model else "text"
    out = work / "runs" / f"{name}-{strategy}-{weights}-{seed}"
    shutil.rmtree(out, ignore_errors=True)  # a run an interrupted benchmark left
    started = time.perf_counter()
    cfg = tk.TrainConfig(model=model, data=str(folder), strategy=strategy, seed=seed, precision="fp32",
                         class_weights=weights, out=str(out),
                         **SIZE[modality])
    metrics = tk.train(cfg, progress=False).metrics
    recalls = {name: v["recall"] for name, v in metrics.per_class.items()}
    return {"data": name, "strategy": strategy, "class_weights": weights, "seed": seed,
            "accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1,
            "balanced_accuracy": metrics.balanced_accuracy, "recalls": recalls,
            "seconds": round(time.perf_counter() - started, 1)}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per dataset and strategy, none against balanced (means over seeds)."""
    out = ["| data | strategy | seeds | accuracy none / balanced | macro-F1 none / balanced | "
           "balanced accuracy none / balanced |", "|---|---|---|---|---|---|"]
    keys = sorted({(r["data"], r["strategy"]) for r in rows})
    for data, strategy in keys:
        cell = {w: [r for r in rows if (r["data"], r["strategy"], r["class_weights"]) == (data, strategy, w)]
                for w in ("none", "balanced")}
        if not all(cell.values()):
            continue
        mean = {w: {m: statistics.fmean(r[m] for r in cell[w]) for m in ("accuracy", "macro_f1", "balanced_accuracy")}
                for w in cell}
        out.append(f"| {data} | {strategy} | {len(cell['none'])} | "
                   + " | ".join(f"{mean['none'][m]:.3f} / {mean['balanced'][m]:.3f}"
                                for m in ("accuracy", "macro_f1", "balanced_accuracy")) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--strategies", default="feature-extraction,lp-ft")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--work", default="/tmp/tk-imbalance")
    parser.add_argument("--results", default="benchmarks/results/imbalance.jsonl")
    parser.add_argument("--table", action="store_true", help="print the table of --results and stop")
    args = parser.parse_args()
    results = Path(args.results)
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    if args.table:
        print(table(done))
        return
    work = Path(args.work)
    seen = {(r["data"], r["strategy"], r["class_weights"], r["seed"]) for r in done}
    for name in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            folder = build(name, work, seed)
            for strategy in args.strategies.split(","):
                for weights in ("none", "balanced"):
                    if (name, strategy, weights, seed) in seen:
                        continue
                    row = run(name, folder, strategy, weights, seed, work)
                    with results.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    print(table([json.loads(line) for line in results.read_text().splitlines()]))


if __name__ == "__main__":
    main()
