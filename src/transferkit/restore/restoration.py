"""``transferkit restore``: one image through a plug-and-play solver with a chosen prior.

Example:
    >>> from transferkit.restore import Degradation, RestoreOptions, restore_file
    >>> result = restore_file("photo.png", RestoreOptions(Degradation("deblur", kernel="gaussian:1.6")),
    ...                       simulate=True)  # doctest: +SKIP
    >>> round(result.psnr - result.psnr_input, 1)  # doctest: +SKIP
    4.2
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from transferkit.errors import ConfigError

from . import images, problems
from .physics import Degradation
from .priors import Prior, load_prior, self_ensemble
from .solver import SOLVERS, Step, solve


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore: the degradation, the prior, the solver and its iterations.

    ``iterations`` None: :data:`~transferkit.restore.problems.DEFAULT_ITERATIONS` for the task.
    """

    degradation: Degradation
    prior: str = "builtin:drunet"
    solver: str = "hqs"
    iterations: int | None = None
    seed: int = 0
    ensemble: bool = True  # denoise with a network prior: the x8 flip/turn self-ensemble

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ConfigError(f"Unknown --solver {self.solver!r}: use one of {', '.join(SOLVERS)}.")
        if self.iterations is not None and not 1 <= self.iterations <= 500:
            raise ConfigError(f"--iterations {self.iterations} must be between 1 and 500.")

    @property
    def iteration_count(self) -> int:
        return self.iterations or problems.DEFAULT_ITERATIONS[self.degradation.task]


@dataclass
class Restoration:
    """The restored image [1, C, H, W] and what it took; scores only with a clean reference."""

    image: torch.Tensor
    degraded: torch.Tensor
    prior: str
    solver: str
    iterations: int
    seconds: float
    clean: torch.Tensor | None = field(default=None, repr=False)
    psnr_input: float | None = None
    psnr: float | None = None
    ssim_input: float | None = None
    ssim: float | None = None

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object."""
        values = {"psnr_input": self.psnr_input, "psnr": self.psnr, "ssim_input": self.ssim_input,
                  "ssim": self.ssim, "seconds": round(self.seconds, 3), "iterations": self.iterations,
                  "prior": self.prior, "solver": self.solver}
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in values.items()}


def restore_problem(problem: problems.Problem, prior: Prior, options: RestoreOptions,
                    on_step: Callable[[Step, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run the solver; the answer cropped to the output's size and clipped to [0, 1]."""
    iterations = options.iteration_count
    if options.degradation.task == "denoise" and iterations == 1:
        # One denoiser call at the measurement's noise: what every solver reduces to here.
        if options.ensemble and prior.kind == "drunet":
            return self_ensemble(prior, problem.measurement, problem.noise_sigma).clamp(0, 1)
        return prior(problem.measurement, problem.noise_sigma).clamp(0, 1)

    def report(step: Step, current: torch.Tensor) -> None:
        if on_step is not None:
            on_step(step, problem.crop(current).clamp(0, 1))

    x = solve(problem.measurement, problem.operator, prior, noise_sigma=problem.noise_sigma,
              iterations=iterations, solver=options.solver, init=problem.init, on_step=report)
    return problem.crop(x).clamp(0, 1)


def restore_tensor(image: torch.Tensor, options: RestoreOptions, *, simulate: bool = False,
                   prior: Prior | None = None,
                   on_step: Callable[[Step, torch.Tensor], None] | None = None) -> Restoration:
    """Restore a [1, C, H, W] image; with ``simulate`` it is clean and is degraded first (seeded),
    and the result carries PSNR and SSIM of the degraded and restored images against it."""
    prior = load_prior(options.prior) if prior is None else prior
    if simulate:
        problem = problems.simulate(image, options.degradation, options.seed)
    else:
        problem = problems.from_measurement(image, options.degradation)
    started = time.perf_counter()
    restored = restore_problem(problem, prior, options, on_step)
    seconds = time.perf_counter() - started
    result = Restoration(restored, problem.degraded, prior.name, options.solver, options.iteration_count, seconds)
    if simulate:
        result.clean = image
        result.psnr_input, result.psnr = images.psnr(problem.degraded, image), images.psnr(restored, image)
        result.ssim_input, result.ssim = images.ssim(problem.degraded, image), images.ssim(restored, image)
    return result


def restore_file(input_path: str | Path, options: RestoreOptions, *, out: str | Path | None = None,
                 simulate: bool = False, save_steps: str | Path | None = None,
                 on_step: Callable[[Step, torch.Tensor], None] | None = None) -> Restoration:
    """Read ``input_path``, restore it, write ``out`` (atomically) and, with ``save_steps``, each
    iteration's image as ``step-01.png`` ... in that folder. Everything is checked before any work,
    so bad input writes nothing."""
    if out is not None:
        images.check_output_path(out)
    steps_folder = _steps_folder(save_steps)
    prior = load_prior(options.prior)
    image = images.read_image(input_path)
    saved: list[tuple[Path, torch.Tensor]] = []

    def step_hook(step: Step, current: torch.Tensor) -> None:
        if steps_folder is not None:
            saved.append((steps_folder / f"step-{step.iteration:02d}.png", current.clone()))
        if on_step is not None:
            on_step(step, current)

    result = restore_tensor(image, options, simulate=simulate, prior=prior, on_step=step_hook)
    if steps_folder is not None:
        steps_folder.mkdir(parents=True, exist_ok=True)
        images.write_image(steps_folder / "degraded.png", result.degraded)
        for path, step_image in saved:
            images.write_image(path, step_image)
    if out is not None:
        images.write_image(out, result.image)
    return result


def _steps_folder(save_steps: str | Path | None) -> Path | None:
    if save_steps is None:
        return None
    folder = Path(save_steps)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"--save-steps {folder} exists and is not an empty folder. Name a new folder.")
    if not folder.parent.is_dir():
        raise ConfigError(f"--save-steps {folder}: the folder {folder.parent} does not exist. Create it first.")
    return folder
