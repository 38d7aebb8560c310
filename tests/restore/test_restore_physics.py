"""The operators the solver uses: adjoints (inner-product test, float64), the closed-form data step
(residual of its normal equations), kernels (normalised, odd, oriented, centred), edge tapering,
and the simulated degradation (seeded; equal to the solver's circular blur in the centre)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.errors import ConfigError, DataError
from transferkit.restore import physics as ph
from transferkit.restore import problems


@pytest.fixture(scope="module")
def kernel_file(tmp_path_factory) -> str:
    """An asymmetric 4x6 kernel (even sides) saved with numpy.save."""
    path = tmp_path_factory.mktemp("kernel") / "k.npy"
    np.save(path, np.random.default_rng(0).random((4, 6)))
    return str(path)


# (name, [C, H, W] of x, operator factory): every operator the solver builds, on a small domain.
def _operators(kernel_file: str):
    mask = ph.random_mask(40, 48, 0.5, torch.Generator().manual_seed(0))
    return {
        "blur-gaussian": ((3, 40, 48), lambda: ph.blur_operator(ph.parse_kernel("gaussian:1.6"), (3, 40, 48))),
        "blur-motion": ((1, 40, 48), lambda: ph.blur_operator(ph.parse_kernel("motion:9,30"), (1, 40, 48))),
        "blur-npy": ((3, 40, 48), lambda: ph.blur_operator(ph.parse_kernel(kernel_file), (3, 40, 48))),
        "inpaint": ((3, 40, 48), lambda: ph.inpaint_operator(mask, (3, 40, 48))),
        "downsample-2": ((3, 48, 48), lambda: ph.downsampling_operator(2, (3, 48, 48))),
        "downsample-3": ((1, 48, 48), lambda: ph.downsampling_operator(3, (1, 48, 48))),
        "downsample-4": ((3, 48, 48), lambda: ph.downsampling_operator(4, (3, 48, 48))),
        "denoise": ((3, 40, 48), ph.denoise_operator),
    }


OPERATOR_NAMES = ["blur-gaussian", "blur-motion", "blur-npy", "inpaint", "downsample-2", "downsample-3",
                  "downsample-4", "denoise"]


def _operator_and_x(name: str, kernel_file: str, seed: int = 1):
    shape, factory = _operators(kernel_file)[name]
    operator = factory().double()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, *shape, generator=generator, dtype=torch.float64)
    y = torch.randn(operator.A(x).shape, generator=generator, dtype=torch.float64)
    return operator, x, y, generator


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_adjoint_is_the_adjoint(kernel_file, name):
    operator, x, y, _ = _operator_and_x(name, kernel_file)
    ax, aty = operator.A(x), operator.A_adjoint(y)
    assert ax.dtype == aty.dtype == torch.float64
    assert aty.shape == x.shape
    left, right = float((ax * y).sum()), float((x * aty).sum())
    scale = float(ax.norm() * y.norm())  # the size of the inner products: a relative, not absolute, test
    assert abs(left - right) <= 1e-4 * scale, (name, left, right)


@pytest.mark.parametrize("name", OPERATOR_NAMES)
def test_data_step_solves_its_least_squares_problem(kernel_file, name):
    """r = argmin 1/2 ||A r - y||^2 + 1/(2 gamma) ||r - z||^2  <=>  A^T(A r - y) + (r - z)/gamma = 0."""
    operator, x, y, generator = _operator_and_x(name, kernel_file)
    for gamma in (0.01, 0.3, 1.0, 10.0, 100.0):
        z = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        r = operator.prox_l2(z, y, gamma)
        residual = operator.A_adjoint(operator.A(r) - y) + (r - z) / gamma
        size = float(operator.A_adjoint(y).norm() + z.norm() / gamma)
        assert float(residual.norm()) < 1e-4 * size, (name, gamma, float(residual.norm()) / size)


@pytest.mark.parametrize("spec", ["gaussian:0.5", "gaussian:1.6", "gaussian:3", "motion:1,0", "motion:9,30",
                                  "motion:15,45", "motion:7.5,100", "motion:20,-20"])
def test_parsed_kernels_sum_to_one_and_have_odd_size(spec):
    kernel = ph.parse_kernel(spec)
    assert kernel.ndim == 4 and kernel.shape[:2] == (1, 1) and kernel.shape[-1] == kernel.shape[-2]
    assert kernel.shape[-1] % 2 == 1
    assert (kernel >= 0).all()
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-5)


def test_default_kernel_is_gaussian_1_6():
    assert torch.equal(ph.parse_kernel(None), ph.parse_kernel("gaussian:1.6"))


@pytest.mark.parametrize("length", [5, 9, 15])
def test_motion_kernel_orientation(length):
    """Angle 0 is a horizontal line through the centre, 90 a vertical one; the extent is the length."""
    horizontal = ph.parse_kernel(f"motion:{length},0")[0, 0]
    vertical = ph.parse_kernel(f"motion:{length},90")[0, 0]
    centre = horizontal.shape[-1] // 2
    assert float(horizontal[centre].sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(vertical[:, centre].sum()) == pytest.approx(1.0, abs=1e-6)
    assert int((horizontal[centre] > 1e-3).sum()) in (length, length + 1)
    assert int((vertical[:, centre] > 1e-3).sum()) in (length, length + 1)
    # symmetric about the centre pixel, and 90 degrees is 0 degrees transposed
    torch.testing.assert_close(horizontal, horizontal.flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(vertical, horizontal.T, atol=1e-6, rtol=0)


def test_motion_kernel_45_degrees_runs_up_and_to_the_right():
    """Counter-clockwise from the x axis with image rows going down: 45 degrees lies on the
    anti-diagonal (top right to bottom left)."""
    kernel = ph.parse_kernel("motion:9,45")[0, 0]
    c = kernel.shape[-1] // 2
    top_right, bottom_left = kernel[:c, c + 1:].sum(), kernel[c + 1:, :c].sum()
    top_left, bottom_right = kernel[:c, :c].sum(), kernel[c + 1:, c + 1:].sum()
    assert float(top_right) == pytest.approx(float(bottom_left), abs=1e-5)
    assert float(top_right) > 0.35 and float(top_left + bottom_right) < 1e-6


def test_npy_kernel_with_even_sides_is_centred(tmp_path):
    """An even side gets a zero row/column at its end: index k // 2 of the file becomes the centre,
    and the centre of mass moves by at most half a pixel."""
    delta = np.zeros((4, 6))
    delta[2, 3] = 1.0
    np.save(tmp_path / "delta.npy", delta)
    kernel = ph.parse_kernel(str(tmp_path / "delta.npy"))[0, 0]
    assert kernel.shape[-1] % 2 == 1
    centre = kernel.shape[-1] // 2
    assert float(kernel[centre, centre]) == pytest.approx(1.0)

    box = np.ones((4, 4))
    np.save(tmp_path / "box.npy", box)
    kernel = ph.parse_kernel(str(tmp_path / "box.npy"))[0, 0].double()
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-6)
    rows = torch.arange(kernel.shape[0], dtype=torch.float64)
    centre = kernel.shape[-1] // 2
    assert abs(float((kernel.sum(1) * rows).sum()) - centre) <= 0.5
    assert abs(float((kernel.sum(0) * rows).sum()) - centre) <= 0.5


def test_npy_kernel_with_odd_sides_is_kept_as_is(tmp_path):
    array = np.random.default_rng(1).random((5, 5))
    np.save(tmp_path / "k.npy", array)
    kernel = ph.parse_kernel(str(tmp_path / "k.npy"))[0, 0].double().numpy()
    np.testing.assert_allclose(kernel, array / array.sum(), rtol=1e-6)


@pytest.mark.parametrize("spec", ["gaussian", "gaussian:x", "gaussian:0", "gaussian:nan", "motion:9",
                                  "motion:0,10", "box:3", ""])
def test_bad_kernel_specs_are_config_errors(spec):
    with pytest.raises(ConfigError):
        ph.parse_kernel(spec or "nonsense")


@pytest.mark.parametrize("array", [np.ones((3, 3, 3)), -np.ones((3, 3)), np.zeros((3, 3)),
                                   np.array([[np.nan, 1], [1, 1]])], ids=["3d", "negative", "zero", "nan"])
def test_bad_kernel_files_are_data_errors(tmp_path, array):
    np.save(tmp_path / "k.npy", array)
    with pytest.raises(DataError):
        ph.parse_kernel(str(tmp_path / "k.npy"))


def test_edge_taper_leaves_the_central_image_untouched():
    clean = torch.rand(1, 3, 40, 44, generator=torch.Generator().manual_seed(0))
    kernel = ph.parse_kernel("motion:9,30")
    margin = ph.reflect_margin(kernel)
    padded = ph.pad_reflect(clean, margin)
    operator = ph.blur_operator(kernel, tuple(padded.shape[1:]))
    tapered = ph.edge_taper(padded, operator, margin)
    centre = (..., slice(margin, -margin), slice(margin, -margin))
    assert torch.equal(tapered[centre], padded[centre])
    assert not torch.allclose(tapered, padded)  # the margin was blended
    # the outer edge becomes the circular blur's own values there: wrap-around is continuous
    edge = (..., slice(0, 1), slice(None))
    assert float((tapered - operator.A(tapered))[edge].abs().max()) < float((padded - operator.A(padded))[edge].abs().max())


@pytest.mark.parametrize("degradation", [ph.Degradation("deblur", kernel="motion:9,30"), ph.Degradation("denoise"),
                                         ph.Degradation("inpaint", mask_ratio=0.4),
                                         ph.Degradation("super-resolve", scale=2)],
                         ids=lambda d: d.task)
def test_simulate_is_deterministic_for_a_seed(degradation):
    clean = torch.rand(1, 3, 40, 44, generator=torch.Generator().manual_seed(0))
    first = problems.simulate(clean, degradation, seed=3)
    again = problems.simulate(clean, degradation, seed=3)
    other = problems.simulate(clean, degradation, seed=4)
    assert torch.equal(first.measurement, again.measurement)
    assert torch.equal(first.degraded, again.degraded)
    assert not torch.allclose(first.measurement, other.measurement)


@pytest.mark.parametrize("spec", ["gaussian:1.6", "motion:9,30", "npy"])
def test_simulated_blur_is_the_solver_circular_blur_in_the_centre(kernel_file, spec):
    """A camera's blur (reflection at the borders) equals, on the image, the solver's circular blur
    of the reflect-padded clean image: the model the data step inverts is the one that made y."""
    spec = kernel_file if spec == "npy" else spec
    clean = torch.rand(1, 3, 40, 44, generator=torch.Generator().manual_seed(0))
    problem = problems.simulate(clean, ph.Degradation("deblur", kernel=spec, noise_sigma=0.0))
    kernel = ph.parse_kernel(spec)
    margin = ph.reflect_margin(kernel)
    padded = ph.pad_reflect(clean, margin)
    circular = ph.blur_operator(kernel, tuple(padded.shape[1:])).A(padded)
    assert problem.margin == margin
    torch.testing.assert_close(problem.crop(circular), problem.degraded, atol=1e-5, rtol=0)
    assert problem.measurement.shape == padded.shape


def test_degradation_checks_sizes_before_work():
    clean = torch.rand(1, 1, 16, 16)
    with pytest.raises(DataError, match="larger than the image"):
        problems.simulate(clean, ph.Degradation("deblur", kernel="gaussian:3"))  # 19x19 kernel
    with pytest.raises(DataError, match="does not divide"):
        problems.simulate(clean, ph.Degradation("super-resolve", scale=3))
