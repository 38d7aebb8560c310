"""Evidence and explorers: ``efficiency``, ``explore freezing|lora|transferability`` (with
``lora-savings``, an alias of ``explore lora``), ``plot`` and ``report``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import click

import transferkit as tk
from transferkit import workflows

from .app import cli
from .options import (
    COUNT,
    POSITIVE_SECONDS,
    FiniteFloat,
    data_from,
    data_options,
    nproc_option,
)

__all__ = ["efficiency_cmd", "explore", "lora_cmd", "plot_cmd", "report_cmd"]


def _show_rows(result: Any, describe: Callable[[list[dict[str, Any]]], list[str]], label: str,
               as_json: bool) -> None:
    """An explorer's rows as one JSON array, or as its table and the output folder."""
    if as_json:
        click.echo(json.dumps(result.rows))
        return
    click.echo("\n".join(describe(result.rows)))
    click.echo(f"{label} folder: {result.out_dir}")


@cli.command("efficiency")
@click.option("--model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", required=True, help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--per-class", "per_class", default="5,10,20,50,100", show_default=True,
              help="Training-set sizes, examples per class, strictly increasing (nested subsets).")
@click.option("--seeds", type=COUNT, default=3, show_default=True, help="Seeds per size (0, 1, ...).")
@click.option("--methods", default=",".join(workflows.METHODS), show_default=True,
              help="Which of feature-extraction, fine-tune, scratch (--no-pretrained with a from-scratch recipe).")
@click.option("--time-budget", "time_budget", type=FiniteFloat(0), default=workflows.DEFAULT_TIME_BUDGET, show_default=True,
              help="Seconds for the whole command, shared by the end-to-end points (0: no limit, every "
                   "point runs its recipe's epoch cap).")
@click.option("--out", help="Output folder (default: runs/efficiency-<model>-<time>).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--json", "as_json", is_flag=True, help="Print efficiency_summary.json as one JSON object.")
@click.option("--check", is_flag=True, help="Only check the model, data, sizes and device, print ok and exit "
                                            "(nothing is loaded or written).")
@nproc_option("the end-to-end points")
@data_options(exclude=("per_class", "seed"))
def efficiency_cmd(model: str, data: str, per_class: str, seeds: int, methods: str, time_budget: float,
                   out: str | None, device: str, as_json: bool, check: bool, nproc: int | None, **values: Any) -> None:
    """Sample efficiency: accuracy by training-set size, pre-trained against from scratch, and the
    data multiplier (how much more data training from scratch needed to match transfer).

    Writes efficiency.json (one object per trained point), efficiency_summary.json, efficiency.md
    and efficiency.png; `transferkit report DIR` turns them into an HTML page.

    \b
    Example:
      transferkit efficiency --model builtin:efficientnet_lite0 --data builtin:mnist --per-class 10,30,100,300 --seeds 2
    """
    options, _ = data_from(data, values)
    if check:  # the checks a training run makes first, on the study's model, data and device
        workflows.parse_int_list(per_class, "per_class")
        tk.check_config(tk.TrainConfig(model=model, device=device, **dataclasses.asdict(options)))
        click.echo("ok")
        return
    result = workflows.sample_efficiency(
        model, options, per_class=per_class, seeds=seeds, methods=[m.strip() for m in methods.split(",") if m.strip()],
        out=out, time_budget=time_budget or None, device=device, nproc=nproc)
    if as_json:
        click.echo(json.dumps(result.summary))
        return
    click.echo((result.out_dir / "efficiency.md").read_text(encoding="utf-8"))
    click.echo(f"efficiency folder: {result.out_dir}")


@cli.group("explore")
def explore() -> None:
    """Explorers: trainable parameters by frozen depth or LoRA rank, and layer transferability.

    \b
    Example:
      transferkit explore freezing --model builtin:efficientnet_lite0
      transferkit explore lora --model builtin:minilm --ranks 1,4,16
      transferkit explore transferability --model builtin:efficientnet_lite0 --data builtin:mnist
    """


@explore.command("freezing")
@click.option("--model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", help="With data: a short real run per depth (test accuracy per depth).")
@click.option("--out", help="Output folder (default: runs/freezing-<model>-<time>).")
@click.option("--num-classes", "num_classes", type=COUNT, help="Head size for counts without --data (default 10).")
@click.option("--epochs", type=COUNT, help="Epochs per run (default 3).")
@click.option("--time-budget", "time_budget", type=POSITIVE_SECONDS, help="Seconds for all runs, shared by the depths.")
@click.option("--json", "as_json", is_flag=True, help="Print freezing.json's rows as one JSON array.")
@data_options()
def freezing_cmd(model: str, data: str | None, out: str | None, num_classes: int | None, time_budget: float | None,
                 as_json: bool, **values: Any) -> None:
    """Trainable parameters (and share) as 0, 1, 2, ... layer groups are frozen from the bottom.

    \b
    Example:
      transferkit explore freezing --model builtin:efficientnet_lite0
      transferkit explore freezing --model builtin:efficientnet_lite0 --data builtin:digits --per-class 20 --epochs 2
    """
    options, rest = data_from(data, values) if data else (None, {k: v for k, v in values.items() if v is not None})
    result = workflows.explore_freezing(model, options, out=out, num_classes=num_classes, time_budget=time_budget,
                                        **rest)
    _show_rows(result, workflows.describe_freezing, "freezing", as_json)


