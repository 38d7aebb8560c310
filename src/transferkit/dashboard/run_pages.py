"""The pages of one comparison or run beyond the run page: Compare, Pipeline and Export.

- Compare (a folder with compare.json): the strategy table with the best row marked, validation
  accuracy against cumulative epoch seconds per strategy, a link to each strategy's run.
- Pipeline (a run): data -> preprocessing (the weights' own transforms) -> each backbone layer
  group frozen, LoRA-adapted or trained, with parameter counts -> head -> exported files.
- Export (a finished run): export to each registered format, its verification, and the latency
  of every exported file against the eager model at batch 1 and 32 (kept in the run folder).

Everything is read through the public API (``transferkit``, ``transferkit.workflows``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

import transferkit as tk
from transferkit import workflows

from . import (
    app as core,  # app imports this module: names are looked up when a request comes
)
from .folders import NotInRoots, Roots

__all__ = ["compare_details", "export_details", "pipeline_details", "routes"]

_COMPARE_JSON = "compare.json"
_COMPARE_MD = "compare.md"
_COMPARE_RUNS = "runs"  # <comparison>/runs/<strategy>: one ordinary run folder per strategy


def _context(request: Request) -> core.Context:
    return request.app.state.context


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# -- Compare ----------------------------------------------------------------------------------------
_ROW_KEYS = ("strategy", "status", "accuracy", "macro_f1", "trainable_params", "total_params", "seconds",
             "peak_memory_mb", "epochs_to_best", "epochs", "same_run_as")


def _compare_rows(folder: Path) -> list[dict[str, Any]]:
    rows = _read_json(folder / _COMPARE_JSON)
    if not isinstance(rows, list):
        raise NotInRoots(f"{folder} has no readable {_COMPARE_JSON}")
    clean = []
    for row in rows:
        if isinstance(row, dict) and row.get("strategy"):
            values = {k: row.get(k) for k in _ROW_KEYS}
            values["status"] = values["status"] or ("ok" if values["accuracy"] is not None else "-")
            clean.append(values)
    return clean


def _accuracy_curve(run_dir: Path) -> dict[str, list[float | None]]:
    """Validation accuracy against cumulative epoch seconds (every phase of the run on one line,
    as compare's own plot draws it; loading and feature encoding are not on the axis)."""
    xs: list[float] = []
    ys: list[float | None] = []
    total = 0.0
    for record in workflows.run_records(run_dir, complete_only=True):
        total += record.seconds
        xs.append(round(total, 4))
        ys.append(record.val_accuracy)
    return {"seconds": xs, "val_accuracy": ys}


def compare_details(roots: Roots, folder: Path) -> dict[str, Any]:
    """The comparison's rows (``best`` marked, each with its run's folder id) and curves."""
    rows = _compare_rows(folder)
    best = workflows.pick_best(rows)
    curves = []
    for row in rows:
        twin = row["same_run_as"]  # a strategy compare did not train again: its twin's run
        run_dir = folder / _COMPARE_RUNS / (twin or row["strategy"])
        row["best"] = best is not None and row is best
        row["run_id"] = roots.id_of(run_dir) if run_dir.is_dir() else None
        if row["run_id"] and not twin:
            curves.append({"strategy": row["strategy"], **_accuracy_curve(run_dir)})
    header = (_read_text(folder / _COMPARE_MD) or "").splitlines()[2:3]  # "model: ... · data: ..."
    summary = workflows.summarize_folder(folder)
    return {"id": roots.id_of(folder), "name": folder.name, "settings": header[0].replace("`", "") if header else None,
            "status": summary.status if summary else None, "rows": rows, "curves": curves,
            "best": best["strategy"] if best else None}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


async def compare_page(request: Request) -> Response:
    folder_id, folder = core.folder_or_404(request)
    if not (folder / _COMPARE_JSON).is_file():
        raise NotInRoots(folder_id)
    return core.page(request, "compare.html", f"Compare {folder.name}", folder_id=folder_id)


async def compare_api(request: Request) -> Response:
    _, folder = core.folder_or_404(request)
    return core.json_response(await asyncio.to_thread(compare_details, _context(request).roots, folder))


# -- Pipeline ---------------------------------------------------------------------------------------
def _stamp(folder: Path, *names: str) -> tuple[float, ...]:
    stamps = []
    for name in names:
        try:
            stamps.append((folder / name).stat().st_mtime)
        except OSError:
            stamps.append(0.0)
    return tuple(stamps)


def _preprocessing(spec: dict[str, Any], config: tk.TrainConfig | None) -> list[dict[str, str]]:
    """The weights' own transforms, step by step, with their values (from model_spec.json)."""
    image, text = spec.get("image"), spec.get("text")
    steps = []
    if image:
        steps += [{"step": "resize", "value": f"{image['resize_size']} px ({image.get('interpolation', 'bilinear')})"},
                  {"step": "center crop", "value": f"{image['crop_size']} x {image['crop_size']} px"},
                  {"step": "normalize", "value": f"mean {_triple(image['mean'])}, std {_triple(image['std'])}"}]
        if config is not None and config.augment:
            steps.append({"step": "augment (training only)", "value": "random resized crop, horizontal flip"})
    elif text:
        steps += [{"step": "tokenizer", "value": str(text.get("tokenizer"))},
                  {"step": "max length", "value": f"{text.get('max_length')} tokens"},
                  {"step": "pooling", "value": str(text.get("pooling"))}]
        if text.get("normalize"):
            steps.append({"step": "normalize", "value": "L2 (unit-length embeddings)"})
    return steps


def _triple(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in values) + ")"


def _group_sizes(model: tk.TransferModel) -> dict[str, int]:
    """Parameters per layer group, from the counts ``transferkit explore freezing`` prints: row k
    freezes the lowest k groups, so group k holds row k's trainable minus row k + 1's."""
    rows = workflows.freezing_counts(model)
    names = rows[0]["trainable"]
    sizes = [rows[k]["trainable_params"] - (rows[k + 1]["trainable_params"] if k + 1 < len(rows) else 0)
             for k in range(len(names))]
    return dict(zip(names, sizes))


def _lora_layers(model: tk.TransferModel, config: tk.TrainConfig) -> dict[str, list[dict[str, Any]]]:
    """LoRA layers per group: ``r (d + k)`` per targeted layer, as ``transferkit lora-savings`` counts."""
    row = tk.lora_savings(model, ranks=[config.lora_rank], targets=config.lora_targets)[0]
    owner = {name: group.name for group in model.layer_groups() for name in group.param_names}
    layers: dict[str, list[dict[str, Any]]] = {}
    for layer in row["per_layer"]:
        group = owner.get(f"{layer['name']}.weight")
        if group is not None:
            layers.setdefault(group, []).append({"name": layer["name"], "params": layer["lora"]})
    return layers


def _uses_lora(strategy: str) -> bool:
    try:
        return issubclass(tk.strategy_class(strategy), tk.strategy_class("lora"))
    except tk.ConfigError:  # a strategy registered by a plugin that is not loaded here
        return False


def _trained_groups(records: list[tk.EpochRecord], config: tk.TrainConfig | None,
                    names: list[str]) -> tuple[set[str], dict[str, int]]:
    """Groups that trained (the records' per-group rates; the strategy's schedule before any
    epoch), and the epoch (1-based, all phases) at which each was unfrozen after the start."""
    trained, unfrozen = {"head"}, {}
    for index, record in enumerate(records, start=1):
        trained |= set(record.lrs)
        for event in record.events:
            for group in event.groups:
                unfrozen.setdefault(group, index)
    if not records and config is not None:
        try:
            strategy = tk.get_strategy(config.strategy, config)
            for epoch in range(1, (strategy.config.epochs or 1) + 1):
                trained |= set(strategy.trainable_backbone_groups(names[:-1], epoch))
        except tk.TransferkitError:
            pass
    return trained, unfrozen


def _peak_rates(records: list[tk.EpochRecord]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for record in records:
        for group, lr in record.lrs.items():
            rates[group] = max(rates.get(group, 0.0), lr)
    return rates


def _model_part(folder: Path) -> dict[str, Any]:
    """What needs the model: layer groups with their parameter counts and LoRA layers."""
    try:
        run = tk.load_run(folder)
    except (tk.TransferkitError, OSError) as exc:  # running (no weights yet), or from elsewhere
        return {"sizes": None, "lora": {}, "config": None, "model_error": _one_line(exc)}
    lora = _lora_layers(run.model, run.config) if _uses_lora(run.config.strategy) else {}
    return {"sizes": _group_sizes(run.model), "lora": lora, "config": run.config, "model_error": None,
            "head": {"in_features": run.model.spec.num_features, "classes": run.model.spec.num_classes}}


def _cached_model_part(context: core.Context, folder: Path) -> dict[str, Any]:
    cache = context.extra.setdefault("pipeline_models", {})
    stamp = _stamp(folder, "model.safetensors", "config.yaml", "model_spec.json")
    hit = cache.get(folder)
    if hit is None or hit[0] != stamp:
        hit = cache[folder] = (stamp, _model_part(folder))
    return hit[1]


def _groups(names: list[str], part: dict[str, Any], records: list[tk.EpochRecord]) -> list[dict[str, Any]]:
    trained, unfrozen = _trained_groups(records, part["config"], names)
    rates, sizes, lora = _peak_rates(records), part["sizes"] or {}, part["lora"]
    groups = []
    for name in names:
        status = "lora" if name in lora else "trained" if name in trained else "frozen"
        layers = lora.get(name, [])
        groups.append({"name": name, "status": status, "params": sizes.get(name),
                       "trainable_params": sum(x["params"] for x in layers) if status == "lora"
                       else sizes.get(name) if status == "trained" else 0,
                       "lora_layers": len(layers), "peak_lr": rates.get(name), "unfrozen_epoch": unfrozen.get(name)})
    return groups


def _exports(roots: Roots, folder: Path) -> list[dict[str, Any]]:
    """Exported files (with their sidecars) and a LoRA run's adapter folder."""
    out = []
    for fmt, path in tk.exported_files(folder).items():
        out.append({"format": fmt, "file": path.relative_to(folder).as_posix(),
                    "size_mb": round(path.stat().st_size / 2**20, 2)})
    if (folder / "adapter" / "adapter_config.json").is_file():
        out.append({"format": "LoRA adapter (PEFT)", "file": "adapter/adapter_config.json", "size_mb": None})
    return out


def pipeline_details(context: core.Context, folder: Path) -> dict[str, Any]:
    """The run as a pipeline: data, preprocessing, layer groups (frozen / LoRA / trained), head,
    exports. The part that loads the model is cached per run folder until its files change."""
    spec = _read_json(folder / "model_spec.json")
    if not isinstance(spec, dict):
        raise NotInRoots(f"{folder} has no model_spec.json")
    part = _cached_model_part(context, folder)
    config: tk.TrainConfig | None = part["config"]
    records = workflows.run_records(folder, complete_only=True)
    names = list((part["sizes"] or {}).keys()) or list(spec.get("layer_groups") or [])
    metrics = workflows.run_test_metrics(folder)
    summary = workflows.summarize_folder(folder)
    groups = _groups(names, part, records)
    return {
        "id": context.roots.id_of(folder), "name": folder.name,
        "model": spec.get("source", "") + ":" + str(spec.get("name", "")), "weights": spec.get("weights"),
        "strategy": summary.strategy if summary else None, "status": summary.status if summary else None,
        "data": {"data": summary.data if summary else None, "classes": list(spec.get("labels") or []),
                 "per_class": config.per_class if config else None, "seed": config.seed if config else None,
                 "val_fraction": config.val_fraction if config else None,
                 "test_fraction": config.test_fraction if config else None,
                 "test_examples": metrics.n if metrics else None},
        "modality": spec.get("modality"), "preprocessing": _preprocessing(spec, config),
        "backbone": [g for g in groups if g["name"] != "head"],
        "head": {**(part.get("head") or {"in_features": spec.get("num_features"), "classes": spec.get("num_classes")}),
                 **next((g for g in groups if g["name"] == "head"), {})},
        "trainable_params": metrics.trainable_params if metrics else None,
        "total_params": metrics.total_params if metrics else sum(v for v in (part["sizes"] or {}).values()) or None,
        "exports": _exports(context.roots, folder), "model_error": part["model_error"],
    }


async def pipeline_page(request: Request) -> Response:
    folder_id, folder = core.folder_or_404(request)
    return core.page(request, "pipeline.html", f"Pipeline of {folder.name}", folder_id=folder_id)


async def pipeline_api(request: Request) -> Response:
    _, folder = core.folder_or_404(request)
    return core.json_response(await asyncio.to_thread(pipeline_details, _context(request), folder))


# -- Export -----------------------------------------------------------------------------------------
# An export (or a latency measurement alone) is a job of the queue: `transferkit export RUN
# --format F --force --latency` or `transferkit latency RUN`, one at a time per run and never
# beside a training job holding the slot, so the timings are not those of a busy machine.
def _queue(context: core.Context) -> Any:
    if context.jobs is None:
        raise RuntimeError("This dashboard was started without a job queue; export from the command line "
                           "(`transferkit export RUN --format onnx --latency`).")
    return context.jobs


def _task(context: core.Context, folder: Path) -> dict[str, Any] | None:
    """The newest export or measurement job of this run, as the page shows it."""
    if context.jobs is None:
        return None
    jobs = [j for j in context.jobs.list() if j["command"] in ("export", "latency") and Path(j["out"]) == folder]
    if not jobs:
        return None
    job = jobs[0]  # newest first
    fmt = next((a.split("=", 1)[1] for a in job["argv"] if a.startswith("--format=")), None)
    return {"action": "export" if job["command"] == "export" else "measure", "format": fmt, "job": job["id"],
            "status": job["status"], "started": job["started"] or job["submitted"], "ended": job["ended"],
            "error": job["error"]}


def _formats() -> list[dict[str, Any]]:
    out = []
    for name in tk.EXPORT_FORMATS.names():
        fmt = tk.EXPORT_FORMATS.get(name)
        try:
            fmt.ensure_available()
            missing = None
        except tk.BackendUnavailableError as exc:
            missing = _one_line(exc)
        out.append({"name": name, "title": fmt.title, "file": fmt.default_file, "device": fmt.device,
                    "available": missing is None, "reason": missing})
    return out


def _formats_cached(context: core.Context) -> list[dict[str, Any]]:
    """Which formats this machine can write (checked once: importing a backend takes seconds)."""
    if "export_formats" not in context.extra:
        context.extra["export_formats"] = _formats()
    return context.extra["export_formats"]


def export_details(context: core.Context, folder: Path) -> dict[str, Any]:
    """Formats (available here or why not), the run's exported files with their verification,
    the latency report, and the export under way (if any)."""
    summary = workflows.summarize_folder(folder)
    if summary is None or "run" not in summary.kinds:
        raise NotInRoots(f"{folder} is not a run folder")
    files = tk.exported_files(folder)
    report = tk.read_latency(folder)
    rows = report.to_dict()["rows"] if report else []
    measured = {row["name"]: row for row in rows if row["name"] != "eager"}
    formats = []
    for fmt in _formats_cached(context):
        path = files.get(fmt["name"])
        row = measured.get(fmt["name"]) if path else None
        formats.append({**fmt, "exported": path.name if path else None,
                        "size_mb": round(path.stat().st_size / 2**20, 2) if path else None,
                        "verification": row.get("verification") if row else None})
    stale = report is None and bool(files) or report is not None and (
        set(files) != set(measured) or any(p.stat().st_mtime > report.measured_at for p in files.values()))
    task = _task(context, folder)
    return {"id": context.roots.id_of(folder), "name": folder.name, "status": summary.status,
            "model": summary.model, "strategy": summary.strategy, "formats": formats,
            "latency": report.to_dict() if report else None, "latency_stale": stale,
            "task": task}


async def export_page(request: Request) -> Response:
    folder_id, folder = core.folder_or_404(request)
    return core.page(request, "export.html", f"Export {folder.name}", folder_id=folder_id)


async def export_api(request: Request) -> Response:
    _, folder = core.folder_or_404(request)
    return core.json_response(await asyncio.to_thread(export_details, _context(request), folder))


def _refusal(context: core.Context, folder: Path, body: Any) -> tuple[str, int] | None:
    """Why an export request cannot start (the message and HTTP status), or None."""
    if not isinstance(body, dict):
        return 'Give a JSON object, e.g. {"format": "onnx"}.', 400
    summary = workflows.summarize_folder(folder)
    if summary is None or "run" not in summary.kinds or summary.status != "finished":
        return "Only a finished run can be exported: wait for it to finish (or train it again).", 409
    action, fmt = body.get("action", "export"), body.get("format")
    if action == "measure":
        return None
    if action != "export":
        return f"action: {action!r} is not one of export, measure.", 400
    known = {f["name"]: f for f in _formats_cached(context)}
    if fmt not in known:
        return f"format: unknown export format {fmt!r}; choose one of {', '.join(known)}.", 400
    return (known[fmt]["reason"], 400) if not known[fmt]["available"] else None


async def export_start(request: Request) -> Response:
    """``POST {"format": "onnx"}`` exports and measures; ``{"action": "measure"}`` only measures."""
    context = _context(request)
    _, folder = core.folder_or_404(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    refusal = await asyncio.to_thread(_refusal, context, folder, body)
    if refusal is not None:
        return core.error_response(*refusal)
    action, fmt = body.get("action", "export"), body.get("format")
    options: dict[str, Any] = {"run": str(folder)}
    if action == "export":
        options.update({"format": fmt, "force": True, "latency": True})
    try:
        job = _queue(context).submit("export" if action == "export" else "latency", options)
    except (RuntimeError, ValueError) as exc:  # JobError: another export of this run is queued or running
        return core.error_response(str(exc), 409)
    return core.json_response({"task": _task(context, folder), "job": job.id}, 202)


def routes() -> list[BaseRoute]:
    return [
        Route("/compare/{id:path}", compare_page),
        Route("/api/compare/{id:path}", compare_api),
        Route("/pipeline/{id:path}", pipeline_page),
        Route("/api/pipeline/{id:path}", pipeline_api),
        Route("/export/{id:path}", export_page),
        Route("/api/export/{id:path}", export_api, methods=["GET"]),
        Route("/api/export/{id:path}", export_start, methods=["POST"]),
    ]
