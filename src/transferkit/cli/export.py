"""The ``export`` command: a run folder -> a verified file in one of the registered export formats;
``latency``: every exported file of a run timed against the eager model."""

from __future__ import annotations

import json
from typing import Any

import click

import transferkit as tk
from transferkit import workflows

from .app import cli
from .options import COUNT, FiniteFloat

__all__ = ["export_cmd", "latency_cmd"]

_FORMATS = [tk.EXPORT_FORMATS.get(name) for name in tk.EXPORT_FORMATS.names()]


@cli.command("export")
@click.argument("run_dir", type=click.Path())
@click.option("--format", "fmt", type=click.Choice([f.name for f in _FORMATS]), default=tk.DEFAULT_EXPORT_FORMAT,
              show_default=True, help=", ".join(f.help for f in _FORMATS) + ".")
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="File to write (default: RUN_DIR/export/" + ", ".join(f.default_file for f in _FORMATS) + ").")
@click.option("--opset", type=click.IntRange(min=7), help="ONNX opset (default: the exporter's).")
@click.option("--dynamic-batch/--fixed-batch", "dynamic_batch", default=True, show_default=True,
              help="Any batch size (and, for text, any length), or batches of exactly one.")
@click.option("--quantize", type=click.Choice(["int8"]),
              help="ONNX only: ONNX Runtime dynamic int8 quantization; reports the validation accuracy change.")
@click.option("--tolerance", type=FiniteFloat(0), default=1e-4, show_default=True,
              help="Largest absolute logit difference from the eager model that verification accepts.")
@click.option("--verify/--no-verify", "verify", default=True, show_default=True,
              help="Run the file on validation examples and compare with the eager model.")
@click.option("--samples", type=COUNT, default=16, show_default=True, help="Validation examples used to verify.")
@click.option("--merge/--no-merge", "merge", default=True, show_default=True,
              help="LoRA runs: export the merged model, or the adapter as separate low-rank layers.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--latency", "latency", is_flag=True,
              help="Then time every exported file of the run against the eager model at batch 1 and 32 "
                   "(as `transferkit latency`; saved as RUN_DIR/export/latency.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def export_cmd(run_dir: str, fmt: str, as_json: bool, latency: bool, **options: Any) -> None:
    """Export a trained run for deployment, verified against the eager model.

    Writes the file, a JSON sidecar beside it (preprocessing, labels, version, verification)
    and, for text models, the tokenizer folder. `transferkit predict FILE INPUT...` runs it.

    \b
    Example:
      transferkit export runs/<run> --format onnx
      transferkit export runs/<run> --format onnx --quantize int8
      transferkit export runs/<run> --format torchscript --out model.pt
      transferkit predict runs/<run>/export/model.onnx cat.jpg
    """
    result = tk.export_run(run_dir, fmt, **options)
    report = tk.measure_latency(run_dir) if latency else None
    if as_json:
        click.echo(json.dumps({**result.to_dict(), **({"latency": report.to_dict()} if report else {})}))
        return
    click.echo(f"exported {result.format}: {result.path} ({result.size_mb:.1f} MB), sidecar {result.sidecar.name}")
    if result.verification is not None:
        click.echo(result.verification.summary())
    quant = result.quantization
    if quant and "val_accuracy_int8" in quant:
        click.echo(f"int8: validation accuracy {quant['val_accuracy_fp32']:.4f} -> {quant['val_accuracy_int8']:.4f} "
                   f"({100 * quant['accuracy_change']:+.2f} points, n={quant['n']})")
    if report is not None:
        _print_latency(report)


@cli.command("latency")
@click.argument("run_dir", type=click.Path())
@click.option("--batch-sizes", "batch_sizes", default="1,32", show_default=True,
              help="Comma-separated batch sizes to time.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def latency_cmd(run_dir: str, batch_sizes: str, as_json: bool) -> None:
    """Time the eager model and every exported file of a run (RUN_DIR/export/) at each batch size:
    the median of repeated calls after warm-up, on synthetic preprocessed inputs. Saved as
    RUN_DIR/export/latency.json.

    \b
    Example:
      transferkit export runs/<run> --format onnx
      transferkit latency runs/<run> --batch-sizes 1,8,32
    """
    report = tk.measure_latency(run_dir, workflows.parse_int_list(batch_sizes, "batch_sizes"))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    _print_latency(report)


def _print_latency(report: tk.LatencyReport) -> None:
    """One line per model: milliseconds per batch at each size, and the speed-up over eager."""
    eager = {row.device: row for row in report.rows if row.name == "eager"}
    for row in report.rows:
        if row.error:
            click.echo(f"{row.name:<12} {row.device:<5} {row.error}")
            continue
        cells = []
        for size in report.batch_sizes:
            ms, ref = row.ms.get(str(size)), eager.get(row.device)
            ratio = "" if row.name == "eager" or ref is None or not ms else f" ({ref.ms[str(size)] / ms:.2f}x eager)"
            cells.append(f"batch {size}: {ms:.2f} ms{ratio}" if ms is not None else f"batch {size}: -")
        click.echo(f"{row.name:<12} {row.device:<5} " + ", ".join(cells))
