"""LoRA savings: trainable parameters by rank and target set on the actual model, beside full
fine-tuning, with the per-layer formula r (d + k) against d k. ``transferkit explore lora`` and
its alias ``transferkit lora-savings`` print this one table.

The numbers come from ``transferkit.lora.lora_savings`` (the same target resolution that
``apply_lora`` uses), so they are what a LoRA run trains: the adapters plus the new head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..io.atomic import atomic_write_json
from ..lora import DEFAULT_RANKS, load_adapter, lora_savings, resolve_targets
from ..models import TransferModel, load_model
from ..train.plots import pyplot, save_figure
from ._common import fmt_params, prepare_out

__all__ = ["LoraExplorerResult", "explore_lora", "lora_rows", "lora_table", "LORA_JSON", "LORA_PLOT",
           "DEFAULT_TARGET_SETS", "DEFAULT_NUM_CLASSES"]

LORA_JSON = "lora_savings.json"
LORA_PLOT = "lora_savings.png"
# The model family's default, then the two keywords; sets that select no layer are left out.
DEFAULT_TARGET_SETS: tuple[str | None, ...] = (None, "all-linear", "all")
DEFAULT_NUM_CLASSES = 2  # the new head's outputs: it trains in full, so its size is in every count


@dataclass
class LoraExplorerResult:
    """What :func:`explore_lora` returns.

    Attributes:
        out_dir: where lora_savings.json and .png were written (``None`` without ``out``).
        rows: one per (target set, rank): ``target_set`` (``default``, ``all-linear``, the
            patterns, or ``adapter <folder>``), ``targets`` (its label with the patterns it
            resolved to), ``rank``, ``layers``, ``lora_params``, ``head_params``,
            ``trainable_params``, ``total_params``, ``share``, ``full_params``.
        layers: the first set's layers: ``name``, ``shape``, ``d``, ``k``, ``full`` (d k),
            ``lora`` (r (d + k) at ``layer_rank``) and ``lora_by_rank``.
        layer_rank: 8 when tabulated, else the first rank.
    """

    out_dir: Path | None
    rows: list[dict[str, Any]]
    layers: list[dict[str, Any]]
    layer_rank: int


def lora_rows(model: TransferModel, ranks: Sequence[int], target_sets: Sequence[str | None],
              explicit: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows per (target set, rank) and the per-layer table of the first set.

    Target sets that resolve to the same layers as an earlier set are listed once; sets that
    select nothing are skipped unless ``explicit`` (then the ``ConfigError`` is raised).
    """
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
        first = len(seen) == 1
        label = "default" if targets is None else str(targets)
        for row in lora_savings(model, ranks=ranks, targets=targets):
            per_layer = row.pop("per_layer")
            rows.append({"target_set": label, **row})
            if first:
                layers = layers or [{"name": l["name"], "shape": l["shape"], "d": l["shape"][0],
                                     "k": l["full"] // l["shape"][0], "full": l["full"], "lora_by_rank": {}}
                                    for l in per_layer]
                for layer, counted in zip(layers, per_layer):
                    layer["lora_by_rank"][row["rank"]] = counted["lora"]
                    if row["rank"] == layer_rank:
                        layer["lora"] = counted["lora"]
    return rows, layers


def _adapter_rows(model: TransferModel, folder: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The rows of an adapter folder at its own rank and layers (loading it checks that it fits)."""
    names = load_adapter(model, folder)
    rank = model.get_submodule(names[0]).rank
    rows, layers = lora_rows(model, [rank], [names], explicit=True)
    for row in rows:
        row["target_set"] = row["targets"] = f"adapter {folder}"
    return rows, layers, rank


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
                 targets: Sequence[str | None] | None = None, adapter: str | Path | None = None,
                 out: str | Path | None = None, num_classes: int = DEFAULT_NUM_CLASSES) -> LoraExplorerResult:
    """Trainable parameters of LoRA by rank and target set, beside full fine-tuning.

    Args:
        model: a model spec (built with random weights: counts do not depend on them) or a model.
        ranks: ranks to tabulate (default 1, 2, 4, ..., 64).
        targets: target sets, each a pattern string (``query,value``), ``all-linear``, ``all`` or
            ``None`` for the family default (default: default, all-linear, all).
        adapter: count an adapter folder (a LoRA run's ``adapter/``, or PEFT's) at its own rank
            and layers instead, after checking that it fits the model.
        out: also write lora_savings.json and lora_savings.png into this folder.
        num_classes: the head's size (it trains in full).

    Returns:
        A :class:`LoraExplorerResult`.

    Example:
        >>> r = explore_lora("builtin:minilm", ranks=[4, 8])  # doctest: +SKIP
        >>> r.rows[0]["target_set"], r.rows[0]["layers"]  # doctest: +SKIP
        ('default', 12)
    """
    ranks = list(DEFAULT_RANKS if ranks is None else ranks)
    name = model if isinstance(model, str) else model.spec.spec_string
    if isinstance(model, str):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes: must be a whole number >= 1, got {num_classes!r}.")
        model = load_model(model, num_classes, pretrained=False)
    out_dir = prepare_out(out, "lora", name, (LORA_JSON, LORA_PLOT)) if out is not None else None
    if adapter is not None:
        rows, layers, layer_rank = _adapter_rows(model, adapter)
        ranks = [layer_rank]
    else:
        explicit = targets is not None
        rows, layers = lora_rows(model, ranks, list(targets) if explicit else list(DEFAULT_TARGET_SETS), explicit)
        layer_rank = 8 if 8 in ranks else ranks[0]
    if not rows:
        raise ConfigError(f"{name} has no layer LoRA can adapt (nn.Linear or plain nn.Conv2d below the head).")
    if out_dir is not None:
        atomic_write_json(out_dir / LORA_JSON, {"model": name, "ranks": ranks, "layer_rank": layer_rank,
                                                "rows": rows, "layers": layers})
        _plot(rows, f"{name}: LoRA trainable parameters", out_dir / LORA_PLOT)
    return LoraExplorerResult(out_dir, rows, layers, layer_rank)


def lora_table(result: LoraExplorerResult, per_layer: bool = False) -> list[str]:
    """The table for people: one row per (target set, rank) and full fine-tuning; with
    ``per_layer``, every layer of the first set, d k against r (d + k) at each rank."""
    rows = result.rows
    full = rows[0]["full_params"]
    lines = ["| targets | layers | rank | LoRA params | + head | trainable | share of model | vs full fine-tuning |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['targets']} | {r['layers']} | {r['rank']} | {r['lora_params']:,} | {r['head_params']:,} | "
                     f"{r['trainable_params']:,} | {100 * r['share']:.3f}% | 1/{full / r['trainable_params']:.0f} |")
    lines.append(f"| full fine-tuning | all | - | - | - | {full:,} | 100% | 1 |")
    if per_layer and result.layers:
        ranks = list(result.layers[0]["lora_by_rank"])
        lines += ["", f"per layer ({rows[0]['targets']}): full d k vs LoRA r (d + k)",
                  "| layer | shape | full | " + " | ".join(f"r={r}" for r in ranks) + " |",
                  "| --- | --- | ---: | " + " | ".join("---:" for _ in ranks) + " |"]
        for layer in result.layers:
            cells = " | ".join(f"{layer['lora_by_rank'][r]:,}" for r in ranks)
            lines.append(f"| {layer['name']} | {'x'.join(map(str, layer['shape']))} | {layer['full']:,} | {cells} |")
    return lines