@explore.command("lora")
@click.option("--model", "model_spec", required=True, help="Model spec, e.g. builtin:minilm, torchvision:resnet18.")
@click.option("--targets", "targets", multiple=True,
              help="A target set: comma-separated module-name patterns, all-linear or all. Repeat for "
                   "several sets (default: the model's default set, all-linear and all).")
@click.option("--ranks", "ranks", default="1,2,4,8,16,32,64", show_default=True, help="Comma-separated ranks.")
@click.option("--num-classes", "num_classes", default=workflows.DEFAULT_NUM_CLASSES, show_default=True, type=COUNT,
              help="Outputs of the new head (it trains in full).")
@click.option("--adapter", "adapter", type=click.Path(),
              help="An adapter folder (a LoRA run's adapter/, or PEFT's): count it on this model instead "
                   "(and check that it fits the model).")
@click.option("--per-layer", "per_layer", is_flag=True, help="Also list every targeted layer of the first set.")
@click.option("--out", help="Also write lora_savings.json and lora_savings.png into this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as one JSON array.")
def lora_cmd(model_spec: str, targets: tuple[str, ...], ranks: str, num_classes: int, adapter: str | None,
             per_layer: bool, out: str | None, as_json: bool) -> None:
    """LoRA's trainable parameters on the actual model, per rank and target set, beside full
    fine-tuning (`transferkit lora-savings` is the same command).

    A targeted Linear (d x k) trains r(d + k) parameters instead of d k; a Conv2d trains
    r(c_in kh kw + c_out). The new head always trains in full. Nothing is downloaded: the
    architecture is built with random weights.

    \b
    Example:
      transferkit explore lora --model builtin:minilm --ranks 2,8,32 --targets query,value --targets all-linear
      transferkit lora-savings --model torchvision:resnet18 --targets layer4 --targets all --ranks 4,8
      transferkit lora-savings --model builtin:minilm --num-classes 5 --adapter runs/minilm-lora/adapter
    """
    result = workflows.explore_lora(model_spec, ranks=workflows.parse_int_list(ranks, "ranks"),
                                    targets=list(targets) or None, adapter=adapter, out=out,
                                    num_classes=num_classes)
    if as_json:
        click.echo(json.dumps(result.rows))
        return
    first = result.rows[0]
    click.echo(f"model: {model_spec} ({first['full_params']:,} parameters, all trained by full fine-tuning; head "
               f"{first['head_params']:,})")
    click.echo("\n".join(workflows.lora_table(result, per_layer)))
    if result.out_dir is not None:
        click.echo(f"lora folder: {result.out_dir}")


cli.add_command(lora_cmd, "lora-savings")  # the same command under its first name


@explore.command("transferability")
@click.option("--model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", required=True, help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--eval-per-class", "eval_per_class", type=COUNT, default=50, show_default=True,
              help="Validation and test examples per class (at most).")
@click.option("--control/--no-control", default=True, show_default=True,
              help="Also probe the same architecture with random weights.")
@click.option("--out", help="Output folder (default: runs/transferability-<model>-<time>).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--json", "as_json", is_flag=True, help="Print transferability.json as one JSON object.")
@data_options()
def transferability_cmd(model: str, data: str, out: str | None, eval_per_class: int, control: bool, device: str,
                        as_json: bool, **values: Any) -> None:
    """Layer transferability: a linear probe on pooled features after each layer group, for the
    pre-trained model and a randomly initialised one (the control). The probes train on
    --per-class examples per class (default 50).

    \b
    Example:
      transferkit explore transferability --model builtin:efficientnet_lite0 --data builtin:mnist --per-class 20
    """
    options, _ = data_from(data, values)
    result = workflows.layer_transferability(model, options, out=out, eval_per_class=eval_per_class,
                                             control=control, device=device)
    if as_json:
        click.echo(json.dumps({**result.summary, "points": result.points}))
        return
    for p in result.points:
        click.echo(f"{p['init']:>10}  {p['depth']:>2} {p['group']:<14} {p['features']:>5} features  "
                   f"test accuracy {p['test_accuracy']:.4f}")
    if result.summary.get("text"):
        click.echo(result.summary["text"])
    click.echo(f"transferability folder: {result.out_dir}")


@cli.command("plot")
@click.argument("run_dir", type=click.Path())
@click.option("--out", help="PNG to write (default: RUN_DIR/progress.png).")
def plot_cmd(run_dir: str, out: str | None) -> None:
    """Loss and accuracy curves of a run (finished or still training), phases and unfreezing marked.

    \b
    Example:
      transferkit plot runs/<run>
    """
    click.echo(str(workflows.plot_run(run_dir, out)))


@cli.command("report")
@click.argument("folder", type=click.Path())
@click.option("--out", help="HTML file to write (default: FOLDER/report.html).")
def report_cmd(folder: str, out: str | None) -> None:
    """One self-contained HTML report (plots embedded, no scripts, opens offline) for a run,
    comparison or sample-efficiency folder.

    \b
    Example:
      transferkit report runs/<run>
      transferkit report runs/compare-efficientnet_lite0-<time> --out comparison.html
    """
    click.echo(str(workflows.write_report(folder, out)))
