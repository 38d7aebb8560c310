"""Plug-and-play restoration with pre-trained denoisers (issue 15): degradations built on deepinv's
physics, priors (the built-in DRUNet, official DRUNet weights, fine-tuned runs, classical
denoisers), the DPIR-scheduled solvers, and fine-tuning the prior on the user's images.

Example:
    >>> from transferkit.restore import Degradation, RestoreOptions, restore_file
    >>> options = RestoreOptions(Degradation("deblur", kernel="gaussian:1.6", noise_sigma=0.01))
    >>> restore_file("photo.png", options, out="sharp.png")  # doctest: +SKIP
"""

from .compare_priors import Comparison, compare_priors
from .denoiser_train import (
    DenoiserRunResult,
    DenoiserTrainConfig,
    is_denoiser_run,
    load_denoiser_run,
    train_denoiser,
)
from .physics import TASKS, Degradation, parse_kernel
from .priors import CLASSICAL, Prior, load_prior
from .restoration import Restoration, RestoreOptions, restore_file, restore_tensor
from .solver import SOLVERS, Step, dpir_schedule, solve

__all__ = [
    "CLASSICAL", "SOLVERS", "Comparison", "compare_priors", "TASKS", "Degradation", "Prior", "Restoration", "RestoreOptions", "Step",
    "dpir_schedule", "load_prior", "parse_kernel", "restore_file", "restore_tensor", "solve",
    "DenoiserRunResult",
    "DenoiserTrainConfig",
    "is_denoiser_run",
    "load_denoiser_run",
    "train_denoiser",
]
