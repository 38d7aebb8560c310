"""Choosing a strategy: ``compare`` (train several on the same splits) and ``recommend``."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

import transferkit as tk

from .app import cli
from .options import (
    POSITIVE_SECONDS,
    data_from,
    data_options,
    field_options,
    nproc_option,
)

__all__ = ["compare_cmd", "recommend_cmd"]

# How each run loads its model: shared by every strategy of a comparison, and by recommend.
_MODEL_FIELDS = ("max_length", "device", "weights")


@cli.command("compare")
@click.option("--model", "model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", "data", required=True, help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--strategies", "strategies", help="Comma-separated strategies (default: all of them).")
@click.option("--out", "out", help="Comparison folder (default: runs/compare-<model>-<time>).")
@click.option("--time-budget", "time_budget", type=POSITIVE_SECONDS,
              help="Seconds for the whole comparison, shared equally by the strategies still to run.")
@click.option("--pretrained/--no-pretrained", "pretrained", default=None,
              help="Start from pre-trained weights (default) or from random weights.")
@click.option("--json", "as_json", is_flag=True, help="Print compare.json's rows as one JSON array.")
@click.option("--check", is_flag=True, help="Only check the options as each run would before it starts, print "
                                            "ok and exit (nothing is loaded or written).")
@nproc_option("each strategy's run")
@field_options(("epochs", "batch_size", *_MODEL_FIELDS, "precision", "class_weights"))
@data_options()
def compare_cmd(model: str, data: str, strategies: str | None, out: str | None,
                time_budget: float | None, as_json: bool, check: bool, nproc: int | None, **values: Any) -> None:
    """Train several strategies on the same splits and compare accuracy, size, time and memory.

    Writes compare.json, compare.md, val_accuracy.png and a `best` link to the best run.
    --epochs applies to the strategies that train the backbone; the feature-extraction and
    linear-probe heads train on cached features with their own defaults.

    \b
    Example:
      transferkit compare --model builtin:efficientnet_lite0 --data builtin:digits --per-class 10
      transferkit compare --model builtin:minilm --data news.csv --strategies feature-extraction,full --json
    """
    names = strategies.split(",") if strategies is not None else None
    options, rest = data_from(data, values)
    if check:  # each strategy's run config, checked as train checks it
        for name in names or tk.strategy_names():
            tk.check_config(tk.TrainConfig(model=model, strategy=name.strip(), **dataclasses.asdict(options), **rest))
        click.echo("ok")
        return
    result = tk.compare(model, options, strategies=names, out=out, time_budget=time_budget, nproc=nproc, **rest)
    if as_json:
        click.echo(json.dumps(result.rows))
        return
    click.echo(result.markdown)
    click.echo(f"comparison folder: {result.out_dir}")


@cli.command("recommend")
@click.option("--model", "model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", "data", required=True, help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--race/--no-race", "race", default=True,
              help="Race the strategies on the data by successive halving and pick on validation "
                   "accuracy (default), or give the rule table's answer alone, in seconds.")
@click.option("--budget", "budget", type=POSITIVE_SECONDS, metavar="SECONDS",
              help=f"Seconds for the race (default: {tk.workflows.RACE_BUDGET_FACTOR:g} x one "
                   "feature-extraction run on this data, at most a third of the estimated cost of "
                   "training every strategy in full).")
@click.option("--out", "out", help="Keep the race's run folders and race.json here (default: a temporary folder).")
@click.option("--pretrained/--no-pretrained", "pretrained", default=None,
              help="Start from pre-trained weights (default) or from random weights.")
@click.option("--explain", is_flag=True, help="Also print the measured inputs and the whole rule table.")
@click.option("--json", "as_json", is_flag=True, help="Print the recommendation (and the race) as one JSON object.")
@field_options((*_MODEL_FIELDS, "precision", "class_weights"))
@data_options()
def recommend_cmd(model: str, data: str, race: bool, budget: float | None, out: str | None, explain: bool,
                  as_json: bool, **values: Any) -> None:
    """Recommend a strategy and its settings: the rule table's advice (measured data size, model
    size and feature fit) as the prior, then a short race of the strategies on your data.

    The race trains every strategy briefly (1 epoch; head-only strategies in full), keeps the top
    third with 3x the epochs, and so on within --budget; the pick is decided on validation
    accuracy, ties going to the cheaper strategy. The output lists every run.

    \b
    Example:
      transferkit recommend --model builtin:efficientnet_lite0 --data builtin:digits --per-class 10
      transferkit recommend --model builtin:efficientnet_lite0 --data my_images --budget 600 --out race
      transferkit recommend --model builtin:minilm --data news.csv --no-race --explain
    """
    options, rest = data_from(data, values)
    rec = tk.recommend(model, options, race=race, budget=budget, out=out, **rest)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(rec)))
        return
    click.echo(f"recommended strategy: {rec.strategy}")
    click.echo(f"command: {rec.command}")
    click.echo("why:")
    for reason in rec.reasons:
        click.echo(f"  - {reason}")
    if rec.race is not None:
        click.echo(f"race (validation accuracy; {rec.race.seconds:.0f} s of a {rec.race.budget:.0f} s budget):")
        for line in rec.race.table().splitlines():
            click.echo(f"  {line}")
    if explain:
        click.echo(rec.explanation())
