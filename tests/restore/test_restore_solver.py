"""The plug-and-play solvers: DPIR's schedule (as deepinv computes it), fixed points with a perfect
denoiser, agreement of our HQS with deepinv's own DPIR, progress callbacks and bad arguments."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.restore import drunet
from transferkit.restore import physics as ph
from transferkit.restore.solver import (
    DPIR_LAMBDA,
    DPIR_START_SIGMA,
    MIN_DENOISER_SIGMA,
    SOLVERS,
    Step,
    dpir_schedule,
    solve,
)


@pytest.mark.parametrize("noise", [0.01, 0.02, 0.05, 15 / 255, 25 / 255, 50 / 255])
def test_dpir_schedule_is_deepinvs(noise):
    from deepinv.optim.dpir import get_DPIR_params

    sigmas, stepsizes, iterations = get_DPIR_params(noise)
    schedule = dpir_schedule(iterations, noise)
    assert len(schedule) == iterations == 8
    torch.testing.assert_close(torch.tensor([s for s, _ in schedule], dtype=torch.float64), sigmas.double(), rtol=1e-6, atol=0,
                               check_dtype=False)
    torch.testing.assert_close(torch.tensor([g for _, g in schedule], dtype=torch.float64), stepsizes.double(), rtol=1e-6, atol=0,
                               check_dtype=False)


@pytest.mark.parametrize(("iterations", "noise"), [(2, 0.01), (5, 0.03), (24, 0.01), (8, 0.0), (8, 0.001),
                                                   (3, 49 / 255)])
def test_dpir_schedule_values(iterations, noise):
    schedule = dpir_schedule(iterations, noise)
    sigmas = [s for s, _ in schedule]
    end = max(noise, MIN_DENOISER_SIGMA)  # a zero-noise problem still ends at 1/255 (log-spacing)
    assert len(schedule) == iterations
    assert sigmas[0] == pytest.approx(DPIR_START_SIGMA) and sigmas[-1] == pytest.approx(end)
    ratios = [math.log(b / a) for a, b in itertools.pairwise(sigmas)]
    assert max(ratios) - min(ratios) < 1e-9  # log-spaced: a constant ratio
    for sigma, gamma in schedule:
        assert gamma == pytest.approx((sigma / max(noise, 0.01)) ** 2 / DPIR_LAMBDA)
    assert DPIR_LAMBDA == 0.23


def test_one_iteration_is_the_measurement_noise():
    assert dpir_schedule(1, 0.05) == [(0.05, pytest.approx((0.05 / 0.05) ** 2 / 0.23))]


def _clean_and_noisy(seed: int = 0, shape=(1, 3, 24, 32), sigma: float = 0.05):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(*shape, generator=generator)
    return clean, clean + sigma * torch.randn(*shape, generator=generator)


@pytest.mark.parametrize("solver", SOLVERS)
def test_identity_operator_and_perfect_denoiser_return_the_clean_image(solver):
    clean, noisy = _clean_and_noisy()
    calls = []

    def perfect(image: torch.Tensor, sigma: float) -> torch.Tensor:
        assert image.shape == clean.shape
        calls.append(sigma)
        return clean.clone()

    restored = solve(noisy, ph.denoise_operator(), perfect, noise_sigma=0.05, iterations=6, solver=solver)
    torch.testing.assert_close(restored, clean, atol=1e-6, rtol=0)
    assert len(calls) == 6


@pytest.mark.parametrize("solver", SOLVERS)
def test_clean_measurement_is_a_fixed_point(solver):
    """y = x (identity operator, no noise) and a denoiser that changes nothing: every solver stays at x."""
    clean, _ = _clean_and_noisy()
    restored = solve(clean, ph.denoise_operator(), lambda image, sigma: image, noise_sigma=0.0, iterations=5,
                     solver=solver)
    torch.testing.assert_close(restored, clean, atol=1e-5, rtol=0)


class _Residual(nn.Module):
    """x + DRUNet(x, sigma): a random network whose output is the size of an image (a bare random
    DRUNet outputs values around 0.01), so the comparison below exercises the data step too."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x, sigma, *args, **kwargs):
        return x + self.network(x, sigma)


def _dpir_problem(noise: float, residual: bool):
    torch.manual_seed(0)
    network = drunet.BUILTIN_SHAPE.build().eval()
    denoiser = _Residual(network).eval() if residual else network
    generator = torch.Generator().manual_seed(1)
    clean = torch.rand(1, 3, 32, 32, generator=generator)
    operator = ph.blur_operator(ph.parse_kernel("gaussian:1.6"), (3, 32, 32))
    y = operator.A(clean) + noise * torch.randn(clean.shape, generator=generator)
    return denoiser, operator, y


