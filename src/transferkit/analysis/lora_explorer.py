"""LoRA savings explorer: trainable parameters by rank and target set on the actual model, beside
full fine-tuning, with the per-layer formula r (d + k) against d k.

The numbers come from ``transferkit.lora.lora_savings`` (the same target resolution that
``apply_lora`` uses), so they are what a LoRA run trains: the adapters plus the new head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..models import TransferModel, load_model
from ..train import runfolder as rf
from ._common import fmt_params, prepare_out, pyplot, save_figure

__all__ = ["LoraExplorerResult", "explore_lora", "lora_rows", "LORA_JSON", "LORA_PLOT", "DEFAULT_TARGET_SETS"]

LORA_JSON = "lora_savings.json"
LORA_PLOT = "lora_savings.png"
# The model family's default, then the two keywords; sets that select no layer are left out.
DEFAULT_TARGET_SETS: tuple[str | None, ...] = (None, "all-linear", "all")


@dataclass
class LoraExplorerResult:
    """What :func:`explore_lora` returns; ``rows`` is lora_savings.json's table."""

    out_dir: Path
    rows: list[dict[str, Any]]
    layers: list[dict[str, Any]]


def lora_rows(model: TransferModel, ranks: Sequence[int], target_sets: Sequence[str | None],
              explicit: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows per (target set, rank) and the per-layer table of the first set at rank 8 (or the first rank).

    Target sets that resolve to the same layers as an earlier set are listed once; sets that
    select nothing are skipped unless ``explicit`` (then the ``ConfigError`` is raised).
    """
    from ..lora import lora_savings, resolve_targets

    rows: list[dict[str, Any]] = []
    layers: list[dict[str, Any]] = []
    seen: list[tuple[str, ...]] = []
    layer_rank = 8 if 8 in ranks else list(ranks)[0]
    for targets in target_sets:
        try:
            resolved = tuple(resolve_targets(model, targets))
        except ConfigError:
            if explicit:
                raise
            continue
        if resolved in seen or not resolved:
            continue
        seen.append(resolved)
        label = "default" if targets is None else str(targets)
        for row in lora_savings(model, ranks=ranks, targets=targets):
            per_layer = row.pop("per_layer")
            rows.append({"target_set": label, **row})
            if len(seen) == 1 and row["rank"] == layer_rank:
                layers = [{"name": l["name"], "shape": l["shape"], "d": l["shape"][0], "k": l["full"] // l["shape"][0],
                           "lora": l["lora"], "full": l["full"]} for l in per_layer]
    return rows, layers


def _plot(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label in dict.fromkeys(r["target_set"] for r in rows):
        pts = [r for r in rows if r["target_set"] == label]
        ax.plot([r["rank"] for r in pts], [r["trainable_params"] for r in pts], "o-",
                label=f"LoRA, {label} ({pts[0]['layers']} layers)")
        for r in pts:
            ax.annotate(f"{r['share']:.1%}", (r["rank"], r["trainable_params"]), textcoords="offset points",
                        xytext=(3, -10), fontsize=7)
    if rows:
        full = rows[0]["full_params"]
        ax.axhline(full, color="#e45756", linestyle="--", label=f"full fine-tuning ({fmt_params(full)})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel="LoRA rank r", ylabel="trainable parameters (adapters + head)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def explore_lora(model: str | TransferModel, *, ranks: Sequence[int] | None = None,
                 targets: Sequence[str | None] | None = None, out: str | Path | None = None,
                 num_classes: int = 10) -> LoraExplorerResult:
    """Trainable parameters of LoRA by rank and target set, beside full fine-tuning.

    Args:
        model: a model spec (built with random weights: counts do not depend on them) or a model.
        ranks: ranks to tabulate (default 1, 2, 4, ..., 64).
        targets: target sets, each a pattern string (``query,value``), ``all-linear``, ``all`` or
            ``None`` for the family default (default: default, all-linear, all).
        out: folder for lora_savings.json and lora_savings.png (default ``runs/lora-<model>-<time>``).
        num_classes: the head's size (it trains in full).

    Returns:
        A :class:`LoraExplorerResult`.

    Example:
        >>> r = explore_lora("builtin:minilm", ranks=[4, 8], out="runs/lora-minilm")  # doctest: +SKIP
        >>> r.rows[0]["target_set"], r.rows[0]["layers"]  # doctest: +SKIP
        ('default', 12)
    """
    from ..lora import DEFAULT_RANKS

    ranks = list(DEFAULT_RANKS if ranks is None else ranks)
    name = model if isinstance(model, str) else model.spec.spec_string
    if isinstance(model, str):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes: must be a whole number >= 1, got {num_classes!r}.")
        model = load_model(model, num_classes, pretrained=False)
    explicit = targets is not None
    rows, layers = lora_rows(model, ranks, list(targets) if explicit else list(DEFAULT_TARGET_SETS), explicit)
    if not rows:
        raise ConfigError(f"{name} has no layer LoRA can adapt (nn.Linear or plain nn.Conv2d below the head).")
    out_dir = prepare_out(out, "lora", name, (LORA_JSON, LORA_PLOT))
    layer_rank = 8 if 8 in ranks else ranks[0]
    rf.atomic_write_json(out_dir / LORA_JSON, {"model": name, "ranks": ranks, "layer_rank": layer_rank,
                                               "rows": rows, "layers": layers})
    _plot(rows, f"{name}: LoRA trainable parameters", out_dir / LORA_PLOT)
    return LoraExplorerResult(out_dir, rows, layers)


def describe(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row, for the CLI."""
    return [f"{r['target_set']:>12}  r={r['rank']:<3} {r['layers']:>3} layers  {fmt_params(r['trainable_params']):>9} "
            f"trainable ({r['share']:.2%})  vs full {fmt_params(r['full_params'])}" for r in rows]
