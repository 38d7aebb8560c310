"""Adapter files in PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

Keys are the ones PEFT writes for a model wrapped by ``get_peft_model``, adapter name removed:
``base_model.model.<layer>.lora_A.weight`` (``[r, k]``, conv ``[r, c_in, kh, kw]``),
``base_model.model.<layer>.lora_B.weight`` (``[d, r]``, conv ``[c_out, r, 1, 1]``), and the head
as a module to save: ``base_model.model.head.weight`` / ``.bias``. Layer names are relative to the
``TransferModel``, so ``peft.PeftModel.from_pretrained(load_model(spec, C), folder)`` rebuilds the
adapted model, and :func:`load_adapter` reads what PEFT saved for such a model.

Files are read with safetensors and JSON only (nothing is unpickled), and written into a temporary
sibling folder that is renamed into place, so a reader never sees half an adapter.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .inject import HEAD, LoraSettings, _set_submodule, _wrap, lora_layers
from .layers import LoraLayer

__all__ = ["save_adapter", "load_adapter", "adapter_state_dict", "CONFIG_FILE", "WEIGHTS_FILE"]

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."


def _uniform(layers: list[tuple[str, LoraLayer]]) -> LoraLayer:
    """The settings every layer shares (PEFT's config holds one r, alpha, dropout)."""
    first = layers[0][1]
    for name, layer in layers:
        if (layer.rank, layer.alpha, layer.dropout, layer.rslora) != (first.rank, first.alpha, first.dropout, first.rslora):
            raise ConfigError(f"save_adapter: {name} has rank {layer.rank}, alpha {layer.alpha:g} but "
                              f"{layers[0][0]} has rank {first.rank}, alpha {first.alpha:g}; an adapter file "
                              "holds one setting for all layers.")
    return first


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of an adapter file: every ``lora_A``/``lora_B`` and the head, PEFT's names.

    Raises:
        ConfigError: the model has no LoRA layer, or a merged one (unmerge first).
    """
    layers = lora_layers(model)
    if not layers:
        raise ConfigError("save_adapter: the model has no LoRA layers; call apply_lora(model) or train "
                          "with --strategy lora first.")
    out = {}
    for name, layer in layers:
        if layer.merged:
            raise ConfigError(f"save_adapter: {name} is merged into its base weight; call "
                              "unmerge_lora(model) before saving the adapter.")
        out[f"{PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach()
        out[f"{PREFIX}{name}.lora_B.weight"] = layer.lora_B.detach()
    head = getattr(model, HEAD, None)
    if isinstance(head, nn.Module):
        out.update({f"{PREFIX}{HEAD}.{k}": v.detach() for k, v in head.state_dict().items()})
    return out


def _config(model: nn.Module, layer: LoraLayer, targets: list[str], base: str | None) -> dict[str, Any]:
    """The fields PEFT's ``LoraConfig`` reads; everything else keeps PEFT's default."""
    if base is None and getattr(model, "spec", None) is not None:
        base = model.spec.spec_string
    return {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": base, "revision": None,
        "inference_mode": True, "r": layer.rank, "lora_alpha": layer.alpha, "lora_dropout": layer.dropout,
        "target_modules": targets, "exclude_modules": None,
        "modules_to_save": [HEAD] if isinstance(getattr(model, HEAD, None), nn.Module) else None,
        "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "use_rslora": layer.rslora,
        "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None,
        "layers_pattern": None,
    }


def save_adapter(model: nn.Module, folder: str | Path, base_model_name_or_path: str | None = None) -> Path:
    """Write the LoRA factors and the head of ``model`` as a PEFT adapter folder.

    Args:
        model: a model with (unmerged) LoRA layers.
        folder: created or replaced as a whole.
        base_model_name_or_path: recorded in the config (default: the model's spec string).

    Returns:
        ``folder`` as a Path.

    Example:
        >>> save_adapter(model, "my-adapter")  # doctest: +SKIP
        >>> PeftModel.from_pretrained(load_model("builtin:minilm", 5), "my-adapter")  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    tensors = {k: v.to("cpu").contiguous().clone() for k, v in adapter_state_dict(model).items()}
    layers = lora_layers(model)
    config = _config(model, _uniform(layers), [n for n, _ in layers], base_model_name_or_path)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        os.chmod(tmp, 0o777 & ~_umask())
        _replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_folder(new: Path, folder: Path) -> None:
    """Rename ``new`` onto ``folder``; an existing folder is moved aside first, then deleted."""
    if not folder.exists():
        os.replace(new, folder)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    os.replace(folder, old / "x")
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)


def _read(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / f).is_file()]
    if missing:
        raise ConfigError(f"load_adapter: {folder} is not an adapter folder ({', '.join(missing)} missing); "
                          f"give the folder that save_adapter or PEFT's save_pretrained wrote (a run's adapter/).")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (ValueError, OSError, SafetensorError) as exc:  # truncated, not JSON, not safetensors
        raise ConfigError(f"load_adapter: {folder} holds an unreadable adapter ({type(exc).__name__}: {exc}); "
                          "the file is damaged or cut short: save or copy the adapter again.") from None
    if not isinstance(config, dict):
        raise ConfigError(f"load_adapter: {folder / CONFIG_FILE} must hold a JSON object (PEFT's LoraConfig), "
                          f"not {type(config).__name__}; save the adapter again.")
    return config, tensors


