"""Commands around one run: ``models``, ``strategies``, ``train``, ``evaluate``, ``predict``."""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import click

import transferkit as tk

from .app import cli
from .options import nproc_option, train_options

__all__ = ["models_cmd", "strategies_cmd", "train_cmd", "evaluate_cmd", "predict_cmd"]


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


@cli.command("strategies")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per strategy.")
def strategies_cmd(as_json: bool) -> None:
    """List the adaptation strategies: what trains, and their defaults for images and text.

    \b
    Example:
      transferkit strategies
      transferkit train --model builtin:minilm --data news.csv --strategy lp-ft
    """
    keys = ("epochs", "lr", "patience", "weight_decay")
    for name in tk.strategy_names():
        cls = tk.strategy_class(name)
        by_modality = {m: tk.TrainConfig(model="-", data="-", strategy=name).resolved(m) for m in ("image", "text")}
        if as_json:
            click.echo(json.dumps({"strategy": name, "summary": cls.summary(),
                                   "phases": [str(p.record) for p in cls.phases],
                                   "uses_feature_cache": cls.uses_feature_cache(),
                                   "defaults": {m: {k: getattr(c, k) for k in keys} for m, c in by_modality.items()}}))
            continue
        image, text = by_modality["image"], by_modality["text"]
        rates = f"lr {image.lr:g}" + (f" (text {text.lr:g})" if text.lr != image.lr else "")
        click.echo(f"{name:<20} {cls.summary()}")
        click.echo(f"{'':<20} phases: {', '.join(str(p.record) for p in cls.phases)}; {image.epochs} epochs, "
                   f"{rates}, patience {image.patience}, weight decay {image.weight_decay:g}")


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
    balanced = metrics.get("balanced_accuracy")  # absent from runs that predate it
    click.echo(f"accuracy: {metrics['accuracy']:.4f}  macro-F1: {metrics['macro_f1']:.4f}  "
               + (f"balanced accuracy: {balanced:.4f}  " if balanced is not None else "") + f"(n={metrics['n']})")


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
@click.option("--check", "check", is_flag=True,
              help="Only check the options as train does before it starts (config, device, data source, "
                   "model name), print ok and exit: nothing is loaded or written.")
@nproc_option("the run")
@train_options
def train_cmd(config_file: str | None, resume_dir: str | None, as_json: bool, check: bool,
              nproc: int | None, **values: Any) -> None:
    """Adapt a pre-trained model to a labelled dataset and write a run folder.

    \b
    Example:
      transferkit train --model builtin:efficientnet_lite0 --data builtin:mnist --per-class 50
      transferkit train --model builtin:minilm --data news.csv --strategy full --epochs 3
      transferkit train --config runs/<run>/config.yaml --out runs/again
      transferkit train --model builtin:efficientnet_lite0 --data imgs --strategy gradual --lr-decay 0.3
      transferkit train --resume runs/<interrupted run>
      transferkit train --model builtin:minilm --data news.csv --check
      transferkit train --model builtin:efficientnet_lite0 --data imgs --strategy full --nproc 2
      torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
          -m transferkit train --model timm:vit_base_patch16_224 --data imgs --strategy full
    """
    if check:
        if resume_dir:
            raise tk.ConfigError("--check checks the options of a new run; drop --resume (a resumed run "
                                 "keeps the options it was started with).")
        tk.check_config(_build_config(config_file, values))
        click.echo("ok")
        return
    if resume_dir:
        given = sorted(k for k, v in values.items() if v is not None)
        if given or config_file:
            raise tk.ConfigError(
                f"--resume continues a run with its saved config; drop {', '.join('--' + g.replace('_', '-') for g in given) or '--config'}."
            )
        result = tk.resume(resume_dir, nproc=nproc)
    else:
        result = tk.train(_build_config(config_file, values), nproc=nproc)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone prints the result
        return
    metrics = result.test_metrics
    if as_json:
        click.echo(json.dumps({"run_dir": str(result.run_dir), **_summary(metrics)}))
        return
    click.echo("test ", nl=False)
    _print_metrics(metrics)
    click.echo(f"run folder: {result.run_dir}")


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy", "macro_f1", "balanced_accuracy", "n", "confusion_matrix", "classes", "strategy", "model",
            "trainable_params", "total_params", "seconds", "data", "split")
    return {k: metrics[k] for k in keys if k in metrics}


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--data", "data", help="Data to score (default: the run's own test split).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--text-column", metavar="NAME", help="Column of a table --data holding the text (default: the run's).")
@click.option("--label-column", metavar="NAME", help="Column of a table --data holding the label (default: the run's).")
@click.option("--path-column", metavar="NAME", help="Column of a table --data holding image paths (default: the run's).")
@click.option("--max-image-pixels", type=click.IntRange(min=1), default=None,
              help="Images with more pixels (width x height) are skipped as too large (default: the run's cap).")
