"""``recommend`` across the defaults suite: is its pick within 1 point of ``compare``'s best, in at
most a third of ``compare``'s time?

For each cell (dataset, examples per class, seed) that ``defaults_suite.py`` ran with every
strategy, this runs ``recommend`` with its race on the same data options, then trains the pick
exactly as recommended (strategy and settings) and scores it on the test split. ``compare``'s
best is the best strategy of that suite cell (same seed, same splits), and ``compare``'s time is
the sum of the cell's runs. That best strategy is also trained again here, so both sides of
the gap ran on the same code and thread count. Rows are appended to a JSON-lines file as they finish (resumable);
``--table`` renders them.

Run:  .venv/bin/python benchmarks/recommend_suite.py --results benchmarks/results/recommend.jsonl
      [--race-only --cells-from benchmarks/results/recommend.jsonl]  (the race alone, on those cells)
      [--suite benchmarks/results/defaults-a.jsonl,benchmarks/results/defaults-b.jsonl]
      [--datasets builtin:glyphs,...] [--per-class 5,20] [--seeds 0]
      .venv/bin/python benchmarks/recommend_suite.py --results ... --table docs/recommend-table.md
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
from defaults_suite import MODELS, VAL_FRACTION, data_plan, read_results

from transferkit import TrainConfig, train
from transferkit.strategies import strategy_names
from transferkit.workflows import recommend


def suite_cells(rows: list[dict[str, Any]]) -> dict[tuple[str, int, int], list[dict[str, Any]]]:
    """Suite rows by (data, per_class, seed), kept only where every strategy ran."""
    cells: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        cells[(r["data"], r["per_class"], r["seed"])].append(r)
    wanted = set(strategy_names()) - {"linear-probe"}  # the suite omits it: the same run as feature-extraction
    return {k: v for k, v in cells.items() if {r["strategy"] for r in v} >= wanted}


def _test_accuracy(data: str, strategy: str, options: dict[str, Any], settings: dict[str, Any]) -> float:
    modality = "image" if "image_size" in options else "text"
    out = Path(tempfile.mkdtemp(prefix="tk-rec-"))
    shutil.rmtree(out)
    try:
        config = TrainConfig(model=MODELS[modality], data=data, strategy=strategy, out=str(out),
                             **{"precision": "fp32", **options, **settings})
        return train(config, progress=False).metrics.accuracy
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_cell(data: str, per_class: int, seed: int, suite: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Race, train the pick, and train compare's best strategy again in this process: the same
    seed on another thread count or code version moves an end-to-end run by a point or two
    (MNIST 20/class LP-FT: 0.947 in the suite's 1-thread workers, 0.923 on 2 threads), so the
    pick is compared with a best run under the same conditions."""
    modality, _, test_fraction, _ = data_plan(data, args.max_test, args.test_fraction)
    size = {"image_size": args.image_size} if modality == "image" else {"max_length": args.max_length}
    options = {"per_class": per_class, "seed": seed, "val_fraction": VAL_FRACTION,
               "test_fraction": test_fraction, **size}
    started = time.perf_counter()
    # fp32, as the suite's rows were measured: `auto` would race and train text in bf16 here
    rec = recommend(MODELS[modality], data, race=True, progress=False, precision="fp32", **options)
    race_seconds = time.perf_counter() - started
    settings = {k: v for k, v in rec.hyperparameters.items() if k != "strategy"}
    picked = _test_accuracy(data, rec.strategy, options, settings)
    best = max(suite, key=lambda r: r["accuracy"])
    same_run = best["strategy"] == rec.strategy and not settings
    again = picked if same_run else _test_accuracy(data, best["strategy"], options, {})
    return {"data": data, "per_class": per_class, "seed": seed, "pick": rec.strategy, "settings": settings,
            "pick_accuracy": picked, "race_seconds": round(race_seconds, 1),
            "best": best["strategy"], "best_accuracy": best["accuracy"], "best_accuracy_here": again,
            "compare_seconds": round(sum(r["seconds"] for r in suite), 1)}


