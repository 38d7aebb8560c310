"""``transferkit restore``: deblur, inpaint, super-resolve or denoise one image with a pre-trained
denoiser as the prior; ``--simulate`` scores it, ``--compare-priors`` races several priors."""

from __future__ import annotations

import json
from pathlib import Path

import click

from transferkit import restore

from .app import cli
from .options import COUNT, FiniteFloat

__all__ = ["restore_cmd"]


@cli.command("restore")
@click.option("--task", type=click.Choice(restore.TASKS), required=True, help="What to undo.")
@click.option("--input", "input_path", type=click.Path(), required=True,
              help="The degraded image (with --simulate: a clean image to degrade first).")
@click.option("--out", type=click.Path(), help="The restored image (.png, .tif, .jpg, ...); with "
              "--compare-priors a new folder (default: runs/restore-compare-<image>-<time>).")
@click.option("--prior", "priors", multiple=True, show_default=True,
              help="builtin:drunet (default), tv, wavelet, nlm, bm3d, a run folder of `transferkit denoiser "
                   "train`, or DRUNet weights (.pth/.safetensors). Repeat with --compare-priors.")
@click.option("--kernel", help="deblur: gaussian:SIGMA, motion:LENGTH,ANGLE or FILE.npy (default gaussian:1.6).")
@click.option("--noise-sigma", type=FiniteFloat(0), help="Measurement noise on the 0-1 scale (default 0.01; "
              "denoise: 0.098 = 25/255).")
@click.option("--mask", type=click.Path(dir_okay=False), help="inpaint: a PNG, white = known pixel.")
@click.option("--mask-ratio", type=FiniteFloat(0), help="inpaint with --simulate: fraction of pixels removed "
              "at random (default 0.5).")
@click.option("--scale", type=click.Choice(["2", "3", "4"]), default="2", show_default=True,
              help="super-resolve: the upscaling factor.")
@click.option("--solver", type=click.Choice(restore.SOLVERS), default="hqs", show_default=True,
              help="hqs: half-quadratic splitting (DPIR); admm; pgd: proximal gradient.")
@click.option("--iterations", type=COUNT, help="Denoiser calls (default: denoise 1, deblur and "
              "super-resolve 8, inpaint 24).")
@click.option("--ensemble/--no-ensemble", default=True, show_default=True,
              help="denoise with a network prior: average it over the 8 flips and quarter turns (+0.3 dB, 8x time).")
@click.option("--simulate", is_flag=True, help="Treat --input as clean: degrade it (fixed seed), restore, "
              "and print PSNR and SSIM before and after.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated noise and mask.")
@click.option("--save-steps", type=click.Path(file_okay=False), help="A new folder for each iteration's image.")
@click.option("--compare-priors", is_flag=True, help="With --simulate: restore with each --prior (default: "
              "builtin:drunet, tv, wavelet, nlm, and bm3d when installed), write a table and a figure.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def restore_cmd(task: str, input_path: str, out: str | None, priors: tuple[str, ...], kernel: str | None,
                noise_sigma: float | None, mask: str | None, mask_ratio: float | None, scale: str,
                solver: str, iterations: int | None, ensemble: bool, simulate: bool, seed: int,
                save_steps: str | None, compare_priors: bool, as_json: bool) -> None:
    """Restore an image with a pre-trained denoiser inside a plug-and-play solver (no training).

    \b
    Example:
      transferkit restore --task deblur --kernel motion:15,30 --input shaky.png --out sharp.png
      transferkit restore --task super-resolve --scale 2 --input photo.png --out photo-x2.png
      transferkit restore --task deblur --input clean.png --simulate --json
      transferkit restore --task denoise --input clean.png --simulate --compare-priors
    """
    degradation = restore.Degradation(task, kernel=kernel, noise_sigma=noise_sigma,
                                      mask=Path(mask) if mask else None, mask_ratio=mask_ratio, scale=int(scale))
    if compare_priors:
        _compare(input_path, degradation, priors, out, solver, iterations, seed, simulate, as_json, ensemble)
        return
    if len(priors) > 1:
        raise click.UsageError("--prior is given more than once: repeat it only with --compare-priors.")
    if out is None and not simulate:
        raise click.UsageError("--out is required (the restored image), except with --simulate.")
    options = restore.RestoreOptions(degradation, prior=priors[0] if priors else "builtin:drunet",
                                     solver=solver, iterations=iterations, seed=seed, ensemble=ensemble)
    result = restore.restore_file(input_path, options, out=out, simulate=simulate, save_steps=save_steps,
                                  on_step=None if as_json else _progress(options.iteration_count))
    if as_json:
        click.echo(json.dumps(result.summary()))
        return
    click.echo(f"restored {degradation.describe()} with {result.prior} ({result.solver}, {result.iterations} "
               f"iterations) in {result.seconds:.2f} s" + (f": {out}" if out else ""))
    if simulate:
        click.echo(f"PSNR {result.psnr_input:.2f} -> {result.psnr:.2f} dB, SSIM {result.ssim_input:.3f} -> "
                   f"{result.ssim:.3f} (against the clean image)")


def _progress(total: int):
    def on_step(step: restore.Step, image) -> None:
        click.echo(f"iteration {step.iteration}/{total}: denoiser sigma {step.sigma * 255:.1f}/255", err=True)

    return on_step


def _compare(input_path: str, degradation, priors: tuple[str, ...], out: str | None, solver: str,
             iterations: int | None, seed: int, simulate: bool, as_json: bool, ensemble: bool) -> None:
    if not simulate:
        raise click.UsageError("--compare-priors needs --simulate: priors are scored against the clean --input.")
    comparison = restore.compare_priors(input_path, degradation, list(priors) or None, out=out, solver=solver,
                                        iterations=iterations, seed=seed, ensemble=ensemble)
    if as_json:
        click.echo(json.dumps(comparison.summary()))
        return
    click.echo(comparison.table())
    click.echo(f"wrote {comparison.folder}")