@click.option("--max-bad-fraction", type=click.FloatRange(0, 1), default=None,
              help="The largest share of images that may be skipped as unreadable or too large (default: the run's).")
def evaluate_cmd(run_dir: str, data: str | None, as_json: bool, device: str, text_column: str | None,
                 label_column: str | None, path_column: str | None, max_image_pixels: int | None,
                 max_bad_fraction: float | None) -> None:
    """Score a finished run on a dataset (accuracy, macro-F1, balanced accuracy, confusion matrix).

    \b
    Example:
      transferkit evaluate runs/<run> --data path/to/test_images --json
      transferkit evaluate runs/<text-run> --data new.csv --text-column review --label-column stars
    """
    metrics = tk.evaluate(run_dir, data, device=device, text_column=text_column, label_column=label_column,
                          path_column=path_column, max_image_pixels=max_image_pixels,
                          max_bad_fraction=max_bad_fraction)
    if as_json:
        click.echo(json.dumps(_summary(metrics)))
        return
    _print_metrics(metrics)
    scored = ("the run's own test split (the data it trained on: its training examples are not scored)"
              if metrics["split"] == "run test split" else f"all of {metrics['data']}")
    click.echo(f"scored: {scored}")
    classes = metrics["classes"]
    click.echo("confusion matrix (rows: true, columns: predicted):")
    width = max(4, *(len(c) for c in classes))
    click.echo(" " * width + " " + " ".join(c[:width].rjust(width) for c in classes))
    for name, row in zip(classes, metrics["confusion_matrix"]):
        click.echo(name[:width].rjust(width) + " " + " ".join(str(v).rjust(width) for v in row))


def _expand_inputs(inputs: Sequence[str], modality: str, column: str | None) -> tuple[list[str], list[str | None]]:
    """``(inputs, names)``. A table (.csv, .tsv, .jsonl) gives the cells of one column (texts,
    named by file and row, or image paths). Text models: ``-`` reads lines from standard input,
    a .txt file gives one text per line, and a folder one text per .txt file below it (as
    training reads a class folder), named by its path. Image inputs pass as given (predict
    expands their folders), with no names."""
    items: list[str] = []
    names: list[str | None] = []
    for item in inputs:
        path = Path(item)
        if path.suffix.lower() in tk.TABLE_SUFFIXES and path.is_file():
            found, found_names = tk.table_inputs(path, modality, column)
        elif modality != "text":
            found, found_names = [item], [None]
        elif item == "-":
            found = [line.strip() for line in sys.stdin if line.strip()]
            found_names = [None] * len(found)
        elif path.is_dir():
            files = _text_files(path)
            found = [f.read_text(encoding="utf-8", errors="replace").strip() for f in files]
            found_names = [str(f) for f in files]
        elif path.suffix.lower() == ".txt" and path.is_file():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            found = [line.strip() for line in lines if line.strip()]
            found_names = [None] * len(found)
        elif path.suffix.lower() in (".txt", *tk.TABLE_SUFFIXES) and not any(c.isspace() for c in item):
            raise tk.DataError(f"{item} looks like a file name, but there is no such file. Fix the path; to "
                               f"predict that very string as a text, pass it on standard input: echo '{item}' | "
                               "transferkit predict RUN -")
        else:
            found, found_names = [item], [None]
        items += found
        names += found_names
    return items, (names if modality == "text" else [])


