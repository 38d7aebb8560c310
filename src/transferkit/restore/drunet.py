"""DRUNet (Zhang et al. 2021), deepinv's implementation, built from any state_dict of that
architecture: the official ``drunet_gray.pth`` / ``drunet_color.pth``, transferkit's built-in
pre-trained one, or a fine-tuned run's weights.

The architecture is read off the tensors (widths from the convolutions, blocks per scale from the
key names, colour from the tail), so any width loads without a config file; a file of another
architecture is a :class:`~transferkit.errors.WeightsMismatchError` naming what differs.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from transferkit.errors import WeightsMismatchError

#: The built-in prior: pre-trained by ``scripts/pretrain_denoiser.py`` (see that script).
BUILTIN_WEIGHTS = Path(__file__).parent / "weights" / "drunet_small.safetensors"


@dataclass(frozen=True)
class DrunetShape:
    """What the weights say: image channels (1 grey or 3 colour), four widths, blocks per scale."""

    channels: int
    widths: tuple[int, int, int, int]
    blocks: int

    def build(self) -> nn.Module:
        """A randomly initialised deepinv DRUNet of this shape (no download)."""
        from deepinv.models import DRUNet

        return DRUNet(in_channels=self.channels, out_channels=self.channels, nc=self.widths,
                      nb=self.blocks, pretrained=None)


#: The built-in model's shape (a quarter of the official widths, half its blocks: ~2 MB).
BUILTIN_SHAPE = DrunetShape(channels=3, widths=(16, 32, 64, 128), blocks=2)


def shape_of(state_dict: dict[str, torch.Tensor], source: str) -> DrunetShape:
    """Read the architecture off a DRUNet state_dict; raise when it is not one.

    deepinv names a stage's first block ``m_body.0.res.0.weight``, or ``m_body.res.0.weight`` when
    there is one block per scale (a one-module ``sequential`` is the module itself).
    """
    def first_block(stage: str) -> torch.Tensor | None:
        return state_dict.get(f"{stage}.0.res.0.weight", state_dict.get(f"{stage}.res.0.weight"))

    stages = {stage: first_block(stage) for stage in ("m_down1", "m_down2", "m_down3", "m_body")}
    missing = [key for key in ("m_head.weight", "m_tail.weight") if key not in state_dict]
    missing += [f"{stage}.0.res.0.weight" for stage, tensor in stages.items() if tensor is None]
    if missing:
        raise WeightsMismatchError(
            f"{source} is not a DRUNet state_dict: it lacks {', '.join(missing)} (of "
            f"{len(state_dict)} tensors, starting {', '.join(list(state_dict)[:3]) or 'none'}). "
            "Pass the official drunet_gray.pth or drunet_color.pth, builtin:drunet, or a run folder "
            "written by `transferkit denoiser train`."
        )
    widths = tuple(int(stages[stage].shape[0]) for stage in ("m_down1", "m_down2", "m_down3", "m_body"))
    indexed = {m[1] for key in state_dict if (m := re.match(r"m_down1\.(\d+)\.res\.", key))}
    blocks = len(indexed) if indexed else 1
    channels = state_dict["m_tail.weight"].shape[0]  # m_head takes channels + 1: the noise map
    return DrunetShape(channels=int(channels), widths=widths, blocks=blocks)


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A DRUNet weights file: safetensors, or a torch file read with ``weights_only=True`` (a file
    holding Python objects is refused, never unpickled). Any reader error is one paragraph."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: any reader error is the user's file
        if isinstance(exc, pickle.UnpicklingError):
            # torch's own message is many lines (with terminal colour codes) advising weights_only=False
            reason = "it holds Python objects besides tensors, which are never unpickled (weights_only=True)"
        else:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        raise WeightsMismatchError(
            f"Cannot read {path} as weights: {reason}. Pass a DRUNet state_dict (.pth saved with "
            "torch.save, or .safetensors)."
        ) from None
    if not isinstance(loaded, dict):
        raise WeightsMismatchError(f"{path} holds a {type(loaded).__name__}, not a state_dict of DRUNet weights.")
    return loaded


def clean_state_dict(state_dict: dict) -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}`` / ``{"params": ...}`` and a ``module.`` prefix."""
    for key in ("state_dict", "params", "model"):
        if isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
    return {k.removeprefix("module."): v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def drunet_from_state_dict(state_dict: dict[str, torch.Tensor], source: str) -> nn.Module:
    """A DRUNet in eval mode holding ``state_dict``; any key or shape mismatch is one error."""
    state_dict = clean_state_dict(state_dict)
    model = shape_of(state_dict, source).build()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "") if missing else "",
            f"unexpected {', '.join(unexpected[:3])}" + (" ..." if len(unexpected) > 3 else "") if unexpected else "",
            f"shape differs for {', '.join(wrong[:3])}" if wrong else "") if part)
        raise WeightsMismatchError(
            f"{source} does not fit the DRUNet architecture ({detail}). Pass the official "
            "drunet_gray.pth or drunet_color.pth, builtin:drunet, or a run folder written by "
            "`transferkit denoiser train`."
        )
    model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    return model.eval()


def load_builtin() -> nn.Module:
    """The built-in pre-trained DRUNet (colour; grey images are denoised as three equal channels)."""
    from safetensors.torch import load_file

    if not BUILTIN_WEIGHTS.is_file():
        raise WeightsMismatchError(
            f"The built-in denoiser's weights ({BUILTIN_WEIGHTS}) are missing from this install. "
            "Reinstall transferkit, or run scripts/pretrain_denoiser.py to create them."
        )
    return drunet_from_state_dict(load_file(str(BUILTIN_WEIGHTS)), "builtin:drunet")
