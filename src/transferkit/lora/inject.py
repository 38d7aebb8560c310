"""Put LoRA layers into a model by module-name pattern; merge, unmerge and remove them.

Targets are module names relative to the model's root (for a ``TransferModel``:
``backbone.model.encoder.layer.0.attention.self.query``). A pattern selects a module when it is
the name, a dotted suffix of it (``query``, ``attention.self.query``) or, with ``* ? [``, a glob
over the whole name (``*.layer.1?.*``); a selected container adapts every adaptable layer inside
it. Two keywords: ``all-linear`` (every ``nn.Linear``) and ``all`` (every ``nn.Linear`` and
``nn.Conv2d``). The new head (``head``) always trains in full and is never a target.

Defaults per family: attention query and value projections for text encoders (what the LoRA
paper adapts; PEFT's default for BERT-like models), ``all`` for image models.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .layers import LoraConv2d, LoraLayer, LoraLinear, conv_supported

__all__ = [
    "LoraSettings", "apply_lora", "has_lora", "lora_layers", "merge_lora", "unmerge_lora", "remove_lora",
    "merged_state_dict", "resolve_targets", "describe_targets", "default_targets", "is_lora_parameter", "KEYWORDS", "TEXT_ATTENTION_TARGETS",
]

KEYWORDS = ("all-linear", "all")
# Query and value projections of the usual HF encoders (BERT/RoBERTa/MiniLM, DistilBERT, BART-like, T5).
TEXT_ATTENTION_TARGETS = ("query", "value", "q_lin", "v_lin", "q_proj", "v_proj", "q", "v")
SUPPORTED = "nn.Linear and nn.Conv2d (groups=1, dilation=1, zero padding)"
HEAD = "head"


@dataclass
class LoraSettings:
    """Rank, scale, dropout and targets of LoRA adapters, validated.

    Attributes:
        rank: r, the inner dimension of ``B A`` (``B: d x r``, ``A: r x k``).
        alpha: the update is scaled by ``alpha / r``.
        dropout: dropout on the input of the low-rank path (0 disables it, at no cost).
        targets: patterns or a keyword (see the module docstring); ``None``: the family default.

    Example:
        >>> LoraSettings(rank=4, alpha=8).scaling
        2.0
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: str | Sequence[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ConfigError(f"lora_rank: must be a positive whole number, got {self.rank!r}; "
                              "ranks 4-16 suit most models (--lora-rank 8).")
        if not self.alpha > 0:
            raise ConfigError(f"lora_alpha: must be a positive number, got {self.alpha!r} (the update "
                              "is scaled by alpha / rank; 2 x rank is usual).")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora_dropout: must be in [0, 1), got {self.dropout!r}.")
        self.targets = parse_targets(self.targets)

    @property
    def scaling(self) -> float:
        """``alpha / rank``."""
        return self.alpha / self.rank


def parse_targets(targets: str | Sequence[str] | None) -> list[str] | None:
    """A comma-separated string or a list of patterns -> a clean list (``None`` stays ``None``).

    Example:
        >>> parse_targets("query, value")
        ['query', 'value']
    """
    if targets is None:
        return None
    items = str(targets).split(",") if isinstance(targets, str) else [str(t) for t in targets]
    items = [t.strip() for t in items if t.strip()]
    if not items:
        raise ConfigError("lora_targets: no pattern given; name modules (query,value), use all-linear "
                          "or all, or leave --lora-targets out for the model's default.")
    return items


def _kind(module: nn.Module) -> str | None:
    """``linear`` / ``conv`` for layers LoRA adapts (or already adapted), else ``None``.

    Only layers whose forward is the stock one qualify: a subclass with its own forward (timm's
    ``Conv2dSame`` pads inside it) would lose that behaviour when wrapped.
    """
    if isinstance(module, LoraLinear) or (isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward):
        return "linear"
    if isinstance(module, LoraConv2d):
        return "conv"
    if (isinstance(module, nn.Conv2d) and type(module).forward is nn.Conv2d.forward
            and type(module)._conv_forward is nn.Conv2d._conv_forward and conv_supported(module)):
        return "conv"
    return None


def _candidates(model: nn.Module) -> dict[str, str]:
    """``{module name: kind}`` for every adaptable layer, the head and layers whose forward is
    bypassed (``nn.MultiheadAttention`` reads ``out_proj.weight`` directly) left out."""
    bypassed = {f"{n}.{c}" if n else c for n, m in model.named_modules()
                if isinstance(m, nn.MultiheadAttention) for c, _ in m.named_children()}
    out = {}
    for name, module in model.named_modules():
        kind = _kind(module)
        if kind and name and name != HEAD and not name.startswith(HEAD + ".") and name not in bypassed:
            out[name] = kind
    return out


def _matches(pattern: str, name: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatchcase(name, pattern)
    return name == pattern or name.endswith("." + pattern)


def _unused_by_encoder(model: nn.Module, name: str) -> bool:
    """Text encoders pool the token states themselves, so an HF ``pooler`` never gets a gradient."""
    spec = getattr(model, "spec", None)
    return getattr(spec, "modality", None) == "text" and ".pooler." in f".{name}."


def default_targets(model: nn.Module) -> list[str]:
    """The family default: attention query/value for text encoders, ``all`` otherwise."""
    if getattr(getattr(model, "spec", None), "modality", None) == "text":
        return list(TEXT_ATTENTION_TARGETS)
    return ["all"]


def describe_targets(model: nn.Module, targets: str | Sequence[str] | None) -> str:
    """A short label of a target set: the patterns, or ``default: `` and the default patterns
    that select something here.

    Example:
        >>> describe_targets(nn.Sequential(nn.Linear(2, 2)), None)
        'default: all'
    """
    patterns = parse_targets(targets)
    if patterns is not None:
        return ",".join(patterns)
    candidates = _candidates(model)
    used = [p for p in default_targets(model) if _select(model, candidates, [p], strict=False)]
    return "default: " + ",".join(used or ["all-linear"])


def resolve_targets(model: nn.Module, targets: str | Sequence[str] | None = None) -> list[str]:
    """Names of the layers ``targets`` selects, in model order.

    Raises:
        ConfigError: a pattern selects no adaptable layer (the message lists some that exist).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> resolve_targets(net, "all-linear"), resolve_targets(net, "2")
        (['0', '2'], ['2'])
    """
    candidates = _candidates(model)
    patterns = parse_targets(targets)
    if patterns is None:
        patterns = default_targets(model)
        chosen = _select(model, candidates, patterns, strict=False)
        return chosen or _select(model, candidates, ["all-linear"], strict=True)
    return _select(model, candidates, patterns, strict=True)


def _select(model: nn.Module, candidates: dict[str, str], patterns: list[str], strict: bool) -> list[str]:
    chosen: set[str] = set()
    for pattern in patterns:
        if pattern in KEYWORDS:
            kinds = ("linear",) if pattern == "all-linear" else ("linear", "conv")
            found = {n for n, k in candidates.items() if k in kinds and not _unused_by_encoder(model, n)}
        else:
            matched = [n for n, _ in model.named_modules() if n and _matches(pattern, n)]
            found = {c for c in candidates for n in matched if c == n or c.startswith(n + ".")}
            if strict and not found:
                raise _no_match(model, pattern, matched, candidates)
        if strict and not found:
            raise ConfigError(f"lora_targets: {pattern} selects no layer: the model has no {SUPPORTED} "
                              "outside its head; use another strategy for it.")
        chosen |= found
    return [n for n in candidates if n in chosen]


def _no_match(model: nn.Module, pattern: str, matched: list[str], candidates: dict[str, str]) -> ConfigError:
    examples = ", ".join(list(candidates)[:4]) + (", ..." if len(candidates) > 4 else "")
    if matched:
        kinds = ", ".join(sorted({type(model.get_submodule(n)).__name__ for n in matched}))
        what = (f"matches {', '.join(matched[:3])}{', ...' if len(matched) > 3 else ''} ({kinds}), "
                f"which LoRA cannot adapt: it adapts {SUPPORTED}, never the head")
    else:
        what = "matches no module of the model"
    return ConfigError(
        f"lora_targets: {pattern!r} {what}. Patterns are module names, name suffixes (query) or globs "
        f"(*.attention.*), or the keywords all-linear and all; adaptable layers here include {examples} "
        f"({len(candidates)} in all; `transferkit lora-savings --model SPEC` lists the choices)."
    )


def _wrap(module: nn.Module, settings: LoraSettings) -> LoraLayer:
    cls = LoraLinear if isinstance(module, nn.Linear) else LoraConv2d
    layer = cls(module, settings.rank, settings.alpha, settings.dropout)
    layer.train(module.training)
    return layer


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
               targets: str | Sequence[str] | None = None) -> list[str]:
    """Replace the targeted layers of ``model`` by LoRA layers, in place; freeze their base weights.

    Calling it again with the same settings changes nothing (layers already adapted are kept).

    Args:
        model: a ``TransferModel`` or any module.
        rank, alpha, dropout: see :class:`LoraSettings`.
        targets: patterns or keyword; ``None``: the family default.

    Returns:
        The names of every adapted layer, in model order.

    Raises:
        ConfigError: a bad setting, a pattern that selects nothing, or layers already adapted
            with another rank or alpha.

    Example:
        >>> net = nn.Sequential(nn.Linear(768, 768), nn.ReLU(), nn.Linear(768, 2))
        >>> apply_lora(net, rank=8, targets="0")
        ['0']
        >>> sum(p.numel() for p in net.parameters() if p.requires_grad) - (768 * 2 + 2)  # r (d + k)
        12288
    """
    settings = LoraSettings(rank, alpha, dropout, targets)
    for name in resolve_targets(model, settings.targets):
        module = model.get_submodule(name)
        if isinstance(module, LoraLayer):
            if (module.rank, module.alpha) != (settings.rank, settings.alpha):
                raise ConfigError(
                    f"apply_lora: {name} already has a LoRA adapter of rank {module.rank} and alpha "
                    f"{module.alpha:g}, not {settings.rank} and {settings.alpha:g}; call remove_lora(model) first."
                )
            continue
        for p in module.parameters():
            p.requires_grad_(False)
        _set_submodule(model, name, _wrap(module, settings))
    return [name for name, _ in lora_layers(model)]


def lora_layers(model: nn.Module) -> list[tuple[str, LoraLayer]]:
    """``(name, layer)`` for every LoRA layer of ``model``, in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` holds any LoRA layer.

    Example:
        >>> has_lora(nn.Linear(2, 2))
        False
    """
    return any(isinstance(m, LoraLayer) for m in model.modules())


def is_lora_parameter(name: str) -> bool:
    """Whether a parameter name is a LoRA factor (``...lora_A`` / ``...lora_B``).

    Example:
        >>> is_lora_parameter("backbone.fc.lora_A"), is_lora_parameter("backbone.fc.weight")
        (True, False)
    """
    return name.rsplit(".", 1)[-1] in ("lora_A", "lora_B")


def merge_lora(model: nn.Module) -> None:
    """Add every ``s B A`` into its base weight (idempotent): inference then costs what the base
    model costs. :func:`unmerge_lora` undoes it (equal up to float rounding)."""
    for _, layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take every ``s B A`` out of its base weight again (idempotent)."""
    for _, layer in lora_layers(model):
        layer.unmerge()


def remove_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace every LoRA layer by a plain ``nn.Linear``/``nn.Conv2d``, in place.

    Args:
        merge: keep the update in the weights (what export uses); ``False`` gives back the base
            weights (the adapters are dropped).

    Returns:
        ``model`` (an ordinary model: the adapted base weights stay frozen).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4)); _ = apply_lora(net, rank=2, targets="all")
        >>> type(remove_lora(net)[0]).__name__
        'Linear'
    """
    for name, layer in lora_layers(model):
        layer.merge() if merge else layer.unmerge()
        _set_submodule(model, name, layer.to_base())
    return model


@torch.no_grad()
def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict of the merged, ordinary model, without changing ``model``: adapted
    weights hold ``W + s B A`` and the ``lora_A``/``lora_B`` entries are gone.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4)); _ = apply_lora(net, rank=2, targets="all")
        >>> sorted(merged_state_dict(net))
        ['0.bias', '0.weight']
    """
    state = model.state_dict()
    for name, layer in lora_layers(model):
        del state[f"{name}.lora_A"], state[f"{name}.lora_B"]
        if not layer.merged:
            state[f"{name}.weight"] = layer.weight.detach() + layer.delta_weight()
    return state
