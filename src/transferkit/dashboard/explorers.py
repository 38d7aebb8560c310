"""The explorers' pages: LoRA parameter savings, layer freezing, layer transferability and
transfer efficiency.

LoRA and freezing numbers come from the actual model, built with random weights (counts do not
depend on them, and nothing is downloaded), through the same functions as ``transferkit
lora-savings`` and ``transferkit explore freezing``. The LoRA API sends each targeted layer's
``d`` and ``k`` once, so the page's rank slider computes ``r (d + k)`` without asking again.
Transferability and efficiency pages read the studies' JSON files under the roots.

Example:
    GET /api/lora?model=torchvision:resnet18&targets=layer4  ->  {"layers": [{"d": 512, "k": 2304}, ...], ...}
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import transferkit as tk
from transferkit import workflows

# ``from . import app`` and not ``from .app import ...``: app.py imports this module at its top,
# so app's names are looked up when a request comes, once both modules are loaded.
from . import app as core
from .folders import NotInRoots, Roots

__all__ = ["ModelCache", "efficiency_details", "freezing_details", "lora_layers", "routes"]

#: Built models kept per (spec, num_classes): a slider's page asks once, a second page reuses it.
MODEL_CACHE_SIZE = 4
#: The chapter's worked example: one 768 x 768 projection at rank 8.
EXAMPLE_D, EXAMPLE_K, EXAMPLE_RANK = 768, 768, 8
#: A rank slider's range (the page's input[type=range] reads it from the API).
RANK_RANGE = (1, 256)


class ModelCache:
    """Models built with random weights, the ``size`` most recently used kept.

    Example:
        >>> cache = ModelCache()
        >>> cache.get("torchvision:resnet18", 2).spec.spec_string  # doctest: +SKIP
        'torchvision:resnet18'
    """

    def __init__(self, size: int = MODEL_CACHE_SIZE) -> None:
        self.size = size
        self._built: OrderedDict[tuple[str, int], tk.TransferModel] = OrderedDict()
        self._lock = threading.Lock()  # requests run in threads; a model is built once

    def get(self, spec: str, num_classes: int) -> tk.TransferModel:
        key = (spec, num_classes)
        with self._lock:
            if key not in self._built:
                self._built[key] = tk.load_model(spec, num_classes, pretrained=False)
                while len(self._built) > self.size:
                    self._built.popitem(last=False)
            self._built.move_to_end(key)
            return self._built[key]


def _models(request: Request) -> ModelCache:
    extra = request.app.state.context.extra
    return extra.setdefault("explorer_models", ModelCache())


class BadQuery(ValueError):
    """A query parameter the page sent is not usable (answered 400 with this message)."""


def _count(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise BadQuery(f"{name}: must be a whole number >= 1, got {raw!r}.")
    return int(raw)


def _model_spec(request: Request) -> str:
    spec = request.query_params.get("model", "").strip()
    if not spec:
        raise BadQuery("model: choose a model, e.g. torchvision:resnet18 or builtin:minilm.")
    return spec


async def _answer(function: Any, *args: Any) -> Response:
    """Run ``function`` in a thread; its result as JSON, a user's mistake as a one-paragraph 400."""
    try:
        return core.json_response(await asyncio.to_thread(function, *args))
    except (BadQuery, tk.TransferkitError) as exc:
        return core.error_response(str(exc), 400)


# -- LoRA -----------------------------------------------------------------------------------------
def lora_layers(model: tk.TransferModel, targets: str | None) -> dict[str, Any]:
    """What the rank slider needs for one target set: each layer's ``d`` and ``k`` (the page sums
    ``r (d + k)``), the head's and the model's parameters. From ``workflows.explore_lora``, the
    function behind ``transferkit lora-savings``, at rank 1.

    Example:
        >>> model = tk.load_model("torchvision:resnet18", 2, pretrained=False)  # doctest: +SKIP
        >>> lora_layers(model, "layer4")["layers"][0]  # doctest: +SKIP
        {'name': 'backbone.model.layer4.0.conv1', 'shape': [512, 256, 3, 3], 'd': 512, 'k': 2304}
    """
    result = workflows.explore_lora(model, ranks=[1], targets=[targets])
    row = result.rows[0]
    return {"targets": row["targets"], "target_set": row["target_set"], "head_params": row["head_params"],
            "total_params": row["total_params"], "full_params": row["full_params"],
            "layers": [{key: layer[key] for key in ("name", "shape", "d", "k")} for layer in result.layers]}


@functools.lru_cache(maxsize=1)
def worked_example() -> dict[str, Any]:
    """The chapter's case counted by ``lora_savings`` itself: one d x k Linear at rank r."""
    from torch import nn

    row = tk.lora_savings(nn.Sequential(nn.Linear(EXAMPLE_K, EXAMPLE_D)), ranks=[EXAMPLE_RANK], targets="all-linear")[0]
    layer = row["per_layer"][0]
    return {"d": EXAMPLE_D, "k": EXAMPLE_K, "rank": EXAMPLE_RANK, "lora": layer["lora"], "full": layer["full"],
            "ratio": layer["full"] / layer["lora"]}


