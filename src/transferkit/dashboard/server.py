"""Start the dashboard: bind the socket (``--port 0``: a free port), print the one line with the
address and token, optionally open a browser, and serve with uvicorn until interrupted."""

from __future__ import annotations

import secrets
import socket
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from transferkit import ConfigError

from .app import create_app
from .security import Gate, allowed_hosts

__all__ = ["Dashboard", "serve", "start"]


@dataclass
class Dashboard:
    """A started dashboard: its address (``url`` includes the token) and how to stop it."""

    url: str
    host: str
    port: int
    token: str
    server: uvicorn.Server
    thread: threading.Thread | None
    gate: Gate

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        jobs = self.gate.app.state.context.jobs
        if jobs is not None and hasattr(jobs, "shutdown"):
            jobs.shutdown()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Choose another --port "
            "(--port 0 picks a free one) or --host."
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _prepare(roots: list[str | Path], host: str, port: int, jobs: Any,
             make_jobs: Callable[[list[Path]], Any] | None) -> tuple[Dashboard, socket.socket]:
    """Check the roots, bind the socket, build the app: nothing is served yet."""
    for root in roots:
        if not Path(root).is_dir():
            raise ConfigError(f"--runs {root}: no such folder. Give folders that hold run folders "
                              "(`transferkit train` writes them under runs/ by default).")
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)
    if jobs is None and make_jobs is not None:
        jobs = make_jobs([Path(r).resolve() for r in roots])
    gate = create_app(list(roots), token, jobs=jobs)
    gate.allowed, gate.port = allowed_hosts(host, bound_port), bound_port
    config = uvicorn.Config(gate, log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                            lifespan="off")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}/?token={token}"
    return Dashboard(url, host, bound_port, token, uvicorn.Server(config), None, gate), sock


def start(roots: list[str | Path], *, host: str = "127.0.0.1", port: int = 8765, jobs: Any = None,
          make_jobs: Callable[[list[Path]], Any] | None = None) -> Dashboard:
    """Serve in a background thread (tests, notebooks); ``stop()`` ends it.

    Example:
        >>> d = start(["runs"], port=0)  # doctest: +SKIP
        >>> d.url  # doctest: +SKIP
        'http://127.0.0.1:40123/?token=...'
        >>> d.stop()  # doctest: +SKIP
    """
    dashboard, sock = _prepare(roots, host, port, jobs, make_jobs)
    dashboard.thread = threading.Thread(target=dashboard.server.run, kwargs={"sockets": [sock]},
                                        daemon=True, name="dashboard")
    dashboard.thread.start()
    return dashboard


def serve(roots: list[str | Path], *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False,
          announce: Callable[[str], None] = print, make_jobs: Callable[[list[Path]], Any] | None = None) -> None:
    """Serve in the foreground until Ctrl-C; ``announce`` gets the one ``dashboard: URL`` line."""
    dashboard, sock = _prepare(roots, host, port, None, make_jobs)
    announce(f"dashboard: {dashboard.url}")
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(dashboard.url,)).start()
    try:
        dashboard.server.run(sockets=[sock])
    finally:
        jobs = dashboard.gate.app.state.context.jobs
        if jobs is not None and hasattr(jobs, "shutdown"):
            jobs.shutdown()
