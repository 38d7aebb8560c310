"""LP-FT with WiSE-FT weight-space ensembling, measured on the defaults suite: the table and the rule.

``results/wise-pilot/lp-ft.jsonl`` holds LP-FT runs of the suite's rows (today's code, one torch
thread per process); each row has the test accuracy of the fine-tuned weights (``accuracy``,
alpha 1) and of probe + alpha x (fine-tuned - probe) for alpha 0.75, 0.5, 0.25 from the same run
(``accuracy_at_wise_alpha``: what ``--wise-alpha`` keeps). Margins are against the defaults
table's max(feature extraction, full) over the same seeds (results/defaults-*.jsonl; faces on 128
test images: results/faces-128-test/; 224 px: results/native-224/). ``held_out``: run after the
rule for alpha 0.75 was written (docs/defaults.md).

Reproduce a row: ``defaults_suite.py --strategies lp-ft --wise-alpha 0.75 ...`` into another folder.
Run:  .venv/bin/python benchmarks/wise_pilot.py [--held-out]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from defaults_suite import read_results

RESULTS = Path(__file__).parent / "results"
ALPHAS = ("1", "0.75", "0.5", "0.25")


def reference_rows(row: dict) -> list[dict]:
    """The suite's runs a pilot row is compared with (same data, size, test split)."""
    if row["test_fraction"] == 0.64:
        return read_results(RESULTS / "faces-128-test" / "defaults.jsonl")
    folder = RESULTS / "native-224" if row["image_size"] == 224 else RESULTS
    return [r for p in sorted(folder.glob("defaults-*.jsonl")) if "before" not in p.name for r in read_results(p)]


def margins(pilot: list[dict]) -> dict[tuple, dict[str, float]]:
    """Per row (data, per class, image size, test fraction): LP-FT's margin over max(FE, full), in points."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in pilot:
        groups[(r["data"], r["per_class"], r["image_size"], r["test_fraction"] == 0.64)].append(r)
    table = {}
    for key, rows in sorted(groups.items(), key=lambda kv: (kv[0][2] == 224, kv[0][3], kv[0][0], kv[0][1])):
        seeds, ref = {r["seed"] for r in rows}, reference_rows(rows[0])
        best = max(statistics.fmean(x["accuracy"] for x in ref if x["data"] == key[0] and x["per_class"] == key[1]
                                    and x["strategy"] == s and x["seed"] in seeds and x.get("lr") is None)
                   for s in ("feature-extraction", "full"))
        acc = {a: statistics.fmean(r["accuracy"] if a == "1" else r["accuracy_at_wise_alpha"][a] for r in rows)
               for a in ALPHAS}
        table[key + (len(seeds),)] = {a: 100 * (acc[a] - best) for a in ALPHAS} | {f"acc {a}": acc[a] for a in ALPHAS}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", action="store_true", help="only the runs after the rule was written")
    args = parser.parse_args()
    pilot = [r for r in read_results(RESULTS / "wise-pilot" / "lp-ft.jsonl") if r["held_out"] or not args.held_out]
    table = margins(pilot)
    print("| data | per class | LP-FT, alpha 1 | alpha 0.75 | alpha 0.5 | margin at 1 | at 0.75 | at 0.5 |")
    print("|---|---|---|---|---|---|---|---|")
    for (data, n, size, faces128, seeds), m in table.items():
        label = data.removeprefix("builtin:") + (", 128 test" if faces128 else "") + (", 224 px" if size == 224 else "")
        print(f"| {label} | {n} ({seeds} seed{'s' if seeds > 1 else ''}) | {m['acc 1']:.3f} | {m['acc 0.75']:.3f} | "
              f"{m['acc 0.5']:.3f} | {m['1']:+.1f} | {m['0.75']:+.1f} | {m['0.5']:+.1f} |")
    print()
    for a in ALPHAS:
        meets = sum(m[a] >= -0.5 for m in table.values())
        below = [k[:2] for k, m in table.items() if m["1"] >= -0.5 > m[a]]
        paired = statistics.fmean(r["accuracy"] if a == "1" else r["accuracy_at_wise_alpha"][a] for r in pilot)
        print(f"alpha {a}: {meets}/{len(table)} rows within 0.5 points, mean margin "
              f"{statistics.fmean(m[a] for m in table.values()):+.2f}, mean accuracy over runs {paired:.4f}, "
              f"rows within at alpha 1 but not here: {below or 'none'}")


if __name__ == "__main__":
    main()
