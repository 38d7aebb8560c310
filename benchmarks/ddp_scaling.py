"""Data-parallel scaling: the epoch time of ``transferkit train --nproc N`` against one process.

The same fine-tuning run (strategy ``full``, same seed, same global batch size) is trained with
``tk.train(config, nproc=N)`` for each process count: 1 and 2 on the CPU (Gloo), or 1, 2, 4 ...
up to every GPU with ``--device cuda`` (NCCL, one GPU per process). The time of an epoch is
read from each run's ``metrics.jsonl`` (``seconds``: the training batches and the validation
pass, both sharded over the ranks), so process start-up, imports and the test evaluation do not
count. Epoch 1 is a warm-up (allocator, oneDNN kernel choice, DDP's first static-graph step) and
is dropped; the time for N is the median over the remaining epochs of all repeats. Repeats are
interleaved (1, 2, 1, 2, ...) so that load from other processes hits every N alike.

Reported: seconds per epoch for each N, the speed-up t1 / tN and the scaling efficiency
t1 / (N * tN) (1.0 is perfect scaling on N devices), with the test accuracies (they should
agree; on the CPU BatchNorm's batch statistics are per rank, so they may differ by an example
or two).

On a CPU the processes share the cores: one process uses all of them (torch's default
threads), N processes use ``threads_per_process(N)`` each, so N > 1 can only win where one
process leaves cores idle (small kernels, Python overhead, the data loader): there the ideal is a
speed-up of 1 (efficiency 1 / N) and the ratio is the figure to read. The threads used are
printed and recorded; set ``OMP_NUM_THREADS`` to pin them.

Results go to ``benchmarks/results/ddp_scaling-<model>-<device>.json`` and ``.md`` with the machine
(CPU model, cores, torch version, date, load average before and after).

Run: .venv/bin/python benchmarks/ddp_scaling.py [--per-class 20] [--image-size 96]
     [--epochs 5] [--repeats 2] [--device cpu|cuda] [--nprocs 1,2]
     text: --model builtin:minilm --data builtin:trec --max-length 64
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

import torch

import transferkit as tk
from transferkit.data import load_data
from transferkit.io import runfolder as rf
from transferkit.io.records import read_epoch_records
from transferkit.train.distributed import threads_per_process

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cpu": cpu, "cores": cores, "gpus": gpus, "torch": torch.__version__, "transferkit": tk.__version__,
            "python": platform.python_version(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_average_start": list(os.getloadavg())}


def process_counts(device: str, asked: str | None) -> list[int]:
    """1 and 2 on the CPU; 1, 2, 4 ... and every GPU on CUDA (each process takes a GPU)."""
    if asked:
        return [int(n) for n in asked.split(",")]
    if device != "cuda":
        return [1, 2]
    gpus = torch.cuda.device_count()
    counts = [n for n in (1, 2, 4, 8, 16, 32) if n <= gpus]
    return counts + ([gpus] if gpus not in counts else [])


def threads(n: int) -> int:
    """CPU threads of each process: ``launch`` gives workers ``threads_per_process(n)``; the
    one-process run trains here, with this process's threads."""
    return torch.get_num_threads() if n == 1 else threads_per_process(n)


def epoch_seconds(run_dir: Path) -> list[float]:
    """Seconds of each epoch of the last training phase (``lp-ft``: the fine-tuning after the
    probe; the L-BFGS head sweep is not an epoch), the first one dropped."""
    epochs = [r for r in read_epoch_records(run_dir / rf.METRICS) if r.phase.is_epoch]
    return [r.seconds for r in epochs if r.phase is epochs[-1].phase][1:] if epochs else []


