"""``transferkit denoiser train``: fine-tune the built-in DRUNet prior on the user's own images."""

from __future__ import annotations

from pathlib import Path

import click

from transferkit import restore

from .app import cli, log

__all__ = ["denoiser_group", "denoiser_train_cmd"]


@cli.group("denoiser")
def denoiser_group() -> None:
    """Denoisers used as priors by `transferkit restore`: adapt them to your images.

    \b
    Example:
      transferkit denoiser train --images my_scans --out runs/scans-prior
    """


@denoiser_group.command("train")
@click.option("--images", required=True, type=click.Path(path_type=Path),
              help="Folder of clean images of your domain (png/jpg/tif/...; sub-folders too; grey or colour).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder to write (must not exist or be empty); default runs/denoiser-<from>-<strategy>-<time>.")
@click.option("--from", "start", default="builtin:drunet", show_default=True,
              help="builtin:drunet, none (train from scratch), a DRUNet .pth/.safetensors file or a denoiser run.")
@click.option("--strategy", type=click.Choice(restore.denoiser_train.STRATEGIES), default="full", show_default=True,
              help="full: every weight; lora: LoRA on the convolutions; last-n: only the last --last-n stages.")
@click.option("--steps", type=int, default=400, show_default=True, help="Training steps.")
@click.option("--lr", type=float, default=None,
              help="Learning rate (default: " + ", ".join(
                  f"{restore.denoiser_train.default_lr(s, 'builtin:drunet'):g} {s}" for s in restore.denoiser_train.STRATEGIES)
              + f", {restore.denoiser_train.default_lr('full', 'none'):g} with --from none).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Patches per step.")
@click.option("--patch", type=int, default=64, show_default=True, help="Patch side in pixels (a multiple of 8).")
@click.option("--lora-rank", type=int, default=8, show_default=True, help="LoRA rank (--strategy lora).")
@click.option("--last-n", type=int, default=3, show_default=True,
              help="Stages that train under --strategy last-n (1-9, from the output end).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of patches, noise and initialisation.")
def denoiser_train_cmd(images: Path, out: Path | None, start: str, strategy: str, steps: int, lr: float | None,
                       batch_size: int, patch: int, lora_rank: int, last_n: int, seed: int) -> None:
    """Fine-tune the denoiser on a few clean images; the run folder is a `--prior` for restore.

    Progress (step, L1 loss) goes to stderr about every 10% of the steps; at the end one line
    gives the folder and the PSNR before and after on fixed crops of the training images (a
    progress figure: measure on held-out images with `transferkit restore --simulate`).

    \b
    Example:
      transferkit denoiser train --images scans/ --out runs/scans-prior --strategy lora --steps 400
    """
    config = restore.DenoiserTrainConfig(images=images, out=out, start=start, strategy=strategy, steps=steps,
                                         lr=lr, batch_size=batch_size, patch=patch, lora_rank=lora_rank,
                                         last_n=last_n, seed=seed)
    every = max(1, steps // 10)

    def progress(record: dict) -> None:
        if record["step"] % every == 0 or record["step"] == record["steps"]:
            log.info("step %d/%d  l1 %.5f  %.1f s", record["step"], record["steps"], record["l1"], record["seconds"])

    result = restore.train_denoiser(config, progress=progress)
    shown = ", ".join(f"sigma {s}: {result.psnr_before[s]:.2f} -> {result.psnr_after[s]:.2f} dB"
                      for s in result.psnr_before)
    click.echo(f"denoiser run: {result.folder}  PSNR on training-image crops {shown}  ({result.seconds:.0f} s)")
