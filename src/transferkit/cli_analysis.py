"""Commands for evidence and explorers: ``efficiency``, ``explore freezing|lora|transferability``,
``plot`` and ``report``. ``register(cli)`` adds them to the main command group."""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from transferkit import analysis
from transferkit.analysis._common import parse_int_list
from transferkit.analysis.efficiency import DEFAULT_TIME_BUDGET, METHODS
from transferkit.errors import ConfigError

__all__ = ["register", "efficiency_cmd", "explore", "plot_cmd", "report_cmd"]


def _data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Split and column options shared by the commands that read data."""
    for flag, name, kind, text in reversed((
        ("--val-fraction", "val_fraction", float, "Share of the data held out for validation (if no val split)."),
        ("--test-fraction", "test_fraction", float, "Share of the data held out for testing (if no test split)."),
        ("--text-column", "text_column", str, "Column holding the text in CSV/TSV/JSONL data."),
        ("--label-column", "label_column", str, "Column holding the label."),
        ("--path-column", "path_column", str, "Column holding image paths in a CSV of images."),
    )):
        func = click.option(flag, name, type=kind, default=None, help=text)(func)
    return func


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _show_rows(result: Any, describe: Callable[[list[dict[str, Any]]], list[str]], label: str,
               as_json: bool) -> None:
    """An explorer's rows as one JSON array, or as its table and the output folder."""
    if as_json:
        click.echo(json.dumps(result.rows))
        return
    click.echo("\n".join(describe(result.rows)))
    click.echo(f"{label} folder: {result.out_dir}")


def _image_size(text: str) -> int | str:
    if text in ("auto", "native"):
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"image_size: {text!r} is not auto, native or a whole number of pixels (e.g. 96).") from None


@click.command("efficiency")
@click.option("--model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", required=True, help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--per-class", "per_class", default="5,10,20,50,100", show_default=True,
              help="Training-set sizes, examples per class, strictly increasing (nested subsets).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds per size (0, 1, ...).")
@click.option("--methods", default=",".join(METHODS), show_default=True,
              help="Which of feature-extraction, fine-tune, scratch (--no-pretrained with a from-scratch recipe).")
@click.option("--time-budget", "time_budget", type=float, default=DEFAULT_TIME_BUDGET, show_default=True,
              help="Seconds for the whole command, shared by the end-to-end points (0: no limit, every "
                   "point runs its recipe's epoch cap).")
@click.option("--image-size", "image_size", default="auto", show_default=True,
              help="Input size of fine-tune and scratch points: auto (2x the data's image side, multiple of "
                   "32, at most the model's), native, or pixels. Feature extraction always uses the model's.")
@click.option("--out", help="Output folder (default: runs/efficiency-<model>-<time>).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--json", "as_json", is_flag=True, help="Print efficiency_summary.json as one JSON object.")
@_data_options
def efficiency_cmd(model: str, data: str, per_class: str, seeds: int, methods: str, time_budget: float,
                   image_size: str, out: str | None, device: str, as_json: bool, **values: Any) -> None:
    """Sample efficiency: accuracy by training-set size, pre-trained against from scratch, and the
    data multiplier (how much more data training from scratch needed to match transfer).

    Writes efficiency.json (one object per trained point), efficiency_summary.json, efficiency.md
    and efficiency.png; `transferkit report DIR` turns them into an HTML page.

    \b
    Example:
      transferkit efficiency --model builtin:efficientnet_lite0 --data builtin:mnist --per-class 10,30,100,300 --seeds 2
    """
    result = analysis.sample_efficiency(
        model, data, per_class=per_class, seeds=seeds, methods=[m.strip() for m in methods.split(",") if m.strip()],
        out=out, time_budget=time_budget or None, image_size=_image_size(image_size), device=device,
        **_given(values))
    if as_json:
        click.echo(json.dumps(result.summary))
        return
    click.echo((result.out_dir / "efficiency.md").read_text(encoding="utf-8"))
    click.echo(f"efficiency folder: {result.out_dir}")


