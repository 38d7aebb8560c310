"""The ``transferkit`` command line. Parses options into configs and calls the public API.

Bad input is reported as one paragraph on standard error with exit status 2 and no traceback
(``--debug`` shows one).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

import click

import transferkit as tk

log = logging.getLogger("transferkit")

# TrainConfig fields that are not plain options: positional-like or handled by hand.
_SKIP_FIELDS = {"model", "data", "out", "pretrained"}


def _base_type(annotation: Any) -> Any:
    """``int | None`` -> int, for building click options from the TrainConfig annotations."""
    hints = typing.get_type_hints(tk.TrainConfig)
    tp = hints[annotation] if isinstance(annotation, str) else annotation
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and args:
        return args[0]
    return tp


def _add_field_options(func: Callable[..., Any], names: Sequence[str]) -> Callable[..., Any]:
    """Add one ``--option`` per named TrainConfig field, with the field's help text and type.

    Every option defaults to ``None`` so that only the options actually given override a
    ``--config`` file or the config's defaults; booleans become ``--x/--no-x``.
    """
    helps = tk.TrainConfig.field_help()
    for name in reversed(list(names)):
        flag = name.replace("_", "-")
        kind = _base_type(name)
        if kind is bool:
            option = click.option(f"--{flag}/--no-{flag}", name, default=None, help=helps[name])
        else:
            option = click.option(f"--{flag}", name, type=kind, default=None, help=helps[name])
        func = option(func)
    return func


def _config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every TrainConfig field as an option, except those ``train`` declares by hand."""
    names = [f.name for f in dataclasses.fields(tk.TrainConfig) if f.name not in _SKIP_FIELDS]
    return _add_field_options(func, names)


