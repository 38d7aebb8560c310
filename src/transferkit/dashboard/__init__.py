"""``transferkit dashboard``: a local web app over the run folders (Runs, live fine-tuning
progress, the explorers, starting runs), served by uvicorn on this machine only.

Every request needs the start's random token; the server answers only to its own address and
makes the browser load nothing from anywhere else (see :mod:`.security`). It reads folders through
the public API (``transferkit.workflows``) and writes into a run only through its job queue.

Example:
    >>> from transferkit.dashboard import start
    >>> d = start(["runs"], port=0)  # doctest: +SKIP
    >>> print(d.url)  # doctest: +SKIP
    http://127.0.0.1:40123/?token=...
    >>> d.stop()  # doctest: +SKIP
"""

from .app import create_app
from .jobs import job_queue_factory
from .server import Dashboard, serve, start

__all__ = ["Dashboard", "create_app", "job_queue_factory", "serve", "start"]
