"""The defaults suite: every strategy with its defaults, on datasets nobody tuned them on.

Each cell (dataset, examples per class, seed, strategy) is one ``transferkit.train`` run with the
strategy's defaults, nothing else set but the data options and, to fit a 2-core machine, the
image size and text length (both options a user has too). Results are appended to a JSON-lines
file as they finish, so an interrupted suite resumes where it stopped; ``--table`` renders the
markdown table (mean and half-range over seeds per strategy, dataset and size; the best mean in
bold; LP-FT's margin over max(feature extraction, full); leave-one-dataset-out ranks).

The test split is capped (``--max-test``) by lowering ``test_fraction`` for large datasets; the
validation split follows ``per_class`` (see ``load_data``), so it stays what a user with that
little data has.

Run:  .venv/bin/python benchmarks/defaults_suite.py --results benchmarks/results/defaults.jsonl
      [--datasets builtin:mnist,...] [--per-class 5,20,100] [--seeds 0,1] [--strategies all]
      [--image-size 128] [--max-length 128] [--max-test 500] [--lr 1e-4 (a candidate default)]
      [--wise-alpha 0.75 (LP-FT weight-space ensembling, a trial)]
      .venv/bin/python benchmarks/defaults_suite.py --results ... --table docs/defaults-table.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from transferkit import TrainConfig, train
from transferkit.data import load_data
from transferkit.strategies import strategy_names

IMAGE = ["builtin:mnist", "builtin:fashion-mnist", "builtin:glyphs", "builtin:textures", "builtin:faces"]
TEXT = ["builtin:bbc-news", "builtin:imdb", "builtin:rotten-tomatoes", "builtin:sms-spam", "builtin:trec"]
MODELS = {"image": "builtin:efficientnet_lite0", "text": "builtin:minilm"}
VAL_FRACTION = 0.15


def cell_key(row: dict[str, Any]) -> tuple[str, int, int, str, float | None, float | None]:
    """What makes a run a cell: a trial ``--lr`` or ``--wise-alpha`` row is not the default's cell."""
    return row["data"], row["per_class"], row["seed"], row["strategy"], row.get("lr"), row.get("wise_alpha")


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def data_plan(data: str, max_test: int, test_fraction: float | None = None) -> tuple[str, int, float, int]:
    """(modality, pool size, test fraction, smallest class).

    The test fraction is 0.15, lowered to cap the test split at ``max_test`` examples, unless
    ``test_fraction`` is given (a larger split for a small dataset, where 15% is too few
    examples to resolve the half-point differences the table is read for)."""
    bundle = load_data(data, seed=0, val_fraction=0.0, test_fraction=0.0)
    counts = bundle.train.class_counts(len(bundle.classes))
    n = len(bundle.train)
    fraction = min(0.15, max_test / n) if test_fraction is None else test_fraction
    return bundle.modality, n, fraction, min(counts)


def run_cell(data: str, modality: str, per_class: int, seed: int, strategy: str, test_fraction: float,
             args: argparse.Namespace) -> dict[str, Any]:
    size = {"image_size": args.image_size} if modality == "image" else {"max_length": args.max_length}
    trial = {} if args.lr is None else {"lr": args.lr}  # a candidate default, tried before it is one
    if args.wise_alpha is not None:
        trial["wise_alpha"] = args.wise_alpha
    out = Path(tempfile.mkdtemp(prefix="tk-suite-"))
    shutil.rmtree(out)
    try:
        config = TrainConfig(model=MODELS[modality], data=data, strategy=strategy, per_class=per_class,
                             seed=seed, val_fraction=VAL_FRACTION, test_fraction=test_fraction,
                             # the table's cells were measured in fp32 (the default here); auto
                             # would train text in bf16 on CPUs with native bf16 and mix the table
                             precision=args.precision, out=str(out), **size, **trial)
        started = time.perf_counter()
        result = train(config, progress=False)
        metrics = result.metrics
        return {"data": data, "per_class": per_class, "seed": seed, "strategy": strategy,
                "accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1, "n_test": metrics.n,
                "seconds": round(time.perf_counter() - started, 1), "best_epoch": metrics.best_epoch,
                "head": metrics.head, "precision": metrics.precision, **size, **trial}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_suite(args: argparse.Namespace) -> None:
    results_path = Path(args.results)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    # Cells already in any results file of the folder (one file per worker process) are done.
    done = {cell_key(r) for path in results_path.parent.glob('defaults*.jsonl') for r in read_results(path)}
    strategies = strategy_names() if args.strategies == "all" else args.strategies.split(",")
    plans = {d: data_plan(d, args.max_test, args.test_fraction) for d in args.datasets.split(",")}
    # Cheapest, most informative cells first: every dataset at one size and seed before the next.
    for per_class in [int(p) for p in args.per_class.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for data, (modality, _, test_fraction, smallest) in plans.items():
                if per_class > smallest * (1 - VAL_FRACTION - test_fraction):
                    continue  # the data does not allow this size
                for strategy in strategies:
                    if (data, per_class, seed, strategy, args.lr, args.wise_alpha) in done:
                        continue
                    row = run_cell(data, modality, per_class, seed, strategy, test_fraction, args)
                    with results_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{data:24s} {per_class:3d}/class seed {seed} {strategy:18s} "
                          f"accuracy {row['accuracy']:.4f}  {row['seconds']:6.1f} s", flush=True)


