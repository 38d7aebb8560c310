"""The ``transferkit`` command line. Parses options into configs and calls the public API
(``transferkit`` and ``transferkit.workflows`` only; import-linter checks it).

Bad input is reported as one paragraph on standard error with exit status 2 and no traceback
(``--debug`` shows one). One module per command group adds its commands to :data:`cli`.
"""

from __future__ import annotations

import errno
import sys
from typing import Sequence

import click

import transferkit as tk

from . import choose, dashboard, denoiser, explore, export, restore, run  # noqa: F401 - each adds its commands to `cli`
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
        click.echo(f"error: {_one_paragraph(str(exc))}", err=True)
        return 2
    except OSError as exc:  # a file operation outside transferkit's own writers: name it too
        if debug:
            raise
        error = tk.file_access_error(exc, _operation(exc))
        click.echo(f"error: {_one_paragraph(str(error))}", err=True)
        return 2
    return 0


def _one_paragraph(text: str) -> str:
    """Messages that quote a library's multi-line text still print as one paragraph."""
    return " ".join(text.split())


# Function names in an OSError's traceback -> the operation that failed (innermost match wins).
_OPERATIONS = {
    "mkdir": "create the folder", "makedirs": "create the folder", "mkdtemp": "create a folder in",
    "rmtree": "remove", "unlink": "remove", "remove": "remove", "rmdir": "remove",
    "iterdir": "list the folder", "scandir": "list the folder", "listdir": "list the folder",
    "glob": "list the folder", "copyfile": "copy", "copy2": "copy", "copytree": "copy",
    "replace": "rename", "rename": "rename", "move": "move",
    "write_text": "write", "write_bytes": "write", "save_file": "write", "savefig": "write",
    "save": "write", "dump": "write", "symlink_to": "create the link",
    "read_text": "read", "read_bytes": "read", "load_file": "read", "load": "read",
    "safe_load": "read", "stat": "read",
}
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _operation(exc: OSError) -> str:
    """What was being done when ``exc`` was raised, from its traceback (``open`` by its mode)."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        name = frame.f_code.co_name
        if name == "open":
            mode = str(frame.f_locals.get("mode", "r"))
            return "write" if any(c in mode for c in "wax+") else "read"
        if name in _OPERATIONS:
            return _OPERATIONS[name]
    return "write" if exc.errno in _WRITE_ERRNOS else "access"