def race_cell(data: str, per_class: int, seed: int, suite: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The race alone: its pick and time, and the pick's test accuracy as the suite measured it
    on this cell; a pick with settings the suite did not run is trained with them here."""
    max_test = 500 if max(r.get("n_test", 0) for r in suite) > 300 else args.max_test  # the cap the cell ran with
    modality, _, test_fraction, _ = data_plan(data, max_test, args.test_fraction)
    size = {"image_size": args.image_size} if modality == "image" else {"max_length": args.max_length}
    started = time.perf_counter()
    rec = recommend(MODELS[modality], data, race=True, progress=False, precision="fp32", per_class=per_class,
                    seed=seed, val_fraction=VAL_FRACTION, test_fraction=test_fraction, **size)
    settings = {k: v for k, v in rec.hyperparameters.items() if k not in ("strategy", "head_solver")}
    race_seconds = round(time.perf_counter() - started, 1)
    measured = {r["strategy"]: r["accuracy"] for r in suite}
    row = {"data": data, "per_class": per_class, "seed": seed, "pick": rec.strategy, "settings": settings,
           "pick_accuracy_in_suite": None if settings else measured.get(rec.strategy),
           "best": max(measured, key=measured.get), "best_accuracy": max(measured.values()),
           "race_seconds": race_seconds}
    if row["pick_accuracy_in_suite"] is None:
        options = {"per_class": per_class, "seed": seed, "val_fraction": VAL_FRACTION,
                   "test_fraction": test_fraction, **size}
        row["pick_accuracy_trained"] = _test_accuracy(data, rec.strategy, options, settings)
    return row


def suite_means(suite: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, float]]:
    """Mean test accuracy of each strategy over the suite's seeds, per (data, per_class)."""
    runs: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in suite:
        runs[(r["data"], r["per_class"])][r["strategy"]].append(r["accuracy"])
    return {k: {s: statistics.fmean(v) for s, v in by.items()} for k, by in runs.items()}


def _mean_gap(r: dict[str, Any], means: dict[tuple[str, int], dict[str, float]]) -> float | None:
    """Points between the picked strategy's suite mean and the best suite mean: the choice judged
    over every seed, not one seed's test draw (``None``: the pick's settings are not the suite's)."""
    by = means.get((r["data"], r["per_class"]))
    plain = not {k for k in r["settings"] if k != "head_solver"}
    if not by or not plain or r["pick"] not in by:
        return None
    return 100 * (by[r["pick"]] - max(by.values()))


def render_table(rows: list[dict[str, Any]], suite: list[dict[str, Any]] | None = None) -> str:
    means = suite_means(suite or [])
    header = ("| data | per class | seed | pick | its test accuracy | compare's best (suite) | that strategy "
              "here | gap (points) | race time / compare time | pick's mean - best mean over seeds |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    gaps, ratios, mean_gaps = [], [], []
    for r in sorted(rows, key=lambda r: (r["data"], r["per_class"], r["seed"])):
        here = r.get("best_accuracy_here", r["best_accuracy"])
        gap, ratio = 100 * (r["pick_accuracy"] - here), r["race_seconds"] / r["compare_seconds"]
        gaps.append(gap)
        ratios.append(ratio)
        pick = r["pick"] + "".join(f" {k}={v}" for k, v in r["settings"].items() if k != "head_solver")
        mean_gap = _mean_gap(r, means)
        if mean_gap is not None:
            mean_gaps.append(mean_gap)
        lines.append(f"| {r['data'].removeprefix('builtin:')} | {r['per_class']} | {r['seed']} | {pick} | "
                     f"{r['pick_accuracy']:.3f} | {r['best']} {r['best_accuracy']:.3f} | {here:.3f} | "
                     f"{gap:+.1f} | {ratio:.2f} | {'' if mean_gap is None else f'{mean_gap:+.1f}'} |")
    if rows:
        lines.append(f"\nWithin 1 point of the best in {sum(g >= -1 for g in gaps)} of {len(rows)} cells; "
                     f"median gap {statistics.median(gaps):+.1f} points; median time ratio "
                     f"{statistics.median(ratios):.2f} (at most 1/3 in {sum(x <= 1 / 3 for x in ratios)}).")
    if mean_gaps:
        lines.append(f"Over the suite's seeds, the picked strategy's mean is within 1 point of the best mean in "
                     f"{sum(g >= -1 for g in mean_gaps)} of {len(mean_gaps)} cells (median "
                     f"{statistics.median(mean_gaps):+.1f} points).")
    return "\n".join(lines)


def render_race_table(rows: list[dict[str, Any]], suite: list[dict[str, Any]]) -> str:
    """``--race-only`` rows per (data, per class): the picks, and the picks' mean test accuracy
    over the seeds (each seed's suite run of its pick) against the best strategy's suite mean."""
    means = suite_means(suite)
    by: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(r["data"], r["per_class"])].append(r)
    lines = ["| data | per class | seeds | picks | picks' mean | best mean (strategy) | gap (points) |",
             "|---|---|---|---|---|---|---|"]
    gaps = []
    for (data, per_class), cell in sorted(by.items()):
        picks = defaultdict(int)
        for r in cell:
            picks[r["pick"] + "".join(f" {k}={v}" for k, v in r["settings"].items())] += 1
        # a pick with settings the suite did not run: its own run, trained with them (if any)
        accs = [r["pick_accuracy_in_suite"] if r["pick_accuracy_in_suite"] is not None
                else r.get("pick_accuracy_trained") for r in cell]
        best = max(means[(data, per_class)].items(), key=lambda kv: kv[1])
        mean = None if None in accs else statistics.fmean(accs)
        gap = None if mean is None else 100 * (mean - best[1])
        gaps.append(gap)
        lines.append(f"| {data.removeprefix('builtin:')} | {per_class} | {len(cell)} | "
                     f"{', '.join(f'{k} x{n}' for k, n in picks.items())} | "
                     f"{'-' if mean is None else f'{mean:.3f}'} | {best[1]:.3f} ({best[0]}) | "
                     f"{'-' if gap is None else f'{gap:+.1f}'} |")
    known = [g for g in gaps if g is not None]
    lines.append(f"\nWithin 1 point of the best mean in {sum(g >= -1 for g in known)} of {len(known)} pairs "
                 f"({len(gaps) - len(known)} with a pick the suite did not run).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/results/recommend.jsonl")
    parser.add_argument("--suite", default="benchmarks/results/defaults-a.jsonl,benchmarks/results/defaults-b.jsonl")
    parser.add_argument("--datasets", help="comma-separated; default: every suite dataset")
    parser.add_argument("--per-class", default="5,20")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--image-size", type=int, default=64)  # what the suite's rows were run with
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-test", type=int, default=300)
    parser.add_argument("--test-fraction", type=float,
                        help="the fixed test fraction the --suite rows were run with (defaults_suite.py --test-fraction)")
    parser.add_argument("--table", help="write the markdown table of --results to this file and stop")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--race-only", action="store_true",
                        help="only race each cell; the pick's accuracy is the suite's run of it (no training)")
    parser.add_argument("--cells-from", help="a results file whose (data, per class, seed) cells to run")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = Path(args.results)
    if args.table:
        suite = [r for p in args.suite.split(",") for r in read_results(Path(p))]
        rows = read_results(results)
        text = (render_race_table if rows and "pick_accuracy_in_suite" in rows[0] else render_table)(rows, suite)
        Path(args.table).write_text(text + "\n")
        print(text)
        return
    cells = suite_cells([r for p in args.suite.split(",") for r in read_results(Path(p))])
    done = {(r["data"], r["per_class"], r["seed"]) for r in read_results(results)}
    # bbc-news's split changed after its suite rows were run (its duplicate articles are now kept in
    # one split), so its rows no longer describe the same data: left out unless asked for.
    datasets = args.datasets.split(",") if args.datasets else sorted({d for d, _, _ in cells} - {"builtin:bbc-news"})
    sizes, seeds = [int(p) for p in args.per_class.split(",")], [int(s) for s in args.seeds.split(",")]
    wanted = ({(r["data"], r["per_class"], r["seed"]) for r in read_results(Path(args.cells_from))}
              if args.cells_from else None)
    for key in sorted(cells, key=lambda k: (k[1], k[2], k[0])):  # every dataset at one size first
        chosen = key in wanted if wanted is not None else (
            key[0] in datasets and key[1] in sizes and key[2] in seeds)
        if key in done or not chosen:
            continue
        row = (race_cell if args.race_only else run_cell)(*key, cells[key], args)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        picked = next((row[k] for k in ("pick_accuracy", "pick_accuracy_in_suite", "pick_accuracy_trained")
                       if row.get(k) is not None), None)
        print(f"{key[0]:24s} {key[1]:3d}/class seed {key[2]} pick {row['pick']:18s} {row['settings'] or ''} "
              f"{picked if picked is None else f'{picked:.3f}'} vs best {row['best']} {row['best_accuracy']:.3f}; "
              f"race {row['race_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
