"""LoRA: low-rank adapters with a fast training path, exact merge, and PEFT-format adapter files.

LoRA freezes a pre-trained weight ``W`` (``d x k``) and learns ``B A`` (``B: d x r``,
``A: r x k``), scaled by ``alpha / r``: a layer trains ``r (d + k)`` parameters instead of
``d k``.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(768, 768), nn.ReLU(), nn.Linear(768, 4))
    >>> apply_lora(net, rank=8, targets="0")
    ['0']
    >>> merge_lora(net); has_lora(net)
    True
    >>> type(remove_lora(net)[0]).__name__
    'Linear'
"""

from .adapter import CONFIG_FILE, WEIGHTS_FILE, adapter_state_dict, load_adapter, save_adapter
from .inject import (
    KEYWORDS,
    LoraSettings,
    apply_lora,
    default_targets,
    has_lora,
    is_lora_parameter,
    lora_layers,
    merge_lora,
    merged_state_dict,
    remove_lora,
    resolve_targets,
    unmerge_lora,
)
from .layers import LoraConv2d, LoraLayer, LoraLinear
from .savings import DEFAULT_RANKS, lora_savings

__all__ = [
    "LoraSettings", "apply_lora", "has_lora", "merge_lora", "unmerge_lora", "remove_lora", "merged_state_dict",
    "save_adapter", "load_adapter", "adapter_state_dict", "lora_savings", "lora_layers", "resolve_targets",
    "default_targets", "is_lora_parameter", "LoraLayer", "LoraLinear", "LoraConv2d", "KEYWORDS",
    "DEFAULT_RANKS", "CONFIG_FILE", "WEIGHTS_FILE",
]
