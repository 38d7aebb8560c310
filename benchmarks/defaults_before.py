"""The defaults suite's "before" columns: the strategies whose defaults issue 12 changed, run with
the defaults they had before it, on today's engine and the same splits.

Issue 12 changed the defaults of two strategies of the suite's table; the others (full, last-n,
gradual, discriminative, lora) train as they did. This script registers, for this process only,
the two "before" strategies and runs them through ``defaults_suite.py``'s cells:

- ``feature-extraction-before``: the mini-batch AdamW head (60 epochs, lr 1e-3, patience 10),
  its epoch chosen on the validation split, no refit on train + validation (before issue 12 the
  default ``head_solver`` was ``adamw`` and there was no refit or cross-validation);
- ``lp-ft-before``: that same probe, tempered, then phase 2 with full fine-tuning's head rate
  (10x the backbone's) and 5% warmup, early stopping on validation accuracy and the best epoch
  kept (the probe when no epoch beats it).

What it cannot reproduce: patience then counted from epoch 1, not from the end of warmup (it
changes only runs that stop early), and ``per_class`` then capped validation differently. Both
sides here use today's splits, so the difference is the defaults' alone.

Run:  .venv/bin/python benchmarks/defaults_before.py --results benchmarks/results/defaults-before.jsonl
      --per-class 5,20 --seeds 0 --image-size 64 --max-test 300 --threads 1
      .venv/bin/python benchmarks/defaults_before.py --compare benchmarks/results/defaults-before.jsonl
      [--after benchmarks/results/defaults-a.jsonl,...]   (prints the before/after table)
"""

from __future__ import annotations

import argparse
import glob
import statistics
import sys
from collections import defaultdict
from types import MappingProxyType
from typing import Any

import defaults_suite
from defaults_suite import read_results

from transferkit.io.records import Phase
from transferkit.strategies import register_strategy
from transferkit.strategies.feature_extraction import HEAD_DEFAULTS, FeatureExtraction
from transferkit.strategies.full import FINE_TUNE_DEFAULTS, LinearProbeThenFineTune
from transferkit.strategies.phases import FineTunePhase, HeadPhase

BEFORE = {"feature-extraction-before": "feature-extraction", "lp-ft-before": "lp-ft"}


@register_strategy
class FeatureExtractionBefore(FeatureExtraction):
    """Feature extraction as its defaults were before issue 12: AdamW head, no refit."""

    name = "feature-extraction-before"
    fixed = MappingProxyType({"head_solver": "adamw", "refit": False})


@register_strategy
class LinearProbeThenFineTuneBefore(LinearProbeThenFineTune):
    """LP-FT as its defaults were before issue 12 (see the module)."""

    name = "lp-ft-before"
    defaults = MappingProxyType({**FINE_TUNE_DEFAULTS, "lr": 3e-4, "head_lr_scale": 10.0, "warmup_fraction": 0.05})
    fixed = MappingProxyType({"head_solver": "adamw", "refit": False})
    phases = (HeadPhase(record=Phase.LINEAR_PROBE, settings=HEAD_DEFAULTS, temper=True),
              FineTunePhase(keep_start_if_better=True))


def compare_table(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> str:
    """Markdown: per (dataset, size), the mean over the seeds both sides ran, before and after."""
    acc: dict[tuple[str, int, str], dict[int, float]] = defaultdict(dict)
    for r in before + after:
        acc[(r["data"], r["per_class"], r["strategy"])][r["seed"]] = r["accuracy"]
    lines = ["| data | per class | seeds | feature-extraction before | after | lp-ft before | after | "
             "lp-ft - max(fe, full) before | after |", "|---|---|---|---|---|---|---|---|---|"]
    gains: dict[str, list[float]] = defaultdict(list)
    for data, n in sorted({(r["data"], r["per_class"]) for r in before}):
        cols = ["feature-extraction-before", "feature-extraction", "lp-ft-before", "lp-ft", "full"]
        seeds = sorted(set.intersection(*(set(acc[(data, n, s)]) for s in cols)))
        if not seeds:
            continue
        mean = {s: statistics.fmean(acc[(data, n, s)][k] for k in seeds) for s in cols}
        for new, old in (("feature-extraction", "feature-extraction-before"), ("lp-ft", "lp-ft-before")):
            gains[new].append(100 * (mean[new] - mean[old]))
        margin_before = 100 * (mean["lp-ft-before"] - max(mean["feature-extraction-before"], mean["full"]))
        margin_after = 100 * (mean["lp-ft"] - max(mean["feature-extraction"], mean["full"]))
        lines.append(f"| {data.removeprefix('builtin:')} | {n} | {len(seeds)} | "
                     f"{mean['feature-extraction-before']:.3f} | {mean['feature-extraction']:.3f} | "
                     f"{mean['lp-ft-before']:.3f} | {mean['lp-ft']:.3f} | {margin_before:+.1f} | {margin_after:+.1f} |")
    for s, g in gains.items():
        lines.append(f"\n{s}: after minus before {statistics.fmean(g):+.1f} points on average over {len(g)} "
                     f"rows ({min(g):+.1f} to {max(g):+.1f}).")
    return "\n".join(lines)


def main() -> None:
    if "--compare" in sys.argv:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--compare", required=True, help="the before rows (JSON lines)")
        results = defaults_suite.Path(__file__).resolve().parent / "results"
        parser.add_argument("--after", default=",".join(sorted(glob.glob(str(results / "defaults-[a-z].jsonl")))))
        args = parser.parse_args()
        after = [r for p in args.after.split(",") for r in read_results(defaults_suite.Path(p))]
        print(compare_table(read_results(defaults_suite.Path(args.compare)), after))
        return
    if "--strategies" not in sys.argv:
        sys.argv += ["--strategies", ",".join(BEFORE)]
    defaults_suite.main()


if __name__ == "__main__":
    main()