def _text_files(folder: Path) -> list[Path]:
    """The .txt files below ``folder`` (hidden ones left out), sorted; a clean error if none."""
    files = sorted(p for p in folder.rglob("*.txt")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise tk.DataError(f"The folder {folder} holds no .txt files; give texts, a .txt file with one "
                           "text per line, or a folder of .txt files (one text each).")
    return files


@cli.command("predict")
@click.argument("run_dir", type=click.Path())
@click.argument("inputs", nargs=-1, required=True)
@click.option("-k", "--top-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many labels to show per input (at least 1).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input (input, label, score, top_k).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--max-image-pixels", type=click.IntRange(min=1), default=None,
              help="Images with more pixels (width x height) are not decoded; default the run's cap "
                   "(89,478,485, PIL's, unless it was trained with another; an exported file: PIL's).")
@click.option("--column", default=None, metavar="NAME",
              help="The column a table input (.csv, .tsv, .jsonl) is read from; default the run's "
                   "--text-column or --path-column (text or path for an exported file).")
def predict_cmd(run_dir: str, inputs: tuple[str, ...], top_k: int, as_json: bool, device: str,
                max_image_pixels: int | None, column: str | None) -> None:
    """Top-k labels for image files (or every image in a folder), or for texts (arguments, lines
    of a .txt file, - for stdin, or a folder of .txt files, one text each); a table (.csv, .tsv,
    .jsonl) gives the texts or image paths of one column, no label needed.

    RUN_DIR is a run folder or a file written by `transferkit export` (.onnx, .pt, .ts; its
    sidecar gives the preprocessing and labels). Images that cannot be read are listed after
    the others' predictions, with exit status 2.

    \b
    Example:
      transferkit predict runs/<run> cat.jpg dog.png --top-k 3
      transferkit predict runs/<run> photos/ --json > predictions.jsonl
      transferkit predict runs/<text-run> "Shares fell sharply today" --json
      transferkit predict runs/<text-run> new_reviews.csv --column review --json > predictions.jsonl
      transferkit predict runs/<run>/export/model.onnx cat.jpg
    """
    unreadable = None
    try:
        modality, results, names = _predictions(run_dir, inputs, top_k, device, max_image_pixels, column)
    except tk.UnreadableImagesError as exc:  # print the others' predictions, then the error
        modality, results, names, unreadable = "image", exc.results, [], exc
    for result, name in itertools.zip_longest(results, names):  # images: no names
        if name is not None:  # a text read from a file of a folder: the file names it
            result["input"] = name
        if as_json:
            click.echo(json.dumps(result))
            continue
        shown = ", ".join(f"{t['label']} {t['score']:.3f}" for t in result["top_k"])
        click.echo(f"{_shortened(result['input'], is_path=modality == 'image' or name is not None)}\t{shown}")
    if unreadable is not None:
        raise unreadable  # one paragraph on stderr, exit status 2, after the rest was printed


def _predictions(run_dir: str, inputs: tuple[str, ...], top_k: int, device: str, max_image_pixels: int | None,
                 column: str | None) -> tuple[str, list[dict], list[str | None]]:
    """(modality, predictions, names of texts read from files and tables) from a run folder or
    an exported file."""
    if Path(run_dir).is_file() or Path(run_dir).suffix in (".onnx", ".pt", ".ts"):  # an exported model
        exported = tk.load_exported(run_dir, "cuda" if device.startswith("cuda") else "cpu")
        texts, names = _expand_inputs(inputs, exported.modality, column)
        return exported.modality, exported.predict(texts, top_k=top_k, max_image_pixels=max_image_pixels), names
    run = tk.load_run(run_dir, device)
    modality, options = run.model.spec.modality, run.config.data_options
    texts, names = _expand_inputs(inputs, modality, column or (
        options.text_column if modality == "text" else options.path_column))
    return modality, tk.predict(run, texts, top_k=top_k, max_image_pixels=max_image_pixels), names


def _shortened(item: str, is_path: bool, width: int = 60) -> str:
    """An input as a column: a long path keeps its end (the file name tells files apart), a
    long text its start."""
    if len(item) <= width:
        return item
    return "..." + item[-(width - 3):] if is_path else item[: width - 3] + "..."