def _setup_logging(verbose: bool) -> None:
    """Progress lines on stderr (warnings only with --quiet); run logs always get INFO."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    # Replace console handlers from an earlier call (tests call main() repeatedly in one process).
    log.handlers = [h for h in log.handlers if isinstance(h, logging.FileHandler)]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the traceback of errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and results, no progress log.")
@click.version_option(tk.__version__, prog_name="transferkit")
def cli(debug: bool, quiet: bool) -> None:
    """Adapt pre-trained models to your labelled data.

    \b
    Example:
      transferkit train --model builtin:efficientnet_lite0 --data builtin:mnist
      transferkit predict runs/<run> digit.png
    """
    _setup_logging(not quiet)


@cli.command("models")
@click.argument("pattern", required=False)
@click.option("--available", is_flag=True, help="Only models whose weights are on this machine now.")
def models_cmd(pattern: str | None, available: bool) -> None:
    """List loadable models and whether their weights are available offline.

    \b
    Example:
      transferkit models resnet
      transferkit models --available
    """
    rows = [m for m in tk.list_models(pattern) if m.weights_available or not available]
    if not rows:
        click.echo(f"No model matches {pattern!r}." if pattern else "No models found.")
        return
    width = max(len(m.spec) for m in rows)
    click.echo(f"{'MODEL'.ljust(width)}  MODALITY  WEIGHTS")
    for m in rows:
        weights = "available" if m.weights_available else "download"
        note = f"  ({m.note})" if m.note else ""
        click.echo(f"{m.spec.ljust(width)}  {m.modality.ljust(8)}  {weights}{note}")


def _build_config(config_file: str | None, cli_values: dict[str, Any]) -> tk.TrainConfig:
    given = {k: v for k, v in cli_values.items() if v is not None}
    if config_file:
        base = tk.TrainConfig.load(config_file).to_dict()
        base["out"] = None  # never write into the run the config came from; --out sets a new one
        base.update(given)
        return tk.TrainConfig.from_dict(base)
    missing = [name for name in ("model", "data") if not given.get(name)]
    if missing:
        raise tk.ConfigError(
            f"Missing {' and '.join('--' + m for m in missing)}: give a model spec and a data spec, "
            "e.g. `transferkit train --model builtin:efficientnet_lite0 --data builtin:mnist`, "
            "or a saved --config run.yaml."
        )
    return tk.TrainConfig(**given)


def _print_metrics(metrics: dict[str, Any]) -> None:
    click.echo(f"accuracy: {metrics['accuracy']:.4f}  macro-F1: {metrics['macro_f1']:.4f}  (n={metrics['n']})")


@cli.command("train")
@click.option("--model", "model", help="Model spec, e.g. builtin:efficientnet_lite0, torchvision:resnet18.")
@click.option("--data", "data", help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--out", "out", help="Run folder to create (default: runs/<model>-<strategy>-<time>).")
@click.option("--pretrained/--no-pretrained", "pretrained", default=None,
              help="Start from pre-trained weights (default) or from random weights.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="A config.yaml from a run folder: reproduces that run (options given here override).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue an interrupted run from its folder's last finished epoch.")
@click.option("--json", "as_json", is_flag=True, help="Print the test metrics as one JSON object.")
@_config_options
def train_cmd(config_file: str | None, resume_dir: str | None, as_json: bool, **values: Any) -> None:
    """Adapt a pre-trained model to a labelled dataset and write a run folder.

    \b
    Example:
      transferkit train --model builtin:efficientnet_lite0 --data builtin:mnist --per-class 50
      transferkit train --model builtin:minilm --data news.csv --strategy full --epochs 3
      transferkit train --config runs/<run>/config.yaml --out runs/again
      transferkit train --model builtin:efficientnet_lite0 --data imgs --strategy gradual --lr-decay 0.3
      transferkit train --resume runs/<interrupted run>
    """
    if resume_dir:
        given = sorted(k for k, v in values.items() if v is not None)
        if given or config_file:
            raise tk.ConfigError(
                f"--resume continues a run with its saved config; drop {', '.join('--' + g.replace('_', '-') for g in given) or '--config'}."
            )
        result = tk.resume(resume_dir)
    else:
        result = tk.train(_build_config(config_file, values))
    metrics = result.test_metrics
    if as_json:
        click.echo(json.dumps({"run_dir": str(result.run_dir), **_summary(metrics)}))
        return
    click.echo("test ", nl=False)
    _print_metrics(metrics)
    click.echo(f"run folder: {result.run_dir}")


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "macro_f1", "n", "confusion_matrix", "classes", "strategy", "model",
            "trainable_params", "total_params", "seconds", "data", "split")
    return {k: metrics[k] for k in keys if k in metrics}


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--data", "data", help="Data to score (default: the run's own test split).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
def evaluate_cmd(run_dir: str, data: str | None, as_json: bool, device: str) -> None:
    """Score a finished run on a dataset (accuracy, macro-F1, confusion matrix).

    \b
    Example:
      transferkit evaluate runs/<run> --data path/to/test_images --json
    """
    metrics = tk.evaluate(run_dir, data, device=device)
    if as_json:
        click.echo(json.dumps(_summary(metrics)))
        return
    _print_metrics(metrics)
    classes = metrics["classes"]
    click.echo("confusion matrix (rows: true, columns: predicted):")
    width = max(4, *(len(c) for c in classes))
    click.echo(" " * width + " " + " ".join(c[:width].rjust(width) for c in classes))
    for name, row in zip(classes, metrics["confusion_matrix"]):
        click.echo(name[:width].rjust(width) + " " + " ".join(str(v).rjust(width) for v in row))


def _expand_inputs(inputs: Sequence[str], modality: str) -> list[str]:
    """Text models: ``-`` reads lines from standard input, and a .txt file gives one text per line."""
    if modality != "text":
        return list(inputs)
    texts: list[str] = []
    for item in inputs:
        if item == "-":
            texts += [line.strip() for line in sys.stdin if line.strip()]
        elif item.endswith(".txt") and Path(item).is_file():
            lines = Path(item).read_text(encoding="utf-8", errors="replace").splitlines()
            texts += [line.strip() for line in lines if line.strip()]
        else:
            texts.append(item)
    return texts


@cli.command("predict")
@click.argument("run_dir", type=click.Path())
@click.argument("inputs", nargs=-1, required=True)
@click.option("-k", "--top-k", default=3, show_default=True, help="How many labels to show per input.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input (input, label, score, top_k).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
def predict_cmd(run_dir: str, inputs: tuple[str, ...], top_k: int, as_json: bool, device: str) -> None:
    """Top-k labels for image files, or for texts (arguments, lines of a .txt file, or - for stdin).

    RUN_DIR is a run folder or a file written by `transferkit export` (.onnx, .pt, .ts; its
    sidecar gives the preprocessing and labels).

    \b
    Example:
      transferkit predict runs/<run> cat.jpg dog.png --top-k 3
      transferkit predict runs/<text-run> "Shares fell sharply today" --json
      transferkit predict runs/<run>/export/model.onnx cat.jpg
    """
    if Path(run_dir).is_file() or Path(run_dir).suffix in (".onnx", ".pt", ".ts"):  # an exported model
        exported = tk.load_exported(run_dir, "cuda" if device.startswith("cuda") else "cpu")
        texts = _expand_inputs(inputs, exported.modality)
        results = exported.predict(texts, top_k=top_k)
    else:
        run = tk.load_run(run_dir, device)
        texts = _expand_inputs(inputs, run.model.spec.modality)
        results = tk.predict(run, texts, top_k=top_k)
    for result in results:
        if as_json:
            click.echo(json.dumps(result))
            continue
        shown = ", ".join(f"{t['label']} {t['score']:.3f}" for t in result["top_k"])
        label = result["input"] if len(result["input"]) <= 60 else result["input"][:57] + "..."
        click.echo(f"{label}\t{shown}")


def _field_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--option`` per named TrainConfig field (help and type from the field), default None."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        return _add_field_options(func, names)
    return decorate


_SPLIT_FIELDS = ("per_class", "seed", "val_fraction", "test_fraction", "text_column", "label_column",
                 "path_column", "max_length", "device", "weights")


@cli.command("compare")
@click.option("--model", "model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", "data", required=True, help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--strategies", "strategies", help="Comma-separated strategies (default: all of them).")
@click.option("--out", "out", help="Comparison folder (default: runs/compare-<model>-<time>).")
@click.option("--time-budget", "time_budget", type=float,
              help="Seconds for the whole comparison, shared equally by the strategies still to run.")
@click.option("--pretrained/--no-pretrained", "pretrained", default=None,
              help="Start from pre-trained weights (default) or from random weights.")
@click.option("--json", "as_json", is_flag=True, help="Print compare.json's rows as one JSON array.")
@_field_options("epochs", "batch_size", *_SPLIT_FIELDS)
def compare_cmd(model: str, data: str, strategies: str | None, out: str | None,
                time_budget: float | None, as_json: bool, **values: Any) -> None:
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
    result = tk.compare(model, data, strategies=names, out=out, time_budget=time_budget,
                        **{k: v for k, v in values.items() if v is not None})
    if as_json:
        click.echo(json.dumps(result.rows))
        return
    click.echo(result.markdown)
    click.echo(f"comparison folder: {result.out_dir}")


@cli.command("recommend")
@click.option("--model", "model", required=True, help="Model spec, e.g. builtin:efficientnet_lite0.")
@click.option("--data", "data", required=True, help="Folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
@click.option("--pretrained/--no-pretrained", "pretrained", default=None,
              help="Start from pre-trained weights (default) or from random weights.")
@click.option("--explain", is_flag=True, help="Also print the measured inputs and the whole rule table.")
@click.option("--json", "as_json", is_flag=True, help="Print the recommendation as one JSON object.")
@_field_options(*_SPLIT_FIELDS)
def recommend_cmd(model: str, data: str, explain: bool, as_json: bool, **values: Any) -> None:
    """Recommend a strategy and its settings from measured data size, model size and feature fit.

    \b
    Example:
      transferkit recommend --model builtin:efficientnet_lite0 --data builtin:digits --per-class 10
      transferkit recommend --model builtin:minilm --data news.csv --explain
    """
    given = {k: v for k, v in values.items() if v is not None}
    rec = tk.recommend(model, data, **given)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(rec)))
        return
    click.echo(f"recommended strategy: {rec.strategy}")
    click.echo(f"command: {rec.command}")
    click.echo("why:")
    for reason in rec.reasons:
        click.echo(f"  - {reason}")
    if explain:
        click.echo(rec.explanation())


# Commands that live in their own modules (each module defines click commands and a
# ``register(cli)`` that adds them).
from . import cli_lora  # noqa: E402 - registered after the core commands
cli_lora.register(cli)
from . import cli_export  # noqa: E402 - registered after the core commands
cli_export.register(cli)
from . import cli_analysis  # noqa: E402 - registered after the core commands
cli_analysis.register(cli)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI and turn errors into one paragraph and an exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="transferkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except tk.TransferkitError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:
        if debug:
            raise
        click.echo(f"error: {exc.strerror or exc} ({getattr(exc, 'filename', '') or ''}). "
                   "Check the path and its permissions.", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