def _cells(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, list[float]]]:
    cells: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        cells[(r["data"], r["per_class"])][r["strategy"]].append(r["accuracy"])
    return cells


def render_table(rows: list[dict[str, Any]], strategies: list[str]) -> str:
    """Markdown: one row per (dataset, size), mean (half-range) per strategy, best in bold."""
    cells = _cells(rows)
    head = "| data | per class | " + " | ".join(strategies) + " | lp-ft - max(fe, full) |"
    lines = [head, "|" + "---|" * (len(strategies) + 3)]
    for (data, n), by in sorted(cells.items()):
        means = {s: statistics.fmean(v) for s, v in by.items() if v}
        best = max(means.values())
        out = []
        for s in strategies:
            if s not in means:
                out.append("")
                continue
            v = by[s]
            text = f"{means[s]:.3f} ±{(max(v) - min(v)) / 2:.3f}" if len(v) > 1 else f"{means[s]:.3f}"
            out.append(f"**{text}**" if means[s] == best else text)
        margin = ""
        if {"lp-ft", "feature-extraction", "full"} <= set(means):
            margin = f"{100 * (means['lp-ft'] - max(means['feature-extraction'], means['full'])):+.1f}"
        seeds = max(len(v) for v in by.values())
        lines.append(f"| {data.removeprefix('builtin:')} | {n} ({seeds} seeds) | " + " | ".join(out)
                     + f" | {margin} |")
    return "\n".join(lines)


def leave_one_out_ranks(rows: list[dict[str, Any]], strategies: list[str]) -> str:
    """For each held-out dataset: the strategy with the best mean rank on the other datasets, and
    its rank on the held-out one (a default that wins only because of one dataset shows here)."""
    cells = _cells(rows)
    ranks: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for key, by in cells.items():
        means = sorted(((statistics.fmean(v), s) for s, v in by.items() if s in strategies), reverse=True)
        for position, (_, s) in enumerate(means, start=1):
            ranks[s][key] = position
    lines = ["| held out | best on the rest (mean rank) | its rank there |", "|---|---|---|"]
    for data in sorted({d for d, _ in cells}):
        rest = {s: statistics.fmean(r for (d, _), r in by.items() if d != data)
                for s, by in ranks.items() if any(d != data for d, _ in by)}
        if not rest:
            continue
        winner = min(rest, key=rest.get)
        there = [r for (d, _), r in ranks[winner].items() if d == data]
        there_text = f"{statistics.fmean(there):.1f}" if there else "not run"
        lines.append(f"| {data.removeprefix('builtin:')} | {winner} ({rest[winner]:.2f}) | {there_text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/results/defaults.jsonl")
    parser.add_argument("--datasets", default=",".join(IMAGE + TEXT))
    parser.add_argument("--per-class", default="5,20,100")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--strategies", default="all")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-test", type=int, default=500)
    parser.add_argument("--test-fraction", type=float,
                        help="a fixed test fraction instead of 0.15 capped by --max-test (faces: 0.64 gives "
                             "128 test images instead of 30); write its rows to another folder: done cells are "
                             "read per folder")
    parser.add_argument("--lr", type=float,
                        help="the learning rate every run uses instead of its strategy's default (to try a "
                             "candidate default on the suite); its rows are cells of their own, but --table "
                             "would mix them with the default's: write them to another folder")
    parser.add_argument("--wise-alpha", type=float,
                        help="LP-FT's --wise-alpha for every run (a trial, as --lr: its own cells, another folder)")
    parser.add_argument("--table", help="write the markdown table of --results to this file and stop")
    parser.add_argument("--threads", type=int, help="torch threads (two 1-thread workers beat one 2-thread one)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                        help="training precision (fp32: what the table in docs/defaults.md was measured in); "
                             "write other precisions' rows to another folder: done cells are read per folder")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.table:  # --results may name several files (one per worker process)
        rows = [r for path in args.results.split(",") for r in read_results(Path(path))]
        strategies = [s for s in strategy_names() if any(r["strategy"] == s for r in rows)]
        text = render_table(rows, strategies) + "\n\nLeave one dataset out:\n\n" + leave_one_out_ranks(rows, strategies)
        Path(args.table).write_text(text + "\n")
        print(text)
        return
    run_suite(args)


if __name__ == "__main__":
    main()