def _lora(cache: ModelCache, spec: str, targets: str, num_classes: int) -> dict[str, Any]:
    chosen = None if targets.strip() in ("", "default") else targets.strip()
    values = lora_layers(cache.get(spec, num_classes), chosen)
    return {"model": spec, "num_classes": num_classes, "rank_range": RANK_RANGE, **values}


async def lora_api(request: Request) -> Response:
    try:
        spec = _model_spec(request)
        num_classes = _count(request, "num_classes", workflows.DEFAULT_NUM_CLASSES)
    except BadQuery as exc:
        return core.error_response(str(exc))
    targets = request.query_params.get("targets", "")
    return await _answer(_lora, _models(request), spec, targets, num_classes)


def _study_file(roots: Roots, folder_id: str, name: str) -> Any:
    """A study's JSON file (``None`` when the folder or the file is missing or unreadable)."""
    try:
        return json.loads(roots.file(folder_id, name).read_text(encoding="utf-8"))
    except (LookupError, OSError, ValueError):
        return None


def _lora_study(roots: Roots, folder_id: str) -> dict[str, Any]:
    """The model and target sets of a lora_savings.json folder, to preselect them."""
    data = _study_file(roots, folder_id, workflows.LORA_JSON)
    if not isinstance(data, dict):
        raise BadQuery(f"study: {folder_id} holds no readable {workflows.LORA_JSON}.")
    sets = list(dict.fromkeys(r.get("target_set") for r in data.get("rows", []) if isinstance(r, dict)))
    return {"id": folder_id, "model": data.get("model"),
            "target_sets": [s for s in sets if isinstance(s, str) and not s.startswith("adapter ")]}


async def lora_study_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    return await _answer(_lora_study, context.roots, request.path_params["id"])


# -- Models (the pages' model pickers) ------------------------------------------------------------
def _model_list(extra: dict[str, Any]) -> list[dict[str, Any]]:
    if "explorer_model_list" not in extra:  # ~1.5 s: torchvision's and timm's catalogues, asked once
        extra["explorer_model_list"] = [{"spec": m.spec, "source": m.source, "modality": m.modality}
                                        for m in tk.list_models()]
    return extra["explorer_model_list"]


async def models_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    return await _answer(_model_list, context.extra)


# -- Freezing -------------------------------------------------------------------------------------
def _studies(roots: Roots, kind: str) -> list[dict[str, Any]]:
    """The folders of one kind under the roots (their Runs-page summaries), newest first."""
    return [f for f in core.folder_summaries(roots) if kind in f["kinds"]]


def _run_id(roots: Roots, run_dir: Any, fallback: Path | None = None) -> str | None:
    """The id of the run folder a study's row records, if it lies inside the roots. A study
    started with a relative ``--out`` records a path relative to where it ran: ``fallback`` (where
    the study puts that run) is tried then."""
    candidates = [Path(run_dir)] if isinstance(run_dir, str) and run_dir else []
    candidates += [fallback] if fallback is not None else []
    for folder in candidates:
        try:
            if folder.is_absolute() and folder.is_dir():
                return roots.id_of(folder)
        except NotInRoots:
            continue
    return None


def freezing_details(roots: Roots, model: tk.TransferModel, spec: str, num_classes: int) -> dict[str, Any]:
    """Trainable parameters by frozen depth (``workflows.freezing_counts``, as ``explore freezing``
    prints them), and every freezing study of this model under the roots with its measured accuracy."""
    studies = []
    for summary in _studies(roots, "freezing"):
        runs = Path(summary["path"]) / "runs"  # where explore_freezing puts each depth's run
        data = _study_file(roots, summary["id"], workflows.FREEZING_JSON)
        if not isinstance(data, dict) or data.get("model") != spec:
            continue
        rows = [{"frozen_groups": r.get("frozen_groups"), "accuracy": r.get("accuracy"),
                 "strategy": r.get("strategy"), "status": r.get("status"),
                 "run_id": _run_id(roots, r.get("run_dir"), runs / f"frozen-{r.get('frozen_groups')}")}
                for r in data.get("rows", []) if isinstance(r, dict)]
        if any(r["accuracy"] is not None for r in rows):
            studies.append({"id": summary["id"], "data": data.get("data"), "num_classes": data.get("num_classes"),
                            "modified": summary["modified"], "rows": rows})
    return {"model": spec, "num_classes": num_classes, "rows": workflows.freezing_counts(model), "studies": studies}


def _freezing(roots: Roots, cache: ModelCache, spec: str, num_classes: int) -> dict[str, Any]:
    return freezing_details(roots, cache.get(spec, num_classes), spec, num_classes)


async def freezing_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    try:
        spec = _model_spec(request)
        num_classes = _count(request, "num_classes", workflows.FREEZING_NUM_CLASSES)
    except BadQuery as exc:
        return core.error_response(str(exc))
    return await _answer(_freezing, context.roots, _models(request), spec, num_classes)


