"""The restoration pages: a prior comparison (`transferkit restore --compare-priors`) and a
denoiser run (`transferkit denoiser train`), one page for both kinds.

- A comparison: the problem (task, degradation, solver, iterations, seed, the degraded image's
  PSNR and SSIM), the priors sorted by PSNR with the best marked, the side-by-side figure, and the
  clean, degraded and each prior's restored image.
- A denoiser run: its record (from, strategy, steps, seconds, trainable parameters, PSNR before
  and after on fixed crops of the *training* images) and the L1 loss against the step, polled
  while it trains.

The folders are read through :mod:`transferkit.workflows` (its catalog owns the file names).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from transferkit import workflows

from . import (
    app as core,  # app imports this module: names are looked up when a request comes
)
from .folders import NotInRoots, Roots

__all__ = ["restore_details", "routes"]


def _kind(folder: Path) -> str:
    """The folder's restoration kind (``NotInRoots``, answered 404, when it is neither)."""
    summary = workflows.summarize_folder(folder)
    kind = next((k for k in (summary.kinds if summary else ()) if k in workflows.RESTORE_KINDS), None)
    if kind is None:
        raise NotInRoots(f"{folder} is neither a prior comparison nor a denoiser run")
    return kind


def restore_details(roots: Roots, folder: Path) -> dict[str, Any]:
    """What the restore page shows: ``kind`` (``restore-compare`` or ``denoiser``), the folder's id
    and name, its summary, and the comparison's or the denoiser run's details."""
    kind = _kind(folder)
    details = workflows.restore_comparison_details(folder) if kind == "restore-compare" else workflows.denoiser_run_details(folder)
    if details is None:  # removed, or its record damaged, since it was listed
        raise NotInRoots(f"{folder} has no readable {kind} record")
    summary = workflows.summarize_folder(folder)
    return {"kind": kind, "id": roots.id_of(folder), "name": folder.name,
            "status": summary.status if summary else None, "summary": summary.to_dict() if summary else None,
            **details}


async def restore_page(request: Request) -> Response:
    folder_id, folder = core.folder_or_404(request)
    kind = await asyncio.to_thread(_kind, folder)
    title = "Prior comparison" if kind == "restore-compare" else "Denoiser run"
    return core.page(request, "restore.html", f"{title} {folder.name}", folder_id=folder_id)


async def restore_api(request: Request) -> Response:
    context: core.Context = request.app.state.context
    _, folder = core.folder_or_404(request)
    return core.json_response(await asyncio.to_thread(restore_details, context.roots, folder))


def routes() -> list[BaseRoute]:
    return [
        Route("/restore/{id:path}", restore_page),
        Route("/api/restore/{id:path}", restore_api),
    ]
