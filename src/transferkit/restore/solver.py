"""Plug-and-play solvers: half-quadratic splitting (HQS), ADMM and proximal gradient (PGD), all on
the DPIR schedule (Zhang et al. 2021).

The denoiser's noise level decreases log-spaced from 49/255 to the measurement noise over the
iterations, and the data step weighs the measurement against the denoised image with
``gamma_k = (sigma_k / max(sigma_n, 0.01))^2 / lambda`` (lambda = 0.23), DPIR's penalty weights: the
same parameters as deepinv's ``DPIR``. The data step is the operator's closed form (FFT for a
circular blur or bicubic downsampling, per-pixel for inpainting and denoising), from deepinv's
``prox_l2``: argmin_x 1/2 ||A x - y||^2 + 1/(2 gamma) ||x - z||^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from transferkit.errors import ConfigError

SOLVERS = ("hqs", "admm", "pgd")
DPIR_START_SIGMA = 49 / 255
DPIR_LAMBDA = 0.23
# The schedule ends at the measurement noise, but never below this: a denoiser asked to remove
# (almost) no noise does nothing, and log-spacing needs a positive end.
MIN_DENOISER_SIGMA = 1 / 255


@dataclass(frozen=True)
class Step:
    """What one iteration did: its number (from 1), the denoiser's level and the data weight."""

    iteration: int
    sigma: float
    gamma: float


def dpir_schedule(iterations: int, noise_sigma: float) -> list[tuple[float, float]]:
    """(denoiser sigma, data-step gamma) for each iteration, DPIR's values.

    Example:
        >>> [round(s * 255, 1) for s, _ in dpir_schedule(3, 0.01)]
        [49.0, 11.2, 2.6]
    """
    if iterations < 1:
        raise ConfigError(f"--iterations {iterations} must be at least 1.")
    end = max(noise_sigma, MIN_DENOISER_SIGMA)
    if iterations == 1:
        sigmas = [end]
    else:
        start, stop = math.log10(DPIR_START_SIGMA), math.log10(end)
        sigmas = [10 ** (start + (stop - start) * k / (iterations - 1)) for k in range(iterations)]
    return [(sigma, (sigma / max(noise_sigma, 0.01)) ** 2 / DPIR_LAMBDA) for sigma in sigmas]


def solve(y: torch.Tensor, physics, denoiser: Callable[[torch.Tensor, float], torch.Tensor], *,
          noise_sigma: float, iterations: int, solver: str = "hqs", init: torch.Tensor | None = None,
          on_step: Callable[[Step, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Restore ``x`` from ``y = A x + noise`` with a plug-and-play ``denoiser(x, sigma)``.

    Args:
        y: the measurement [B, C, h, w] (h, w: the operator's output size).
        physics: a deepinv linear physics (``A``, ``A_adjoint``, ``prox_l2``).
        denoiser: maps ([B, C, H, W], sigma on the 0-1 scale) to a denoised image.
        noise_sigma: the measurement noise (0-1 scale); it ends the schedule.
        iterations: how many denoiser calls.
        solver: ``hqs`` (DPIR), ``admm`` or ``pgd``.
        init: the starting image [B, C, H, W]; default ``A^T y`` (as deepinv).
        on_step: called after every iteration with the step and the current image.

    Returns:
        The restored image [B, C, H, W] (the last denoiser output).
    """
    if solver not in SOLVERS:
        raise ConfigError(f"Unknown --solver {solver!r}: use one of {', '.join(SOLVERS)}.")
    schedule = dpir_schedule(iterations, noise_sigma)
    x = physics.A_adjoint(y) if init is None else init
    step_function = {"hqs": _hqs, "admm": _admm, "pgd": _pgd}[solver]
    state: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for number, (sigma, gamma) in enumerate(schedule, start=1):
            x = step_function(x, y, physics, denoiser, sigma, gamma, state)
            if on_step is not None:
                on_step(Step(number, sigma, gamma), x)
    return x


def _hqs(x, y, physics, denoiser, sigma, gamma, state):
    """z = prox_{gamma f}(x); x = D(z, sigma): deepinv's HQS with the data step first."""
    return denoiser(physics.prox_l2(x, y, gamma), sigma)


def _admm(x, y, physics, denoiser, sigma, gamma, state):
    """v = prox_{gamma f}(x - u); x = D(v + u, sigma); u += v - x (scaled dual)."""
    u = state.get("u", torch.zeros_like(x))
    v = physics.prox_l2(x - u, y, gamma)
    x = denoiser(v + u, sigma)
    state["u"] = u + v - x
    return x


def _pgd(x, y, physics, denoiser, sigma, gamma, state):
    """x = D(x - tau A^T (A x - y), sigma) with tau = 1 / ||A||^2 (power iteration, once)."""
    if "tau" not in state:
        state["tau"] = torch.tensor(1.0 / max(_squared_norm(physics, x), 1e-6))
    gradient = physics.A_adjoint(physics.A(x) - y)
    return denoiser(x - state["tau"] * gradient, sigma)


def _squared_norm(physics, like: torch.Tensor, iterations: int = 30) -> float:
    """||A||^2, the largest eigenvalue of A^T A, by power iteration from a fixed start."""
    v = torch.randn(like.shape, generator=torch.Generator().manual_seed(0)).to(like)
    value = 1.0
    for _ in range(iterations):
        v = physics.A_adjoint(physics.A(v))
        value = float(v.norm())
        v = v / max(value, 1e-12)
    return value
