"""``transferkit lora-savings``: what LoRA trains on a model, per rank and target set, beside full fine-tuning."""

from __future__ import annotations

import json
from typing import Any, Sequence

import click

import transferkit as tk

from .analysis._common import parse_int_list
from .errors import ConfigError

__all__ = ["lora_savings_cmd", "register"]


def _target_sets(model: Any, given: Sequence[str]) -> list[str | None]:
    """The sets to show: those given, else the family default and ``all-linear`` (and ``all``
    for models with convolutions), without repeating a set that selects the same layers."""
    if given:
        return list(given)
    sets: list[str | None] = []
    seen: list[list[str]] = []
    for targets in (None, "all-linear", "all"):
        try:
            names = tk.resolve_targets(model, targets)
        except ConfigError:  # e.g. a CNN without Linear layers outside its head
            continue
        if names not in seen:
            seen.append(names)
            sets.append(targets)
    return sets


def _table(rows: list[dict[str, Any]], full: int) -> list[str]:
    lines = ["| targets | layers | rank | LoRA params | + head | trainable | share of model | vs full fine-tuning |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['targets']} | {r['layers']} | {r['rank']} | {r['lora_params']:,} | {r['head_params']:,} | "
                     f"{r['trainable_params']:,} | {100 * r['share']:.3f}% | 1/{full / r['trainable_params']:.0f} |")
    lines.append(f"| full fine-tuning | all | - | - | - | {full:,} | 100% | 1 |")
    return lines


def _per_layer(rows: list[dict[str, Any]]) -> list[str]:
    """One line per layer of the first target set: shape, d k, and r (d + k) at every rank."""
    first = [r for r in rows if r["targets"] == rows[0]["targets"]]
    ranks = [r["rank"] for r in first]
    lines = ["", f"per layer ({first[0]['targets']}): full d k vs LoRA r (d + k)",
             "| layer | shape | full | " + " | ".join(f"r={r}" for r in ranks) + " |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in ranks) + " |"]
    for i, layer in enumerate(first[0]["per_layer"]):
        cells = " | ".join(f"{row['per_layer'][i]['lora']:,}" for row in first)
        lines.append(f"| {layer['name']} | {'x'.join(map(str, layer['shape']))} | {layer['full']:,} | {cells} |")
    return lines


def _adapter_rows(model: Any, folder: str) -> list[dict[str, Any]]:
    """The savings row of an adapter folder at its own rank and layers (it is loaded to check it fits)."""
    names = tk.load_adapter(model, folder)
    rows = tk.lora_savings(model, [model.get_submodule(names[0]).rank], names)
    for row in rows:
        row["targets"] = f"adapter {folder}"
    return rows


@click.command("lora-savings")
@click.option("--model", "model_spec", required=True, help="Model spec, e.g. builtin:minilm, torchvision:resnet18.")
@click.option("--targets", "targets", multiple=True,
              help="A target set: comma-separated module-name patterns, all-linear or all. Repeat for "
                   "several sets (default: the model's default set, all-linear and all).")
@click.option("--ranks", "ranks", default="1,2,4,8,16,32,64", show_default=True, help="Comma-separated ranks.")
@click.option("--num-classes", "num_classes", default=2, show_default=True, type=int, help="Outputs of the new head.")
@click.option("--adapter", "adapter", type=click.Path(),
              help="An adapter folder (a LoRA run's adapter/, or PEFT's): count it on this model instead "
                   "(and check that it fits the model).")
@click.option("--per-layer", "per_layer", is_flag=True, help="Also list every targeted layer of the first set.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows (per_layer included) as one JSON array.")
def lora_savings_cmd(model_spec: str, targets: tuple[str, ...], ranks: str, num_classes: int,
                     adapter: str | None, per_layer: bool, as_json: bool) -> None:
    """Trainable parameters of LoRA on the actual model, per rank and target set, beside full fine-tuning.

    A targeted Linear (d x k) trains r(d + k) parameters instead of d k; a Conv2d trains
    r(c_in kh kw + c_out). The new head always trains in full. Nothing is downloaded: the
    architecture is built with random weights.

    \b
    Example:
      transferkit lora-savings --model builtin:minilm
      transferkit lora-savings --model torchvision:resnet18 --targets layer4 --targets all --ranks 4,8
      transferkit lora-savings --model builtin:minilm --num-classes 5 --adapter runs/minilm-lora/adapter
    """
    rank_list = parse_int_list(ranks, "ranks")
    if num_classes < 1:
        raise ConfigError(f"num_classes: must be at least 1, got {num_classes}.")
    model = tk.load_model(model_spec, num_classes=num_classes, pretrained=False)
    if adapter is not None:
        rows = _adapter_rows(model, adapter)
    else:
        rows = [row for t in _target_sets(model, targets) for row in tk.lora_savings(model, rank_list, t)]
    if as_json:
        click.echo(json.dumps(rows))
        return
    full = rows[0]["full_params"]
    click.echo(f"model: {model_spec} ({full:,} parameters, all trained by full fine-tuning; head "
               f"{rows[0]['head_params']:,})")
    click.echo("\n".join(_table(rows, full) + (_per_layer(rows) if per_layer else [])))


def register(cli: click.Group) -> None:
    """Add ``lora-savings`` to the ``transferkit`` command group."""
    cli.add_command(lora_savings_cmd)
