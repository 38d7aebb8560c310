"""How many parameters LoRA trains on a given model, per rank and target set, beside full fine-tuning.

A targeted ``Linear`` with weight ``[d, k]`` trains ``r (d + k)`` parameters instead of ``d k``; a
``Conv2d`` with weight ``[c_out, c_in, kh, kw]`` trains ``r (c_in kh kw + c_out)`` instead of
``c_out c_in kh kw``. The new head always trains in full.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from ..errors import ConfigError
from .inject import HEAD, describe_targets, is_lora_parameter, resolve_targets

__all__ = ["lora_savings", "layer_sizes", "DEFAULT_RANKS"]

DEFAULT_RANKS = (1, 2, 4, 8, 16, 32, 64)


def layer_sizes(model: nn.Module, names: Sequence[str]) -> list[dict[str, Any]]:
    """``{"name", "shape", "d", "k"}`` per layer: ``d`` outputs, ``k`` inputs per output
    (``c_in kh kw`` for a conv), so full training costs ``d k`` and LoRA ``r (d + k)``."""
    rows = []
    for name in names:
        shape = tuple(model.get_submodule(name).weight.shape)  # [d, k] or [c_out, c_in, kh, kw]
        k = 1
        for size in shape[1:]:
            k *= size
        rows.append({"name": name, "shape": list(shape), "d": shape[0], "k": k})
    return rows


def _check_ranks(ranks: Sequence[int]) -> list[int]:
    out = []
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            raise ConfigError(f"ranks: every rank must be a positive whole number, got {r!r}; e.g. --ranks 1,2,4,8.")
        out.append(r)
    if not out:
        raise ConfigError("ranks: give at least one rank, e.g. --ranks 4,8,16.")
    return out


def lora_savings(model: nn.Module, ranks: Sequence[int] = DEFAULT_RANKS,
                 targets: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Trainable parameters of LoRA on ``model`` at each rank for one target set, beside full fine-tuning.

    Args:
        model: a ``TransferModel`` (or any module; then no head is counted). It is not changed.
        ranks: the ranks to tabulate.
        targets: patterns or keyword (``all-linear``, ``all``); ``None``: the family default.

    Returns:
        One dict per rank: ``rank``, ``targets`` (a label of the set), ``layers`` (how many),
        ``lora_params`` (sum of ``r (d + k)``), ``head_params``, ``trainable_params`` (both),
        ``total_params`` (the model without adapters), ``share`` (trainable / total),
        ``full_params`` (what full fine-tuning trains: every parameter), and ``per_layer``:
        ``{"name", "shape", "lora": r (d + k), "full": d k}`` per targeted layer.

    Raises:
        ConfigError: a rank <= 0, or a pattern that selects no adaptable layer.

    Example:
        >>> net = nn.Sequential(nn.Linear(768, 768))
        >>> row = lora_savings(net, ranks=[8], targets="all-linear")[0]
        >>> row["lora_params"], row["per_layer"][0]["full"]
        (12288, 589824)
    """
    ranks = _check_ranks(list(ranks))
    label = describe_targets(model, targets)
    sizes = layer_sizes(model, resolve_targets(model, targets))
    total = sum(p.numel() for n, p in model.named_parameters() if not is_lora_parameter(n))
    head = getattr(model, HEAD, None)
    head_params = sum(p.numel() for p in head.parameters()) if isinstance(head, nn.Module) else 0
    rows = []
    for r in ranks:
        per_layer = [{"name": s["name"], "shape": s["shape"], "lora": r * (s["d"] + s["k"]), "full": s["d"] * s["k"]}
                     for s in sizes]
        lora = sum(x["lora"] for x in per_layer)
        rows.append({
            "rank": r, "targets": label, "layers": len(sizes), "lora_params": lora,
            "head_params": head_params, "trainable_params": lora + head_params, "total_params": total,
            "share": (lora + head_params) / total if total else 0.0, "full_params": total,
            "per_layer": per_layer,
        })
    return rows
