"""The dashboard's ASGI app: pages (HTML shells filled by their script from the JSON API), the
Runs list, a run's details and live progress (server-sent events), and files of the roots.

Each page module adds its routes through :data:`ROUTE_MODULES`; they share one
:class:`Context` (the roots, the job queue, the templates) kept in ``app.state.context``.
"""

from __future__ import annotations

import asyncio
import json
import math
import mimetypes
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from transferkit import workflows

from .explorers import routes as explorer_routes
from .folders import NotInRoots, Roots
from .restore_pages import routes as restore_page_routes
from .run_pages import routes as run_page_routes
from .security import Gate
from .start_run import routes as start_run_routes

__all__ = ["ROUTE_MODULES", "Context", "create_app", "folder_or_404", "json_response", "page"]

_PACKAGE = "transferkit.dashboard"
#: How often a live stream looks at metrics.jsonl (the page shows a new line within 2 s).
POLL_SECONDS = 0.25
_HEARTBEAT_SECONDS = 15.0


@dataclass
class Context:
    """What every route needs: the roots, the templates and the (optional) job queue."""

    roots: Roots
    templates: jinja2.Environment
    jobs: Any = None  # a JobQueue, set by create_app
    extra: dict[str, Any] = field(default_factory=dict)


def _clean(value: Any) -> Any:
    """JSON without NaN or infinity (which browsers' JSON.parse rejects): they become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def json_response(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_clean(value), status_code=status)


def error_response(message: str, status: int = 400) -> JSONResponse:
    """A one-paragraph error, as the CLI prints it, for the page to show."""
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def page(request: Request, template: str, title: str, **values: Any) -> HTMLResponse:
    context: Context = request.app.state.context
    text = context.templates.get_template(template).render(title=title, **values)
    return HTMLResponse(text)


def folder_or_404(request: Request, key: str = "id") -> tuple[str, Path]:
    context: Context = request.app.state.context
    folder_id = request.path_params[key]
    return folder_id, context.roots.folder(folder_id)


def _summary_dict(roots: Roots, summary: workflows.FolderSummary,
                  real_parents: dict[Path, Path] | None = None) -> dict[str, Any]:
    values = summary.to_dict()
    values["id"] = roots.id_of(summary.path, real_parents)
    values["parent_id"] = roots.id_of(summary.parent, real_parents) if summary.parent else None
    values["name"] = summary.path.name if summary.parent is None else f"{summary.parent.name}/{summary.path.name}"
    return values


def folder_summaries(roots: Roots) -> list[dict[str, Any]]:
    rows, real_parents = [], {}
    for summary in workflows.find_folders(roots.paths):
        try:
            rows.append(_summary_dict(roots, summary, real_parents))
        except NotInRoots:  # a folder reached through a symlink out of the roots
            continue
    return rows


# -- Runs -----------------------------------------------------------------------------------------
async def runs_page(request: Request) -> Response:
    return page(request, "runs.html", "Runs")


async def runs_api(request: Request) -> Response:
    context: Context = request.app.state.context
    rows = await asyncio.to_thread(folder_summaries, context.roots)
    return json_response({"folders": rows, "roots": [str(p) for p in context.roots.paths]})


# -- One run --------------------------------------------------------------------------------------
def run_details(roots: Roots, folder: Path) -> dict[str, Any]:
    """Everything the run page shows, read through the typed records."""
    summary = workflows.summarize_folder(folder)
    if summary is None:
        raise NotInRoots(str(folder))
    records = workflows.run_records(folder, complete_only=True)
    metrics = workflows.run_test_metrics(folder) if summary.status == "finished" else None
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                   and "checkpoint" not in p.relative_to(folder).parts)
    return {
        "summary": _summary_dict(roots, summary),
        "config_text": _read_text(folder / "config.yaml"),
        "model_spec": _read_json(folder / "model_spec.json"),
        "records": [r.to_dict() for r in records],
        "test_metrics": metrics.to_dict() if metrics else None,
        "files": files[:500],
    }


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


async def run_page(request: Request) -> Response:
    folder_id, folder = folder_or_404(request)
    return page(request, "run.html", f"Run {folder.name}", folder_id=folder_id)


async def run_api(request: Request) -> Response:
    context: Context = request.app.state.context
    _, folder = folder_or_404(request)
    return json_response(await asyncio.to_thread(run_details, context.roots, folder))


async def run_events(request: Request) -> Response:
    """Server-sent events: ``epoch`` (one per complete new line of metrics.jsonl, as an
    EpochRecord), ``status`` (when it changes), and ``end`` once the run is not running."""
    _, folder = folder_or_404(request)
    after = int(request.query_params.get("after", "0") or 0)
    return StreamingResponse(_run_stream(request, folder, after), media_type="text/event-stream",
                             headers={"x-accel-buffering": "no"})


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(_clean(data))}\n\n"


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size
    except OSError:
        return 0, 0


async def _run_stream(request: Request, folder: Path, sent: int) -> AsyncIterator[str]:
    status, stamp, quiet = None, (-1, -1), 0.0
    yield "retry: 1000\n\n"
    while not await request.is_disconnected():
        summary = await asyncio.to_thread(workflows.summarize_folder, folder)
        if summary is None:  # deleted under us
            yield _event("end", {"status": "deleted"})
            return
        now = _stamp(folder / "metrics.jsonl")
        if now != stamp:
            stamp = now
            records = await asyncio.to_thread(workflows.run_records, folder, complete_only=True)
            for index in range(sent, len(records)):
                yield _event("epoch", {"index": index, "record": records[index].to_dict()})
            sent = max(sent, len(records))
        if summary.status != status:
            status = summary.status
            yield _event("status", {"status": status, "accuracy": summary.accuracy, "error": summary.error})
        if status != "running":
            yield _event("end", {"status": status})
            return
        await asyncio.sleep(POLL_SECONDS)
        quiet += POLL_SECONDS
        if quiet >= _HEARTBEAT_SECONDS:
            quiet = 0.0
            yield ": heartbeat\n\n"


# -- Files ----------------------------------------------------------------------------------------
async def file_route(request: Request) -> Response:
    """A file of a folder inside the roots (report.html, plots, exports); 404 for anything else."""
    context: Context = request.app.state.context
    path = context.roots.file(request.path_params["id"], request.query_params.get("name", ""))
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media)


async def not_found(request: Request, exc: Exception) -> Response:
    return error_response("Not found: nothing of that name inside the dashboard's run folders.", 404)


def _core_routes() -> list[BaseRoute]:
    return [
        Route("/", runs_page),
        Route("/api/runs", runs_api),
        Route("/run/{id:path}", run_page),
        Route("/api/run/{id:path}", run_api),
        Route("/api/events/run/{id:path}", run_events),
        Route("/file/{id:path}", file_route),
    ]


#: Modules whose ``routes()`` add pages and API endpoints (each owns its part of the dashboard).
ROUTE_MODULES: list[Callable[[], list[BaseRoute]]] = [_core_routes, start_run_routes, explorer_routes, run_page_routes,
                                                      restore_page_routes]


def create_app(roots: list[str | Path], token: str, *, jobs: Any = None) -> Gate:
    """The dashboard app behind its :class:`Gate` (set ``gate.allowed`` and ``gate.port`` once
    the port is known).

    Example:
        >>> gate = create_app(["runs"], token="secret")
        >>> gate.allowed, gate.port = {"127.0.0.1:8765"}, 8765
    """
    templates = jinja2.Environment(loader=jinja2.PackageLoader(_PACKAGE, "templates"), autoescape=True)
    context = Context(Roots.of(list(roots)), templates, jobs)
    routes: list[BaseRoute] = []
    for module_routes in ROUTE_MODULES:
        routes += module_routes()
    routes.append(Mount("/static", StaticFiles(packages=[(_PACKAGE, "static")]), name="static"))
    app = Starlette(routes=routes, exception_handlers={404: not_found, NotInRoots: not_found})
    app.state.context = context
    return Gate(app, token)
