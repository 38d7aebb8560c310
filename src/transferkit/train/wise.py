"""WiSE-FT (Wortsman et al. 2022) for LP-FT: keep the probe plus a share of what fine-tuning changed.

LP-FT's phase 2 starts from the pre-trained backbone under a fitted probe. On a few examples per
class the fine-tuned weights gain on the new task what they lose of the pre-trained features;
the weights part of the way between the two can keep more of both (weight-space ensembling: one
model, no inference cost). ``--wise-alpha`` (default 1: off). On the defaults suite alpha 0.75
lifted the rows where LP-FT trails (faces) and cost where fine-tuning gains most (trec), at the
same mean margin; the rule fixed before its held-out runs kept it off (docs/defaults.md,
"weight-space ensembling").
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["float_state", "interpolate_towards"]


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the model's floating-point weights and buffers (BatchNorm's running mean and
    variance included: they belong to the weights they normalise), keyed as in its state_dict."""
    return {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()
            if value.is_floating_point()}


@torch.no_grad()
def interpolate_towards(model: nn.Module, start: dict[str, torch.Tensor], alpha: float) -> None:
    """Set each floating-point entry of ``model`` to ``start + alpha * (current - start)``, in place.

    ``alpha`` 1 keeps the current (fine-tuned) weights, 0 restores ``start``. Integer buffers
    (``num_batches_tracked``) keep their current value. Raises ValueError if ``start`` does not
    name the same floating-point entries with the same shapes (another model's weights)."""
    current = model.state_dict()
    floating = {name for name, value in current.items() if value.is_floating_point()}
    if floating != set(start) or any(current[n].shape != start[n].shape for n in floating):
        raise ValueError("the starting weights do not match the model: they are another model's")
    done: set[int] = set()
    for name in sorted(floating):
        value = current[name]  # a view of the parameter or buffer: lerp_ writes through it
        if value.data_ptr() in done:  # tied weights (one tensor under two names): move it once
            continue
        done.add(value.data_ptr())
        value.lerp_(start[name].to(value.device, value.dtype), 1.0 - alpha)
