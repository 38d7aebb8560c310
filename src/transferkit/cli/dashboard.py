"""``transferkit dashboard``: serve the local web app over run folders."""

from __future__ import annotations

import click

from transferkit import dashboard

from .app import cli

__all__ = ["dashboard_cmd"]


@cli.command("dashboard")
@click.option("--runs", "roots", multiple=True, type=click.Path(file_okay=False), show_default=True,
              help="Folder holding run folders (repeat for several); default: runs.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: a free one).")
@click.option("--open/--no-open", "open_browser", default=False, show_default=True,
              help="Open the address in a browser.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Runs started from the page that may train at once (the rest wait in a queue).")
def dashboard_cmd(roots: tuple[str, ...], host: str, port: int, open_browser: bool, jobs: int) -> None:
    """Serve the dashboard: runs, live fine-tuning progress, explorers, starting runs.

    It prints one line, `dashboard: http://HOST:PORT/?token=TOKEN`; every request needs that
    token (a new one at each start). Stop it with Ctrl-C.

    \b
    Example:
      transferkit dashboard --runs runs --port 0
    """
    folders = list(roots) or ["runs"]
    if not roots:
        from pathlib import Path

        Path("runs").mkdir(exist_ok=True)  # the default root: where `transferkit train` writes
    dashboard.serve(folders, host=host, port=port, open_browser=open_browser,
                    announce=lambda line: click.echo(line, nl=True) or _flush(),
                    make_jobs=dashboard.job_queue_factory(jobs))


def _flush() -> None:
    import sys

    sys.stdout.flush()  # the line is read by scripts waiting for the address
