"""The ``transferkit`` command group; the command modules add their commands to it."""

from __future__ import annotations

import logging
import sys

import click

import transferkit as tk

__all__ = ["cli", "log"]

log = logging.getLogger("transferkit")


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