def _deepinv_dpir(y, operator, denoiser, noise):
    import deepinv

    with torch.no_grad():
        return deepinv.optim.DPIR(sigma=noise, denoiser=denoiser)(y, operator)


@pytest.mark.parametrize("noise", [0.05, 0.01])
def test_hqs_equals_deepinv_dpir(noise):
    """Our HQS with a given denoiser (a small random DRUNet) is deepinv's DPIR with that denoiser."""
    denoiser, operator, y = _dpir_problem(noise, residual=False)
    theirs = _deepinv_dpir(y, operator, denoiser, noise)
    ours = solve(y, operator, denoiser, noise_sigma=noise, iterations=8, solver="hqs", init=None)
    assert ours.shape == theirs.shape == y.shape
    assert float(theirs.abs().max()) > 1e-3  # not a trivially zero output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("noise", [0.05, 0.01])
def test_hqs_equals_deepinv_dpir_step_for_step_with_its_parameters(monkeypatch, noise):
    """With an image-sized denoiser output (x + random DRUNet) our HQS and deepinv's differ by
    1.4e-5 (noise 0.05) and 1.5e-4 (noise 0.01). The only cause is the schedule's precision: deepinv
    computes sigma_k and gamma_k in float32 (torch.logspace), we in float64; they differ by float32
    rounding (< 4e-7 relative, test_dpir_schedule_is_deepinvs), and the data step amplifies a change
    of gamma by its conditioning (gamma_1 = 64 at noise 0.05, 1605 at 0.01; the blur's high
    frequencies are ~0). Given deepinv's own float32 parameters, the iterates are bit-identical."""
    from deepinv.optim.dpir import get_DPIR_params

    from transferkit.restore import solver as solver_module

    sigmas, stepsizes, _ = get_DPIR_params(noise)

    def deepinv_schedule(iterations, noise_sigma):
        assert iterations == 8 and noise_sigma == noise
        return [(float(s), float(g)) for s, g in zip(sigmas, stepsizes)]

    monkeypatch.setattr(solver_module, "dpir_schedule", deepinv_schedule)
    denoiser, operator, y = _dpir_problem(noise, residual=True)
    theirs = _deepinv_dpir(y, operator, denoiser, noise)
    ours = solve(y, operator, denoiser, noise_sigma=noise, iterations=8, solver="hqs", init=None)
    assert float(theirs.abs().max()) > 0.5
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_on_step_is_called_once_per_iteration(solver):
    _, noisy = _clean_and_noisy()
    seen: list[Step] = []
    images: list[torch.Tensor] = []

    def on_step(step: Step, image: torch.Tensor) -> None:
        seen.append(step)
        images.append(image.clone())

    restored = solve(noisy, ph.denoise_operator(), lambda image, sigma: image * 0.9, noise_sigma=0.05,
                     iterations=4, solver=solver, on_step=on_step)
    schedule = dpir_schedule(4, 0.05)
    assert [step.iteration for step in seen] == [1, 2, 3, 4]
    assert [(step.sigma, step.gamma) for step in seen] == schedule
    assert torch.equal(images[-1], restored)


@pytest.mark.parametrize("solver", SOLVERS)
def test_solvers_reduce_the_error_of_a_deblurring_problem(solver):
    """A crude smoothing denoiser on a smooth image: every solver gets closer to it than A^T y."""
    import torch.nn.functional as F

    size = 32
    grid = torch.linspace(0, 1, size)
    clean = (0.5 + 0.4 * torch.sin(6 * grid)[None, :] * torch.cos(4 * grid)[:, None])[None, None].expand(1, 3, -1, -1)
    operator = ph.blur_operator(ph.parse_kernel("gaussian:2"), (3, size, size))
    y = operator.A(clean) + 0.01 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))

    def smooth(image, sigma):
        return F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="circular"), 3, stride=1)

    restored = solve(y, operator, smooth, noise_sigma=0.01, iterations=8, solver=solver)
    assert float((restored - clean).norm()) < float((operator.A_adjoint(y) - clean).norm())


def test_unknown_solver_and_bad_iterations_are_config_errors():
    _, noisy = _clean_and_noisy()
    with pytest.raises(ConfigError, match="solver"):
        solve(noisy, ph.denoise_operator(), lambda image, sigma: image, noise_sigma=0.05, iterations=3,
              solver="fista")
    for iterations in (0, -1):
        with pytest.raises(ConfigError, match="iterations"):
            solve(noisy, ph.denoise_operator(), lambda image, sigma: image, noise_sigma=0.05, iterations=iterations)
        with pytest.raises(ConfigError):
            dpir_schedule(iterations, 0.05)
