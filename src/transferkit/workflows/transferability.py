"""Layer transferability (Yosinski et al. 2014): how linearly separable the target classes are
after each layer group of the frozen pre-trained network, against a randomly initialised one.

One eval pass per split runs the backbone with forward hooks on the top-level modules of every
layer group; the output of the last module of a group to run is that group's output, pooled to
``[B, C]`` (images ``[B, C, H, W]``: mean over H and W; text ``[B, T, H]``: attention-masked mean
over T). The last backbone group's point is the backbone's own pooled output, i.e. the features
a head sees. A logistic-regression probe (``train.head.fit_head_lbfgs``: L-BFGS, L2 strength
chosen on validation) is fitted per group on the training sample and scored on the test sample.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import DataOptions
from ..data import Split, as_data_options, load_data
from ..data.splits import sample_per_class
from ..errors import ConfigError, DataError
from ..io.atomic import atomic_write_json
from ..models import TransferModel, load_model
from ..train.device import inference_batch_size, move_to, prepare_model_layout, resolve_device, seed_everything
from ..train.features import CachedFeatures
from ..train.head import fit_head_lbfgs
from ..train.loaders import make_indexed_loader
from ..train.plots import pyplot, save_figure
from ..train.progress import Progress
from ._common import prepare_out

__all__ = ["TransferabilityResult", "layer_transferability", "group_features", "pool_output",
           "TRANSFERABILITY_JSON", "TRANSFERABILITY_PLOT"]

log = logging.getLogger("transferkit")

TRANSFERABILITY_JSON = "transferability.json"
TRANSFERABILITY_PLOT = "transferability.png"
INITS = ("pretrained", "random")


@dataclass
class TransferabilityResult:
    """What :func:`layer_transferability` returns; ``points`` is transferability.json's list."""

    out_dir: Path
    points: list[dict[str, Any]]
    summary: dict[str, Any]