def run_once(config: dict[str, Any], n: int, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    result = tk.train(tk.TrainConfig(**config, out=str(out)), nproc=n, progress=False)
    wall = time.perf_counter() - start
    seconds = epoch_seconds(result.run_dir)
    if not seconds:
        raise SystemExit(f"{out}: fewer than 2 epochs trained; give --epochs 3 or more")
    return {"epoch_seconds": seconds, "accuracy": result.metrics.accuracy, "wall_seconds": wall}


def summarise(runs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per process count: median epoch seconds, speed-up and efficiency against N = 1."""
    median = {n: statistics.median(s for r in rs for s in r["epoch_seconds"]) for n, rs in runs.items()}
    t1 = median.get(1)
    rows = []
    for n, rs in runs.items():
        row = {"nproc": n, "threads_per_process": threads(n), "epoch_seconds": median[n],
               "epoch_seconds_per_repeat": [statistics.median(r["epoch_seconds"]) for r in rs],
               "accuracy": [r["accuracy"] for r in rs], "wall_seconds": [r["wall_seconds"] for r in rs]}
        if t1 is not None:
            row["speedup"] = t1 / median[n]
            row["efficiency"] = t1 / (n * median[n])
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows."""
    lines = ["| processes | threads each | s / epoch (median) | per repeat | speed-up t1/tN | efficiency t1/(N tN) "
             "| test accuracy |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['nproc']} | {r['threads_per_process']} | {r['epoch_seconds']:.3f} | "
                     f"{', '.join(f'{s:.3f}' for s in r['epoch_seconds_per_repeat'])} | "
                     f"{r.get('speedup', float('nan')):.2f}x | {r.get('efficiency', float('nan')):.2f} | "
                     f"{', '.join(f'{a:.4f}' for a in r['accuracy'])} |")
    return "\n".join(lines)


def write_results(report: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = report["settings"]["model"].split(":")[-1]
    stem = folder / f"ddp_scaling-{model}-{report['settings']['device']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    m, s = report["machine"], report["settings"]
    md = [f"# Data-parallel scaling ({s['device']})", "",
          f"`{s['command']}`", "",
          f"{s['model']} on {s['data']}, strategy {s['strategy']}, {s['train_examples']} training examples, "
          f"{s['epochs']} epochs (epoch 1 dropped), {s['repeats']} interleaved repeats.", "",
          f"Machine: {m['cpu']}, {m['cores']} cores{', GPUs: ' + ', '.join(m['gpus']) if m['gpus'] else ''}; "
          f"torch {m['torch']}; {m['date']}; load average {m['load_average_start'][0]:.2f} at the start, "
          f"{m['load_average_end'][0]:.2f} at the end.", "", table(report["rows"]), ""]
    stem.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    return stem


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:efficientnet_lite0")
    parser.add_argument("--data", default="builtin:digits")
    parser.add_argument("--strategy", default="full")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=96, help="image data only")
    parser.add_argument("--max-length", type=int, default=64, help="text data only")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (default: the strategy's)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--nprocs", default=None, help="process counts, e.g. 1,2 (default: 1,2 on the CPU, "
                        "1,2,4,... and all GPUs on CUDA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON and .md")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    info = machine()
    data = load_data(args.data, seed=args.seed, per_class=args.per_class)
    config: dict[str, Any] = dict(model=args.model, data=args.data, strategy=args.strategy, per_class=args.per_class,
                                  epochs=args.epochs, patience=args.epochs + 1, seed=args.seed, device=args.device,
                                  batch_size=args.batch_size)
    if data.modality == "image":
        config["image_size"] = args.image_size
    else:
        config["max_length"] = args.max_length
    counts = process_counts(args.device, args.nprocs)
    print(f"{args.model} on {args.data} ({data.modality}): {len(data.train)} train / {len(data.val)} val, "
          f"strategy {args.strategy}, {args.epochs} epochs, device {args.device}; {info['cpu']}, {info['cores']} "
          f"cores, load average {info['load_average_start'][0]:.2f}")
    print("threads per process: " + ", ".join(f"N={n}: {threads(n)}" for n in counts))
    work = Path(tempfile.mkdtemp(prefix="ddp-scaling-"))
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    try:
        for repeat in range(args.repeats):
            for n in counts:
                run = run_once(config, n, work / f"n{n}-r{repeat}")
                runs[n].append(run)
                print(f"  repeat {repeat + 1} N={n}: epochs {', '.join(f'{s:.2f}' for s in run['epoch_seconds'])} s "
                      f"(median {statistics.median(run['epoch_seconds']):.2f}), accuracy {run['accuracy']:.4f}, "
                      f"wall {run['wall_seconds']:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["load_average_end"] = list(os.getloadavg())
    rows = summarise(runs)
    print("\n" + table(rows))
    for r in rows[1:]:
        print(f"N={r['nproc']}: ratio t1/tN {r['speedup']:.2f}x, efficiency {r['efficiency']:.2f}")
    settings = {**{k: v for k, v in vars(args).items() if k != "results"}, "train_examples": len(data.train),
                "command": "python benchmarks/ddp_scaling.py " + " ".join(sys.argv[1:])}
    stem = write_results({"machine": info, "settings": settings, "rows": rows}, args.results)
    print(f"\nwritten: {stem}.json, {stem}.md")


if __name__ == "__main__":
    main()