def _check_config(config: dict[str, Any], folder: Path) -> None:
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, not LORA")
    for key, ok in (("use_dora", False), ("fan_in_fan_out", False), ("bias", "none"),
                    ("rank_pattern", {}), ("alpha_pattern", {})):
        if config.get(key, ok) not in (ok, None):
            problems.append(f"{key} = {config[key]!r}")
    for key, kinds in (("r", int), ("lora_alpha", (int, float))):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)
                                  or not math.isfinite(value) or value <= 0):
            problems.append(f"{key} = {value!r} (expected a positive {'whole ' if key == 'r' else ''}number)")
    if problems:
        raise ConfigError(f"load_adapter: {folder} is an adapter transferkit cannot load ({'; '.join(problems)}); "
                          "it loads plain LoRA adapters with one rank and alpha for all layers.")


def _split_keys(tensors: dict[str, torch.Tensor], folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``({layer: {"lora_A": t, "lora_B": t}}, {other module key: t})`` with PEFT's decorations removed."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    others = {}
    for key, value in tensors.items():
        name = key.removeprefix(PREFIX).replace(".modules_to_save.default.", ".").replace(".modules_to_save.", ".")
        name = name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
        for factor in ("lora_A", "lora_B"):
            if name.endswith(f".{factor}.weight"):
                layers.setdefault(name[: -len(f".{factor}.weight")], {})[factor] = value
                break
        else:
            others[name] = value
    broken = [n for n, f in layers.items() if set(f) != {"lora_A", "lora_B"}]
    if broken or not layers:
        raise ConfigError(f"load_adapter: {folder / WEIGHTS_FILE} has no complete lora_A/lora_B pair"
                          f"{' for ' + ', '.join(broken[:3]) if broken else 's'}; save the adapter again.")
    return layers, others


def _incompatible(folder: Path, what: str) -> ConfigError:
    return ConfigError(f"load_adapter: the adapter in {folder} does not fit this model: {what}. Load it into "
                       "the model it was trained on (its adapter_config.json names it in base_model_name_or_path).")


def _inject(model: nn.Module, layers: dict[str, dict[str, torch.Tensor]], config: dict[str, Any], folder: Path) -> None:
    """Adapt exactly the layers the file names (if the model has no LoRA yet), with its r and alpha."""
    present = dict(lora_layers(model))
    if present:
        if set(present) != set(layers):
            extra = sorted(set(layers) ^ set(present))[:3]
            raise _incompatible(folder, f"the model already has LoRA layers, and they differ ({', '.join(extra)})")
        alpha = float(config.get("lora_alpha", 0.0))
        if any(layer.alpha != alpha for layer in present.values()):
            raise _incompatible(folder, f"its lora_alpha {alpha:g} differs from the model's LoRA layers")
        return
    rank = int(config.get("r") or next(iter(layers.values()))["lora_A"].shape[0])
    settings = LoraSettings(rank, float(config.get("lora_alpha", rank)), float(config.get("lora_dropout") or 0.0))
    modules = dict(model.named_modules())
    for name in layers:
        module = modules.get(name)
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise _incompatible(folder, f"it adapts {name}, which is "
                                f"{'missing' if module is None else type(module).__name__ + ', not a Linear or Conv2d'}")
        for p in module.parameters():
            p.requires_grad_(False)
        layer = _wrap(module, settings)
        layer.rslora = bool(config.get("use_rslora"))
        layer.scaling = settings.alpha / (rank ** 0.5 if layer.rslora else rank)
        _set_submodule(model, name, layer)


@torch.no_grad()
def load_adapter(model: nn.Module, folder: str | Path) -> list[str]:
    """Load a PEFT-format LoRA adapter (from :func:`save_adapter` or PEFT) into ``model``.

    Injects LoRA layers into exactly the layers the file adapts if the model has none, then
    copies the factors and the saved modules (the head).

    Returns:
        The adapted layer names.

    Raises:
        ConfigError: the folder is missing or not an adapter, an unsupported LoRA variant, or the
            adapter does not fit the model (other layers, shapes or number of classes).

    Example:
        >>> model = load_model("builtin:minilm", num_classes=5)  # doctest: +SKIP
        >>> load_adapter(model, "runs/minilm-lora-20261127-120000/adapter")[:1]  # doctest: +SKIP
        ['backbone.model.encoder.layer.0.attention.self.query']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"load_adapter: adapter folder {folder} does not exist; give the folder holding "
                          f"{CONFIG_FILE} and {WEIGHTS_FILE} (a LoRA run's adapter/).")
    config, tensors = _read(folder)
    _check_config(config, folder)
    layers, others = _split_keys(tensors, folder)
    _inject(model, layers, config, folder)
    targets = dict(lora_layers(model))
    own = model.state_dict()
    for key, value in others.items():
        if key not in own or own[key].shape != value.shape:
            why = "no such parameter" if key not in own else f"shape {tuple(value.shape)}, the model's {tuple(own[key].shape)}"
            if key.startswith(HEAD + ".") and key in own:
                why = f"its head has {value.shape[0]} classes, this model's head {own[key].shape[0]}"
            raise _incompatible(folder, f"{key}: {why}")
    for name, factors in layers.items():
        layer = targets[name]
        for factor, value in factors.items():
            param = getattr(layer, factor)
            if param.shape != value.shape:
                raise _incompatible(folder, f"{name}.{factor} has shape {tuple(value.shape)}, the model "
                                    f"needs {tuple(param.shape)}")
            param.copy_(value)
    model.load_state_dict(others, strict=False)
    return list(targets)
