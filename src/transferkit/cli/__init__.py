"""The ``transferkit`` command line. Parses options into configs and calls the public API
(``transferkit`` and ``transferkit.workflows`` only; import-linter checks it).

Bad input is reported as one paragraph on standard error with exit status 2 and no traceback
(``--debug`` shows one). One module per command group adds its commands to :data:`cli`.
"""

from __future__ import annotations

import sys
from typing import Sequence

import click

import transferkit as tk

from . import choose, explore, export, run  # noqa: F401 - each adds its commands to `cli`
from .app import cli
from .run import train_cmd

__all__ = ["cli", "main", "train_cmd"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI and turn errors into one paragraph and an exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="transferkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:  # a bad option value or a missing option: one paragraph too
        command = exc.ctx.command_path if exc.ctx is not None else "transferkit"
        click.echo(f"error: {' '.join(exc.format_message().split())} Run `{command} --help` for the "
                   "options.", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
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
