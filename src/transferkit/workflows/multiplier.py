"""The data multiplier: how many more examples from-scratch training needs to match transfer.

Pure functions of the trained points (efficiency.json), so every branch is testable on
synthetic curves. The scratch curve is the mean test accuracy over seeds at each size; the size
at which it reaches a transfer point's accuracy is interpolated linearly in log(examples per
class), since learning curves are close to straight on a log axis.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

__all__ = ["mean_curve", "scratch_needed", "data_multipliers", "headline"]

TRANSFER = ("feature-extraction", "fine-tune")


def mean_curve(points: Sequence[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """Mean and spread of test accuracy over seeds, per size, for one method.

    Returns:
        ``[{"per_class", "mean", "std", "min", "max", "n"}]`` sorted by ``per_class``; points
        without an accuracy (skipped) are left out.

    Example:
        >>> pts = [{"method": "scratch", "per_class": 10, "accuracy": a} for a in (0.4, 0.6)]
        >>> mean_curve(pts, "scratch")[0]["mean"]
        0.5
    """
    sizes: dict[int, list[float]] = {}
    for p in points:
        if p.get("method") == method and p.get("accuracy") is not None:
            sizes.setdefault(int(p["per_class"]), []).append(float(p["accuracy"]))
    curve = []
    for size in sorted(sizes):
        accs = sizes[size]
        curve.append({"per_class": size, "mean": statistics.fmean(accs),
                      "std": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
                      "min": min(accs), "max": max(accs), "n": len(accs)})
    return curve


def scratch_needed(curve: Sequence[tuple[float, float]], target: float) -> tuple[float | None, str]:
    """Examples per class at which a (per_class, accuracy) curve first reaches ``target``.

    Returns:
        ``(n, "=")`` interpolated on log(per_class) between the two sizes around the first
        crossing; ``(smallest, "<=")`` when the smallest size already reaches it; ``(largest, ">")``
        when no size does; ``(None, "none")`` for an empty curve.

    Example:
        >>> scratch_needed([(10, 0.5), (100, 0.9)], 0.7)  # halfway on the log axis
        (31.6, '=')
        >>> scratch_needed([(10, 0.5), (100, 0.9)], 0.95), scratch_needed([(10, 0.5)], 0.4)
        ((100, '>'), (10, '<='))
    """
    pts = sorted((float(x), float(y)) for x, y in curve)
    if not pts:
        return None, "none"
    if pts[0][1] >= target:
        return pts[0][0] if pts[0][0] % 1 else int(pts[0][0]), "<="
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if y1 >= target:
            t = (target - y0) / (y1 - y0)  # y1 > y0 here: y0 < target <= y1
            n = math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0)))
            return round(n, 1), "="
    largest = pts[-1][0]
    return largest if largest % 1 else int(largest), ">"


def _sentence(method: str, size: int, acc: float, n: float | None, rel: str, mult: float | None,
              largest: float | None) -> str:
    head = f"{method} at {size}/class ({acc:.3f})"
    if rel == "=":
        return f"{head}: scratch needs about {n:.0f}/class to match, {mult:.1f}x the data"
    if rel == ">":
        return (f"{head}: scratch never reached it up to {largest:g}/class, so more than "
                f"{mult:.1f}x the data (more than the largest size tried)")
    if rel == "<=":
        return f"{head}: scratch already matches it at {n:g}/class ({mult:.1f}x the data or less)"
    return f"{head}: no from-scratch points to compare with"


def data_multipliers(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each transfer point (method, size; mean over seeds): the scratch size that matches it.

    Returns:
        ``[{"method", "per_class", "accuracy", "scratch_per_class", "relation", "multiplier",
        "text"}]``; ``relation`` is ``=``, ``>`` (more than the largest size tried), ``<=`` or
        ``none``; ``multiplier = scratch_per_class / per_class`` (a bound unless ``=``).

    Example:
        >>> pts = ([{"method": "scratch", "per_class": n, "accuracy": a} for n, a in ((10, .3), (100, .8))]
        ...        + [{"method": "fine-tune", "per_class": 10, "accuracy": .9}])
        >>> m = data_multipliers(pts)[0]
        >>> m["relation"], m["multiplier"]
        ('>', 10.0)
    """
    scratch = [(c["per_class"], c["mean"]) for c in mean_curve(points, "scratch")]
    largest = max((x for x, _ in scratch), default=None)
    out = []
    for method in TRANSFER:
        for c in mean_curve(points, method):
            n, rel = scratch_needed(scratch, c["mean"])
            mult = round(n / c["per_class"], 2) if n is not None else None
            out.append({"method": method, "per_class": c["per_class"], "accuracy": round(c["mean"], 4),
                        "scratch_per_class": n, "relation": rel, "multiplier": mult,
                        "text": _sentence(method, c["per_class"], c["mean"], n, rel, mult, largest)})
    return out


def headline(multipliers: Sequence[dict[str, Any]]) -> list[str]:
    """One line per size: the better transfer method's multiplier, e.g. ``10/class: more than 30x``.

    Example:
        >>> headline([{"method": "fine-tune", "per_class": 10, "accuracy": .9, "relation": "=",
        ...            "multiplier": 12.0, "scratch_per_class": 120}])
        ['10/class: transfer (fine-tune, 0.900) matches from-scratch training on about 12x the data (120/class)']
    """
    best: dict[int, dict[str, Any]] = {}
    for m in multipliers:
        if m["per_class"] not in best or m["accuracy"] > best[m["per_class"]]["accuracy"]:
            best[m["per_class"]] = m
    lines = []
    for size in sorted(best):
        m = best[size]
        what = f"{size}/class: transfer ({m['method']}, {m['accuracy']:.3f})"
        if m["relation"] == "=":
            lines.append(f"{what} matches from-scratch training on about {m['multiplier']:g}x the data "
                         f"({m['scratch_per_class']:g}/class)")
        elif m["relation"] == ">":
            lines.append(f"{what} is not matched by from-scratch training even on {m['multiplier']:g}x the "
                         f"data ({m['scratch_per_class']:g}/class, the largest size tried): the multiplier is "
                         f"more than {m['multiplier']:g}x")
        elif m["relation"] == "<=":
            lines.append(f"{what} is matched by from-scratch training on {m['multiplier']:g}x the data or less "
                         f"({m['scratch_per_class']:g}/class, the smallest size tried)")
    return lines