@click.group("explore")
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
@click.option("--num-classes", "num_classes", type=int, help="Head size for counts without --data (default 10).")
@click.option("--per-class", "per_class", type=int, help="Few-shot: training examples per class for the runs.")
@click.option("--seed", type=int, help="Seed of the runs (default 0).")
@click.option("--epochs", type=int, help="Epochs per run (default 3).")
@click.option("--time-budget", "time_budget", type=float, help="Seconds for all runs, shared by the depths.")
@click.option("--json", "as_json", is_flag=True, help="Print freezing.json's rows as one JSON array.")
@_data_options
def freezing_cmd(model: str, data: str | None, out: str | None, num_classes: int | None, time_budget: float | None,
                 as_json: bool, **values: Any) -> None:
    """Trainable parameters (and share) as 0, 1, 2, ... layer groups are frozen from the bottom.

    \b
    Example:
      transferkit explore freezing --model builtin:efficientnet_lite0
      transferkit explore freezing --model builtin:efficientnet_lite0 --data builtin:digits --per-class 20 --epochs 2
    """
    result = analysis.explore_freezing(model, data, out=out, num_classes=num_classes, time_budget=time_budget,
                                       **_given(values))
    from transferkit.analysis.freezing import describe

    _show_rows(result, describe, "freezing", as_json)


@explore.command("lora")
@click.option("--model", required=True, help="Model spec, e.g. builtin:minilm.")
@click.option("--ranks", default="1,2,4,8,16,32,64", show_default=True, help="Ranks, increasing.")
@click.option("--targets", "targets", multiple=True,
              help="A target set (patterns like query,value, or all-linear, all); repeat for several. "
                   "Default: the family default, all-linear and all.")
@click.option("--num-classes", "num_classes", type=int, default=10, show_default=True, help="Head size.")
@click.option("--out", help="Output folder (default: runs/lora-<model>-<time>).")
@click.option("--json", "as_json", is_flag=True, help="Print lora_savings.json's rows as one JSON array.")
def lora_cmd(model: str, ranks: str, targets: tuple[str, ...], num_classes: int, out: str | None, as_json: bool) -> None:
    """LoRA's trainable parameters by rank and target set, beside full fine-tuning (with a plot),
    and per layer r(d + k) against d k.

    \b
    Example:
      transferkit explore lora --model builtin:minilm --ranks 2,8,32 --targets query,value --targets all-linear
    """
    result = analysis.explore_lora(model, ranks=parse_int_list(ranks, "ranks"), targets=list(targets) or None,
                                   out=out, num_classes=num_classes)
    from transferkit.analysis.lora_explorer import describe

    _show_rows(result, describe, "lora", as_json)


@explore.command("transferability")
@click.option("--model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", required=True, help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--per-class", "per_class", type=int, default=50, show_default=True,
              help="Training examples per class for the probes.")
@click.option("--eval-per-class", "eval_per_class", type=int, default=50, show_default=True,
              help="Validation and test examples per class (at most).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and the samples.")
@click.option("--control/--no-control", default=True, show_default=True,
              help="Also probe the same architecture with random weights.")
@click.option("--out", help="Output folder (default: runs/transferability-<model>-<time>).")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--json", "as_json", is_flag=True, help="Print transferability.json as one JSON object.")
@_data_options
def transferability_cmd(model: str, data: str, out: str | None, as_json: bool, **values: Any) -> None:
    """Layer transferability: a linear probe on pooled features after each layer group, for the
    pre-trained model and a randomly initialised one (the control).

    \b
    Example:
      transferkit explore transferability --model builtin:efficientnet_lite0 --data builtin:mnist --per-class 20
    """
    result = analysis.layer_transferability(model, data, out=out, **_given(values))
    if as_json:
        click.echo(json.dumps({**result.summary, "points": result.points}))
        return
    for p in result.points:
        click.echo(f"{p['init']:>10}  {p['depth']:>2} {p['group']:<14} {p['features']:>5} features  "
                   f"test accuracy {p['test_accuracy']:.4f}")
    if result.summary.get("text"):
        click.echo(result.summary["text"])
    click.echo(f"transferability folder: {result.out_dir}")


@click.command("plot")
@click.argument("run_dir", type=click.Path())
@click.option("--out", help="PNG to write (default: RUN_DIR/progress.png).")
def plot_cmd(run_dir: str, out: str | None) -> None:
    """Loss and accuracy curves of a run (finished or still training), phases and unfreezing marked.

    \b
    Example:
      transferkit plot runs/<run>
    """
    click.echo(str(analysis.plot_run(run_dir, out)))


@click.command("report")
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
    click.echo(str(analysis.write_report(folder, out)))


def register(cli: click.Group) -> None:
    """Add the analysis commands to the ``transferkit`` command group."""
    for command in (efficiency_cmd, explore, plot_cmd, report_cmd):
        cli.add_command(command)
