"""`transferkit restore` end to end on 64x64 crops (grey camera, colour astronaut): every task with
--simulate --json, written images, --save-steps, --compare-priors, the solvers, and bad input
(exit 2, one line on stderr, no traceback, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli
from PIL import Image

from transferkit.restore.compare_priors import (
    COMPARISON_FIGURE,
    COMPARISON_FILE,
    COMPARISON_TABLE,
)

SUMMARY_KEYS = {"psnr_input", "psnr", "ssim_input", "ssim", "seconds", "iterations", "prior"}
FEW = ("--iterations", "2")  # enough to exercise the loop; quality is tested elsewhere


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    """64x64 crops of scikit-image's camera (grey) and astronaut (colour) as PNGs."""
    import skimage.data

    root = tmp_path_factory.mktemp("pictures")
    Image.fromarray(skimage.data.camera()[100:164, 180:244]).save(root / "grey.png")
    Image.fromarray(skimage.data.astronaut()[100:164, 180:244]).save(root / "colour.png")
    return {"grey": root / "grey.png", "colour": root / "colour.png"}


def _json(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


TASKS = [("deblur", ("--kernel", "gaussian:1.6")), ("deblur", ("--kernel", "motion:9,30")), ("denoise", ()),
         ("inpaint", ("--mask-ratio", "0.5")), ("super-resolve", ("--scale", "2"))]


@pytest.mark.parametrize(("task", "options"), TASKS, ids=["deblur-gaussian", "deblur-motion", "denoise", "inpaint",
                                                          "super-resolve"])
@pytest.mark.parametrize("kind", ["grey", "colour"])
def test_each_task_simulated_prints_one_json_object(capsys, tmp_path, pictures, task, options, kind):
    out = tmp_path / "restored.png"
    code, stdout, err = run_cli(capsys, "restore", "--task", task, "--input", pictures[kind], "--simulate", "--json",
                                "--out", out, *options, *FEW)
    assert code == 0, err
    summary = _json(stdout)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["prior"] == "builtin:drunet" and summary["iterations"] == 2
    for key in ("psnr_input", "psnr", "ssim_input", "ssim", "seconds"):
        assert isinstance(summary[key], float) and np.isfinite(summary[key]), (key, summary)
    assert 0 < summary["ssim_input"] <= 1 and 0 < summary["ssim"] <= 1
    with Image.open(out) as written:
        assert written.size == (64, 64)
        assert written.mode == ("L" if kind == "grey" else "RGB")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restored.png"]  # no temporary files left


def test_default_iterations_and_progress_without_json(capsys, tmp_path, pictures):
    code, stdout, err = run_cli(capsys, "restore", "--task", "deblur", "--input", pictures["grey"], "--simulate")
    assert code == 0, err
    assert err.count("iteration ") == 8 and "iteration 8/8" in err
    assert "PSNR" in stdout and "->" in stdout and "8 iterations" in stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kind", ["grey", "colour"])
def test_super_resolve_writes_scale_times_the_input(capsys, tmp_path, pictures, scale, kind):
    """Without --simulate the input is the low-resolution image: the output is scale x its size."""
    source = tmp_path / "small.png"
    with Image.open(pictures[kind]) as opened:
        opened.crop((0, 0, 48, 40)).save(source)
    out = tmp_path / "big.png"
    code, _, err = run_cli(capsys, "restore", "--task", "super-resolve", "--scale", scale, "--input", source,
                           "--out", out, *FEW)
    assert code == 0, err
    with Image.open(out) as written:
        assert written.size == (48 * scale, 40 * scale)
        assert written.mode == ("L" if kind == "grey" else "RGB")


@pytest.mark.parametrize("task", ["deblur", "denoise"])
def test_restoring_a_real_measurement_keeps_size_and_mode(capsys, tmp_path, pictures, task):
    out = tmp_path / "out.tif"
    code, stdout, err = run_cli(capsys, "restore", "--task", task, "--input", pictures["colour"], "--out", out, *FEW)
    assert code == 0, err
    assert str(out) in stdout and "PSNR" not in stdout
    with Image.open(out) as written:
        assert written.size == (64, 64) and written.mode == "RGB"


def test_a_phone_photo_is_restored_upright(capsys, tmp_path):
    # Stored 96 x 48 with EXIF orientation 6 (turn 90 degrees): viewers show it 48 wide, 96 high,
    # and so must the restored image, which carries no EXIF of its own.
    photo = tmp_path / "phone.jpg"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 96, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(photo, exif=exif)
    out = tmp_path / "out.png"
    code, _, err = run_cli(capsys, "restore", "--task", "denoise", "--prior", "tv", "--input", photo, "--out", out)
    assert code == 0, err
    with Image.open(out) as written:
        assert written.size == (48, 96)


def test_inpaint_with_a_mask_file(capsys, tmp_path, pictures):
    mask = np.full((64, 64), 255, dtype=np.uint8)
    mask[20:40, 10:50] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "filled.png"
    code, stdout, err = run_cli(capsys, "restore", "--task", "inpaint", "--mask", tmp_path / "mask.png", "--input",
                                pictures["grey"], "--simulate", "--json", "--out", out, *FEW)
    assert code == 0, err
    summary = _json(stdout)
    assert summary["psnr"] > summary["psnr_input"]
    with Image.open(out) as written:
        assert written.size == (64, 64) and written.mode == "L"


def test_save_steps_writes_one_image_per_iteration(capsys, tmp_path, pictures):
    steps = tmp_path / "steps"
    code, _, err = run_cli(capsys, "restore", "--task", "deblur", "--input", pictures["colour"], "--simulate",
                           "--save-steps", steps, "--iterations", "3", "--json")
    assert code == 0, err
    assert sorted(p.name for p in steps.iterdir()) == ["degraded.png", "step-01.png", "step-02.png", "step-03.png"]
    for path in steps.iterdir():
        with Image.open(path) as written:
            assert written.size == (64, 64) and written.mode == "RGB"


@pytest.mark.parametrize("solver", ["admm", "pgd"])
def test_other_solvers_run(capsys, pictures, solver):
    code, stdout, err = run_cli(capsys, "restore", "--task", "deblur", "--input", pictures["grey"], "--simulate",
                                "--json", "--solver", solver, "--iterations", "4")
    assert code == 0, err
    summary = _json(stdout)
    assert summary["solver"] == solver and summary["iterations"] == 4
    assert summary["psnr"] > summary["psnr_input"]


def test_compare_priors_writes_a_table_and_a_figure(capsys, tmp_path, pictures):
    folder = tmp_path / "comparison"
    priors = ("builtin:drunet", "tv", "wavelet", "nlm")
    code, stdout, err = run_cli(capsys, "restore", "--task", "denoise", "--input", pictures["grey"], "--simulate",
                                "--compare-priors", "--out", folder, *[a for p in priors for a in ("--prior", p)])
    assert code == 0, err
    assert str(folder) in stdout
    record = json.loads((folder / COMPARISON_FILE).read_text())
    assert [row["prior"] for row in record["priors"]] == list(priors)
    for row in record["priors"]:
        assert {"psnr", "ssim", "seconds", "image"} <= set(row) and (folder / row["image"]).is_file()
        assert row["psnr"] > record["problem"]["psnr_input"]
    table = (folder / COMPARISON_TABLE).read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| prior")]
    assert sorted(line.split(" | ")[0].lstrip("| ") for line in rows) == sorted(priors)
    with Image.open(folder / COMPARISON_FIGURE) as figure:
        assert figure.size[0] > figure.size[1]  # one row: clean, degraded, each prior
    assert {"clean.png", "degraded.png"} <= {p.name for p in folder.iterdir()}


def test_compare_priors_json(capsys, tmp_path, pictures):
    folder = tmp_path / "comparison"
    code, stdout, err = run_cli(capsys, "restore", "--task", "deblur", "--input", pictures["colour"], "--simulate",
                                "--compare-priors", "--json", "--out", folder, "--prior", "tv", "--prior", "builtin:drunet",
                                *FEW)
    assert code == 0, err
    summary = _json(stdout)
    assert [row["prior"] for row in summary["priors"]] == ["tv", "builtin:drunet"]
    assert summary["folder"] == str(folder)


# --- bad input -----------------------------------------------------------------------------------

def _bad_inputs(root: Path, pictures: dict[str, Path]) -> dict[str, tuple[list, str]]:
    """name -> (arguments, a fragment the error must name). Files they need are made under root/inputs."""
    import torchvision

    inputs = root / "inputs"
    inputs.mkdir()
    (inputs / "x.png").write_text("this is not an image\n")
    Image.fromarray(np.full((32, 32), 255, dtype=np.uint8)).save(inputs / "small-mask.png")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), inputs / "resnet18.pth")
    np.save(inputs / "kernel3d.npy", np.ones((3, 3, 3)))
    np.save(inputs / "big.npy", np.ones((65, 65)))
    grey, out = str(pictures["grey"]), str(root / "out" / "restored.png")
    return {
        "unreadable-image": (["--task", "denoise", "--input", inputs / "x.png", "--out", out], "cannot be read"),
        "missing-image": (["--task", "denoise", "--input", inputs / "none.png", "--out", out], "none.png"),
        "kernel-larger-than-image": (["--task", "deblur", "--kernel", "gaussian:20", "--input", grey, "--out", out],
                                     "larger than the image"),
        "kernel-larger-simulated": (["--task", "deblur", "--kernel", inputs / "big.npy", "--input", grey,
                                     "--simulate", "--out", out], "larger than the image"),
        "mask-of-another-size": (["--task", "inpaint", "--mask", inputs / "small-mask.png", "--input", grey,
                                  "--out", out], "32x32"),
        "mask-of-another-size-simulated": (["--task", "inpaint", "--mask", inputs / "small-mask.png", "--input", grey,
                                            "--simulate", "--out", out], "32x32"),
        "scale-does-not-divide": (["--task", "super-resolve", "--scale", "3", "--input", grey, "--simulate",
                                   "--out", out], "does not divide"),
        "noise-out-of-range": (["--task", "denoise", "--noise-sigma", "0.5", "--input", grey, "--out", out],
                               "noise-sigma"),
        "noise-negative": (["--task", "denoise", "--noise-sigma", "-0.1", "--input", grey, "--out", out],
                           "noise-sigma"),
        "prior-of-another-architecture": (["--task", "denoise", "--prior", inputs / "resnet18.pth", "--input", grey,
                                           "--out", out], "not a DRUNet"),
        "prior-does-not-exist": (["--task", "denoise", "--prior", inputs / "none.pth", "--input", grey, "--out", out],
                                 "none.pth"),
        "mask-ratio-above-one": (["--task", "inpaint", "--mask-ratio", "1.5", "--input", grey, "--simulate",
                                  "--out", out], "mask-ratio"),
        "inpaint-without-mask": (["--task", "inpaint", "--input", grey, "--out", out], "--mask"),
        "unsupported-out-suffix": (["--task", "denoise", "--input", grey, "--out", root / "out" / "restored.xyz"],
                                   ".xyz"),
        "out-in-missing-folder": (["--task", "denoise", "--input", grey, "--out", root / "missing" / "r.png"],
                                  "does not exist"),
        "compare-priors-without-simulate": (["--task", "denoise", "--input", grey, "--compare-priors", "--out",
                                             root / "out" / "comparison"], "--simulate"),
        "kernel-npy-3d": (["--task", "deblur", "--kernel", inputs / "kernel3d.npy", "--input", grey, "--out", out],
                          "2-D"),
        "kernel-not-understood": (["--task", "deblur", "--kernel", "box:3", "--input", grey, "--out", out],
                                  "not understood"),
        "kernel-for-denoise": (["--task", "denoise", "--kernel", "gaussian:1", "--input", grey, "--out", out],
                               "--kernel"),
        "save-steps-in-missing-folder": (["--task", "deblur", "--input", grey, "--simulate", "--save-steps",
                                          root / "missing" / "steps"], "does not exist"),
    }


BAD = ["unreadable-image", "missing-image", "kernel-larger-than-image", "kernel-larger-simulated",
       "mask-of-another-size", "mask-of-another-size-simulated", "scale-does-not-divide", "noise-out-of-range",
       "noise-negative", "prior-of-another-architecture", "prior-does-not-exist", "mask-ratio-above-one",
       "inpaint-without-mask", "unsupported-out-suffix", "out-in-missing-folder", "compare-priors-without-simulate",
       "kernel-npy-3d", "kernel-not-understood", "kernel-for-denoise", "save-steps-in-missing-folder"]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, pictures, name, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default runs/ folder would land here
    (tmp_path / "out").mkdir()
    arguments, fragment = _bad_inputs(tmp_path, pictures)[name]
    before = _tree(tmp_path)
    code, stdout, err = run_cli(capsys, "restore", *arguments)
    assert_clean_error(code, err, fragment)
    assert stdout == ""
    assert _tree(tmp_path) == before, _tree(tmp_path) - before
    assert not any(p.name.startswith(".") for p in pictures["grey"].parent.iterdir())  # no temporary files
