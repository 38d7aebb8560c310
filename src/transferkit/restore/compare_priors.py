"""``transferkit restore --compare-priors``: the same simulated problem restored with several
priors, scored against the clean image, written as a table and a side-by-side figure.

The folder (``runs/restore-compare-<image>-<time>`` unless ``--out``)::

    restore_comparison.json   the problem and one row per prior (PSNR, SSIM, seconds)
    restore_comparison.md     the same as a Markdown table
    comparison.png            clean, degraded, then each restoration with its PSNR
    clean.png, degraded.png, <prior>.png
"""

from __future__ import annotations

import importlib.util
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.io.atomic import (
    atomic_save_figure,
    atomic_write_json,
    atomic_write_text,
)
from transferkit.io.runfolder import default_folder, new_empty_folder

from . import images, problems
from .physics import Degradation
from .priors import load_prior
from .restoration import RestoreOptions, restore_problem

COMPARISON_FILE = "restore_comparison.json"
COMPARISON_TABLE = "restore_comparison.md"
COMPARISON_FIGURE = "comparison.png"


def default_priors() -> list[str]:
    """The built-in DRUNet and every classical prior this machine can run."""
    names = ["builtin:drunet", "tv", "wavelet", "nlm"]
    return names + (["bm3d"] if importlib.util.find_spec("bm3d") is not None else [])


@dataclass
class Comparison:
    """The problem, one row per prior, and the folder it was written to."""

    folder: Path
    problem: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "problem": self.problem, "priors": self.rows}

    def table(self) -> str:
        """A Markdown table, best PSNR first."""
        lines = [f"{self.problem['description']} on {self.problem['image']} "
                 f"(degraded: PSNR {self.problem['psnr_input']:.2f} dB, SSIM {self.problem['ssim_input']:.3f})", "",
                 "| prior | PSNR (dB) | SSIM | seconds |", "|---|---:|---:|---:|"]
        for row in sorted(self.rows, key=lambda r: -r["psnr"]):
            lines.append(f"| {row['prior']} | {row['psnr']:.2f} | {row['ssim']:.3f} | {row['seconds']:.2f} |")
        return "\n".join(lines)


def _file_name(prior: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", prior).strip("-.") + ".png"


def compare_priors(input_path: str | Path, degradation: Degradation, priors: list[str] | None = None, *,
                   out: str | Path | None = None, solver: str = "hqs", iterations: int | None = None,
                   seed: int = 0, ensemble: bool = True) -> Comparison:
    """Degrade the clean image at ``input_path`` once (``seed``) and restore it with each prior.

    Every prior is loaded and the image read before the folder is created, so bad input writes
    nothing.

    Example:
        >>> comparison = compare_priors("photo.png", Degradation("denoise"), ["builtin:drunet", "tv"])  # doctest: +SKIP
        >>> print(comparison.table())  # doctest: +SKIP
    """
    names = priors or default_priors()
    loaded = [load_prior(name) for name in names]
    clean = images.read_image(input_path)
    options = RestoreOptions(degradation, solver=solver, iterations=iterations, seed=seed, ensemble=ensemble)
    problem = problems.simulate(clean, degradation, seed)
    if out is not None:
        folder = new_empty_folder(out, "Comparison folder")
    else:
        folder = new_empty_folder(default_folder(Path(input_path).stem, kind="restore-compare"), unique=True)
    problem_record = {
        "image": str(input_path), "description": degradation.describe(), "task": degradation.task,
        "solver": solver, "iterations": options.iteration_count, "seed": seed,
        "psnr_input": images.psnr(problem.degraded, clean), "ssim_input": images.ssim(problem.degraded, clean),
    }
    comparison = Comparison(folder, problem_record)
    restored_images = []
    for prior in loaded:
        started = time.perf_counter()
        restored = restore_problem(problem, prior, options)
        seconds = time.perf_counter() - started
        file_name = _file_name(prior.name)
        images.write_image(folder / file_name, restored)
        comparison.rows.append({"prior": prior.name, "psnr": images.psnr(restored, clean),
                                "ssim": images.ssim(restored, clean), "seconds": seconds, "image": file_name})
        restored_images.append(restored)
    images.write_image(folder / "clean.png", clean)
    images.write_image(folder / "degraded.png", problem.degraded)
    _write_figure(folder / COMPARISON_FIGURE, comparison, clean, problem.degraded, restored_images)
    atomic_write_text(folder / COMPARISON_TABLE, comparison.table() + "\n")
    atomic_write_json(folder / COMPARISON_FILE, comparison.summary())
    return comparison


def _write_figure(path: Path, comparison: Comparison, clean, degraded, restored_images) -> None:
    """One row: clean, degraded, then each prior's restoration titled with its PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("clean", clean), (f"degraded\n{comparison.problem['psnr_input']:.2f} dB", degraded)]
    panels += [(f"{row['prior']}\n{row['psnr']:.2f} dB", image) for row, image in zip(comparison.rows, restored_images)]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
    for axis, (title, image) in zip(axes, panels):
        array = images.to_uint8(image)
        axis.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=255)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.suptitle(comparison.problem["description"], fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.9))  # leave the top tenth to the title
    atomic_save_figure(path, figure)
    plt.close(figure)
