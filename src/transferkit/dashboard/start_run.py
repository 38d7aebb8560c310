"""The Start-a-run page and the jobs API: a form that queues a real ``transferkit train`` (the
efficiency page queues ``efficiency`` through the same API), the job list, and cancel.

Which options a strategy takes is read from the TrainConfig fields (their help text says
``lora: ...``, ``gradual: ...``) and the strategy classes, so a new field or strategy shows up in
the form without a list here.

Example:
    POST /api/jobs {"command": "train", "options": {"model": "builtin:minilm", "data": "news.csv"}}
      -> {"job": {"id": "1", "status": "queued", ...}}  or 400 {"error": "<the CLI's paragraph>"}
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import types
import typing
from typing import Any, Literal, Union

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import transferkit as tk

# ``from . import app`` (not ``from .app import ...``): app.py imports this module at its top.
from . import app as core
from .jobs import COMMANDS, JobError, JobQueue

__all__ = ["model_infos", "option_info", "routes", "strategy_infos"]

#: The form's fields above the strategy's own (the rest of TrainConfig stays at its defaults).
FORM_FIELDS = ("per_class", "epochs", "time_budget", "class_weights")
#: Options of every strategy that trains the backbone: its rate and the layer-wise rates.
BACKBONE_FIELDS = ("lr", "lr_decay", "group_lrs")
#: The help text of the fields that set the head trained on cached features starts so.
HEAD_PREFIX = "Head on cached features:"
MODELS_SECONDS = 60.0  # the model list (weights on this machine) is read again after this long


# -- what the form offers -------------------------------------------------------------------------
def _kind(annotation: Any) -> tuple[str, list[str] | None]:
    """A field's annotation -> the form's input kind (int, float, bool, choice, list, text)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return _kind(args[0]) if len(args) == 1 else ("text", None)
    if typing.get_origin(annotation) is Literal:
        return "choice", [str(a) for a in typing.get_args(annotation)]
    if typing.get_origin(annotation) is list:
        return "list", None
    return {int: "int", float: "float", bool: "bool"}.get(annotation, "text"), None


def option_info(name: str, defaults: tk.TrainConfig) -> dict[str, Any]:
    """One TrainConfig field as the form shows it: name, CLI flag, kind, choices, help, default."""
    hints = typing.get_type_hints(tk.TrainConfig)
    kind, choices = _kind(hints[name])
    return {"name": name, "flag": "--" + name.replace("_", "-"), "kind": kind, "choices": choices,
            "help": tk.TrainConfig.field_help()[name], "default": getattr(defaults, name)}


def _strategy_fields(name: str, cls: Any) -> list[str]:
    helps = tk.TrainConfig.field_help()
    own = [f for f, text in helps.items() if text.startswith(f"{name}:")]
    if cls.uses_feature_cache():
        own += [f for f, text in helps.items() if text.startswith(HEAD_PREFIX)]
    if cls.trains_backbone():
        own += [f for f in BACKBONE_FIELDS if f not in own]
    return [f for f in own if f not in cls.fixed]  # a setting the strategy always overrides is no option


def strategy_infos() -> dict[str, Any]:
    """Every strategy with its summary and the options it takes (defaults resolved for it)."""
    strategies = []
    for name in tk.strategy_names():
        cls = tk.strategy_class(name)
        defaults = tk.TrainConfig(model="-", data="-", strategy=name).resolved()
        strategies.append({"name": name, "summary": cls.summary(), "uses_feature_cache": cls.uses_feature_cache(),
                           "trains_backbone": cls.trains_backbone(),
                           "options": [option_info(f, defaults) for f in _strategy_fields(name, cls)]})
    defaults = tk.TrainConfig(model="-", data="-").resolved()
    return {"strategies": strategies, "default": defaults.strategy,
            "form": [option_info(f, defaults) for f in FORM_FIELDS]}


def model_infos() -> list[dict[str, Any]]:
    """``transferkit models``: each spec, its modality and whether its weights are here."""
    return [dataclasses.asdict(m) for m in tk.list_models()]


# -- routes ---------------------------------------------------------------------------------------
async def new_page(request: Request) -> Response:
    return core.page(request, "new.html", "Start a run")


def _queue(request: Request) -> JobQueue | None:
    return request.app.state.context.jobs


async def jobs_api(request: Request) -> Response:
    queue = _queue(request)
    if queue is None:
        return core.json_response({"jobs": [], "max_running": 0})
    return core.json_response({"jobs": await asyncio.to_thread(queue.list), "max_running": queue.max_running})


async def submit_api(request: Request) -> Response:
    """Queue a job after the command's own check; 400 with its one paragraph when it fails."""
    queue = _queue(request)
    if queue is None:
        return core.error_response("This dashboard has no job queue; start it with `transferkit dashboard`.", 503)
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return core.error_response("The request body is not JSON; send {\"command\": ..., \"options\": {...}}.")
    if not isinstance(body, dict):
        return core.error_response("Send an object: {\"command\": \"train\", \"options\": {...}}.")
    command = body.get("command", "train")
    if command not in COMMANDS:
        return core.error_response(f"Unknown command {command!r}; the dashboard runs {', '.join(COMMANDS)}.")
    try:
        job = await asyncio.to_thread(queue.submit, command, body.get("options") or {})
    except JobError as exc:
        return core.error_response(str(exc), 400)
    return core.json_response({"job": job.to_dict(queue.roots)})


async def cancel_api(request: Request) -> Response:
    queue = _queue(request)
    try:
        job = queue.cancel(request.path_params["id"]) if queue is not None else None
    except KeyError:
        job = None
    if job is None:
        return core.error_response("No job of that id.", 404)
    return core.json_response({"job": job.to_dict(queue.roots)})


async def models_api(request: Request) -> Response:
    extra = request.app.state.context.extra
    cached = extra.get("start_run_models")
    if cached is None or time.monotonic() - cached[0] > MODELS_SECONDS:  # ~1.5 s: catalogues read
        cached = extra["start_run_models"] = (time.monotonic(), await asyncio.to_thread(model_infos))
    return core.json_response({"models": cached[1]})


async def strategies_api(request: Request) -> Response:
    return core.json_response(await asyncio.to_thread(strategy_infos))


def routes() -> list[BaseRoute]:
    return [
        Route("/new", new_page),
        Route("/api/jobs", jobs_api, methods=["GET"]),
        Route("/api/jobs", submit_api, methods=["POST"]),
        Route("/api/jobs/{id}/cancel", cancel_api, methods=["POST"]),
        Route("/api/models", models_api),
        Route("/api/strategies", strategies_api),
    ]