def pool_output(output: Any, mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """A module's output pooled to ``[B, C]`` float32 on the CPU (``None`` if it has no tensor).

    Example:
        >>> pool_output(torch.ones(2, 3, 4, 4)).shape, pool_output((torch.ones(2, 5, 8),)).shape
        (torch.Size([2, 3]), torch.Size([2, 8]))
    """
    if isinstance(output, (tuple, list)):
        output = next((o for o in output if isinstance(o, torch.Tensor)), None)
    elif not isinstance(output, torch.Tensor) and hasattr(output, "to_tuple"):  # HF ModelOutput
        output = next((o for o in output.to_tuple() if isinstance(o, torch.Tensor)), None)
    if not isinstance(output, torch.Tensor) or output.ndim < 2:
        return None
    x = output.detach().float()
    if x.ndim == 4:  # [B, C, H, W] -> [B, C]
        return x.mean(dim=(2, 3)).cpu()
    if x.ndim == 3:  # [B, T, H] -> [B, H]; padding tokens do not count
        if mask is not None and mask.shape == x.shape[:2]:
            m = mask.to(x.dtype).unsqueeze(-1)  # [B, T, 1]
            return ((x * m).sum(1) / m.sum(1).clamp_min(1.0)).cpu()
        return x.mean(dim=1).cpu()
    return x.reshape(x.shape[0], -1).cpu()


def _top_level(modules: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """The group's modules that are not inside another module of the same group."""
    names = [n for n, _ in modules]
    return [(n, m) for n, m in modules if not any(n != o and n.startswith(o + ".") for o in names)]


class _Hooks:
    """Forward hooks that keep, per group, the pooled output of the group's last module to run."""

    def __init__(self, model: TransferModel) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self.mask: torch.Tensor | None = None
        self.handles = []
        backbone = [g for g in model.layer_groups() if g.name != "head"]
        self.names = [g.name for g in backbone]
        for group in backbone[:-1]:  # the last group's point is the backbone output itself
            for _, module in _top_level(group.modules):
                self.handles.append(module.register_forward_hook(self._hook(group.name)))

    def _hook(self, name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            pooled = pool_output(output, self.mask)
            if pooled is not None:
                self.outputs[name] = pooled  # later modules of the group overwrite earlier ones
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def group_features(model: TransferModel, split: Split, *, batch_size: int = 8, device: str = "cpu",
                   progress: Progress | None = None, desc: str = "features") -> dict[str, CachedFeatures]:
    """Pooled features after every backbone layer group: ``{group: CachedFeatures [N, C_g]}``.

    Example:
        >>> feats = group_features(model, bundle.test)  # doctest: +SKIP
        >>> list(feats)  # doctest: +SKIP
        ['stem', 'blocks.0', ..., 'blocks.6']
    """
    torch_device = torch.device(device) if isinstance(device, str) else device
    model.eval()
    hooks = _Hooks(model)
    labels = torch.tensor(split.labels, dtype=torch.long)
    rows: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in hooks.names}
    try:
        loader = make_indexed_loader(model, split, batch_size=batch_size)
        for inputs, _, index in (progress or Progress(False)).batches(loader, desc):
            hooks.outputs = {}
            hooks.mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
            final = model.forward_features(move_to(inputs, torch_device)).float().cpu()  # [B, F]
            hooks.outputs[hooks.names[-1]] = final
            for name in hooks.names:
                if name in hooks.outputs:
                    rows[name].append((hooks.outputs[name], index))
    finally:
        hooks.remove()
    out = {}
    for name, parts in rows.items():
        if not parts:
            continue
        feats = torch.empty(len(split), parts[0][0].shape[1])
        for x, index in parts:
            feats[index] = x
        out[name] = CachedFeatures(feats, labels)
    return out


def _sample(split: Split, per_class: int, seed: int) -> Split:
    return split.subset(sample_per_class(split.labels, per_class, seed=seed))


def _probe(feats: dict[str, dict[str, CachedFeatures]], names: list[str], num_classes: int,
           init: str) -> list[dict[str, Any]]:
    points = []
    for depth, name in enumerate(names, start=1):
        train, val, test = (feats[s].get(name) for s in ("train", "val", "test"))
        if train is None:
            log.warning("transferability: no tensor output after group %s; skipped", name)
            continue
        head, chosen = fit_head_lbfgs(train, val, num_classes)
        with torch.no_grad():
            acc = (head(test.features).argmax(1) == test.labels).float().mean().item()
        points.append({"init": init, "depth": depth, "group": name, "features": int(train.features.shape[1]),
                       "val_accuracy": round(float(chosen["val_accuracy"]), 4),
                       "test_accuracy": round(acc, 4), "l2": chosen["l2"]})
        log.info("transferability %s %s: test accuracy %.4f", init, name, acc)
    return points


def summarize(points: list[dict[str, Any]], chance: float) -> dict[str, Any]:
    """Best pre-trained depth, the drop after it, and the gain over random init at each depth.

    Example:
        >>> pts = [{"init": "pretrained", "depth": 1, "group": "a", "test_accuracy": 0.5},
        ...        {"init": "pretrained", "depth": 2, "group": "b", "test_accuracy": 0.8},
        ...        {"init": "pretrained", "depth": 3, "group": "c", "test_accuracy": 0.7}]
        >>> summarize(pts, 0.1)["best_group"]
        'b'
    """
    pre = [p for p in points if p["init"] == "pretrained"]
    rnd = {p["group"]: p["test_accuracy"] for p in points if p["init"] == "random"}
    if not pre:
        return {"chance": chance}
    best = max(pre, key=lambda p: (p["test_accuracy"], -p["depth"]))
    last = pre[-1]
    text = (f"Probe accuracy peaks after {best['group']} (depth {best['depth']} of {len(pre)}, "
            f"{best['test_accuracy']:.3f})")
    if last["test_accuracy"] < best["test_accuracy"]:
        text += f" and falls to {last['test_accuracy']:.3f} after {last['group']}: features past the peak are more specific to the pre-training task"
    text += "."
    gains = {p["group"]: round(p["test_accuracy"] - rnd[p["group"]], 4) for p in pre if p["group"] in rnd}
    if gains:
        top = max(gains, key=gains.get)
        text += f" Pre-training helps most after {top} (+{gains[top]:.3f} over random init)."
    return {"chance": chance, "best_group": best["group"], "best_depth": best["depth"],
            "best_accuracy": best["test_accuracy"], "final_accuracy": last["test_accuracy"],
            "gain_over_random": gains, "text": text}


def _plot(points: list[dict[str, Any]], names: list[str], chance: float, title: str, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2), 4.5))
    for init, style in zip(INITS, ("o-", "s--")):
        pts = [p for p in points if p["init"] == init]
        if pts:
            ax.plot([p["depth"] for p in pts], [p["test_accuracy"] for p in pts], style,
                    label=f"{init} weights" if init == "pretrained" else "random init (control)")
    ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xticks(range(1, len(names) + 1), names, rotation=45, ha="right", fontsize=8)
    ax.set(xlabel="features after layer group", ylabel="linear-probe test accuracy", ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


PROBE_PER_CLASS = 50  # training examples per class for the probes when the data options give none


def layer_transferability(model: str, data: str | DataOptions, *, out: str | Path | None = None,
                          eval_per_class: int = 50, control: bool = True, device: str = "auto",
                          progress: bool | None = None, **data_options: Any) -> TransferabilityResult:
    """Linear-probe accuracy on features after each layer group, pre-trained vs random init.

    Args:
        model: model spec, e.g. ``builtin:efficientnet_lite0``.
        data: data spec or :class:`DataOptions`; the probe trains on its ``per_class`` training
            examples per class (default 50), picks its L2 strength on up to ``eval_per_class``
            validation examples per class and is scored on up to ``eval_per_class`` test
            examples per class (seeded with its ``seed``, stratified).
        out: folder for transferability.json and .png (default ``runs/transferability-<model>-<time>``).
        control: also probe the same architecture with random weights.
        **data_options: DataOptions fields applied to ``data`` (per_class, seed, val_fraction, ...).

    Returns:
        A :class:`TransferabilityResult`: one point per (init, backbone layer group).

    Example:
        >>> r = layer_transferability("builtin:efficientnet_lite0", "builtin:mnist", per_class=20)  # doctest: +SKIP
        >>> r.summary["best_group"]  # doctest: +SKIP
        'blocks.4'
    """
    if isinstance(eval_per_class, bool) or not isinstance(eval_per_class, int) or eval_per_class < 1:
        raise ConfigError(f"eval_per_class: must be a whole number >= 1, got {eval_per_class!r}.")
    opts = as_data_options(data, **data_options)
    data, seed, per_class = opts.data, opts.seed, opts.per_class or PROBE_PER_CLASS
    start = time.perf_counter()
    out_dir = prepare_out(out, "transferability", model, (TRANSFERABILITY_JSON, TRANSFERABILITY_PLOT))
    bundle = load_data(opts, per_class=None)  # the probe's sample is drawn below, per split
    if len(bundle.val) == 0 or len(bundle.test) == 0:
        raise DataError(f"The data {data} leaves no validation or test examples ({len(bundle.val)} val, "
                        f"{len(bundle.test)} test); raise --val-fraction / --test-fraction or add data.")
    splits = {"train": _sample(bundle.train, per_class, seed), "val": _sample(bundle.val, eval_per_class, seed),
              "test": _sample(bundle.test, eval_per_class, seed)}
    torch_device = resolve_device(device)
    bar = Progress(progress)
    points: list[dict[str, Any]] = []
    names: list[str] = []
    for init in INITS[: 2 if control else 1]:
        seed_everything(seed)  # the random-init control is reproducible
        net = load_model(model, bundle.num_classes, pretrained=init == "pretrained")
        if net.spec.modality != bundle.modality:
            raise ConfigError(f"The model {model} takes {net.spec.modality} input but the data {data} is "
                              f"{bundle.modality}; pick a {bundle.modality} model (see `transferkit models`).")
        prepare_model_layout(net, net.spec.modality).to(torch_device).eval()
        batch = inference_batch_size(32, torch_device, net.spec.modality)
        feats = {s: group_features(net, split, batch_size=batch, device=torch_device, progress=bar,
                                   desc=f"{init} {s}") for s, split in splits.items()}
        names = [g.name for g in net.layer_groups() if g.name != "head"]
        points += _probe(feats, names, bundle.num_classes, init)
    summary = summarize(points, 1.0 / bundle.num_classes)
    summary.update(model=model, data=data, per_class=per_class, n_train=len(splits["train"]),
                   n_val=len(splits["val"]), n_test=len(splits["test"]), groups=names,
                   seconds=round(time.perf_counter() - start, 2))
    atomic_write_json(out_dir / TRANSFERABILITY_JSON, {**summary, "points": points})
    _plot(points, names, summary["chance"], f"{model} on {data}: layer transferability",
          out_dir / TRANSFERABILITY_PLOT)
    return TransferabilityResult(out_dir, points, summary)
