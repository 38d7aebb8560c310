"""An example strategy written outside transferkit, the way docs/architecture.md says to add one.

In ``src/transferkit/strategies/bitfit.py`` the class would carry ``@register_strategy``; here
the tests register it themselves (and remove it afterwards), so that the other tests see only
the built-in strategies.
"""

from __future__ import annotations

from types import MappingProxyType

from torch import nn

from transferkit.strategies import Strategy


class BitFit(Strategy):
    """BitFit (Ben Zaken et al. 2022): only the bias terms and the new head train."""

    name = "bitfit"
    defaults = MappingProxyType({"epochs": 4, "lr": 1e-3, "patience": 3, "weight_decay": 0.0})
    modality_defaults = MappingProxyType({"text": MappingProxyType({"lr": 3e-3})})

    def prepare(self, model: nn.Module) -> None:
        super().prepare(model)  # every layer group active, the BatchNorm policy applied
        for name, param in model.named_parameters():
            param.requires_grad_(name.endswith("bias") or name.startswith("head."))