def _freezing_study(roots: Roots, folder_id: str) -> dict[str, Any]:
    data = _study_file(roots, folder_id, workflows.FREEZING_JSON)
    if not isinstance(data, dict):
        raise BadQuery(f"study: {folder_id} holds no readable {workflows.FREEZING_JSON}.")
    return {"id": folder_id, "model": data.get("model"), "data": data.get("data"),
            "num_classes": data.get("num_classes")}


async def freezing_study_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    return await _answer(_freezing_study, context.roots, request.path_params["id"])


# -- Transferability ------------------------------------------------------------------------------
def _study_list(roots: Roots, kind: str) -> dict[str, Any]:
    keys = ("id", "name", "model", "data", "status", "seconds", "modified")
    return {"studies": [{k: s.get(k) for k in keys} for s in _studies(roots, kind)]}


async def transferability_list_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    return await _answer(_study_list, context.roots, "transferability")


def transferability_details(roots: Roots, folder_id: str) -> dict[str, Any]:
    """transferability.json: the summary and the probe points (``init``, ``depth``, ``group``,
    ``features``, ``val_accuracy``, ``test_accuracy``), as ``layer_transferability`` wrote it."""
    data = _study_file(roots, folder_id, workflows.TRANSFERABILITY_JSON)
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise NotInRoots(folder_id)  # answered 404
    return {"id": folder_id, **data}


async def transferability_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    details = await asyncio.to_thread(transferability_details, context.roots, request.path_params["id"])
    return core.json_response(details)


# -- Transfer efficiency --------------------------------------------------------------------------
async def efficiency_list_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    return await _answer(_study_list, context.roots, "efficiency")


def efficiency_details(roots: Roots, folder_id: str) -> dict[str, Any]:
    """An efficiency study: its points (each with ``run_id`` where it records a run folder inside
    the roots), the mean and min-max curve per method, and the data multipliers (from
    efficiency_summary.json, or computed from the points of a study that stopped before it)."""
    points = _study_file(roots, folder_id, workflows.EFFICIENCY_JSON)
    if not isinstance(points, list):
        raise NotInRoots(folder_id)  # answered 404
    points = [p for p in points if isinstance(p, dict)]
    summary = _study_file(roots, folder_id, workflows.EFFICIENCY_SUMMARY)
    summary = summary if isinstance(summary, dict) else None
    methods = (summary or {}).get("methods") or list(dict.fromkeys(p.get("method") for p in points))
    for p in points:
        p["run_id"] = _run_id(roots, p.get("run_dir"))
    multipliers = summary["multipliers"] if summary and "multipliers" in summary else workflows.data_multipliers(points)
    return {"id": folder_id, "summary": summary, "finished": summary is not None, "methods": methods,
            "points": points, "curves": {m: workflows.mean_curve(points, m) for m in methods},
            "multipliers": multipliers, "headline": (summary or {}).get("headline", [])}


async def efficiency_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    return core.json_response(await asyncio.to_thread(efficiency_details, context.roots, request.path_params["id"]))


# -- Pages ----------------------------------------------------------------------------------------
async def lora_page(request: Request) -> Response:
    return core.page(request, "lora.html", "LoRA parameter savings", study=request.query_params.get("study", ""),
                     num_classes=workflows.DEFAULT_NUM_CLASSES, example=await asyncio.to_thread(worked_example))


async def freezing_page(request: Request) -> Response:
    return core.page(request, "freezing.html", "Layer freezing", study=request.query_params.get("study", ""),
                     num_classes=workflows.FREEZING_NUM_CLASSES)


async def transferability_list_page(request: Request) -> Response:
    return core.page(request, "transferability.html", "Layer transferability", folder_id="")


async def transferability_page(request: Request) -> Response:
    folder_id, folder = core.folder_or_404(request)
    return core.page(request, "transferability.html", f"Layer transferability: {folder.name}", folder_id=folder_id)


async def efficiency_list_page(request: Request) -> Response:
    defaults = {"per_class": "5,20", "seeds": 2, "time_budget": int(workflows.DEFAULT_TIME_BUDGET)}
    return core.page(request, "efficiency.html", "Transfer efficiency", folder_id="", defaults=defaults)


async def efficiency_page(request: Request) -> Response:
    folder_id, folder = core.folder_or_404(request)
    return core.page(request, "efficiency.html", f"Transfer efficiency: {folder.name}", folder_id=folder_id,
                     defaults={})


def routes() -> list[BaseRoute]:
    """The explorers' pages and their JSON API."""
    return [
        Route("/lora", lora_page),
        Route("/api/lora", lora_api),
        Route("/api/lora/study/{id:path}", lora_study_api),
        Route("/api/explorers/models", models_api),
        Route("/freezing", freezing_page),
        Route("/api/freezing", freezing_api),
        Route("/api/freezing/study/{id:path}", freezing_study_api),
        Route("/transferability", transferability_list_page),
        Route("/transferability/{id:path}", transferability_page),
        Route("/api/transferability", transferability_list_api),
        Route("/api/transferability/{id:path}", transferability_api),
        Route("/efficiency", efficiency_list_page),
        Route("/efficiency/{id:path}", efficiency_page),
        Route("/api/efficiency", efficiency_list_api),
        Route("/api/efficiency/{id:path}", efficiency_api),
    ]
