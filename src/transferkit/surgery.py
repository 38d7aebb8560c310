"""Model surgery on a TransferModel: layer groups, freezing by group, BatchNorm policy, counts.

Groups come from the model (``TransferModel.layer_groups()``: stem ... blocks ... head), so
strategies never hard-code layer names. Head replacement itself happens when a model is loaded
(``transferkit.models.heads`` for torchvision-style models, ``reset_classifier(0)`` for timm);
:func:`find_classifier` and :func:`strip_classifier` are re-exported here for other models.

Example:
    >>> from transferkit.models import load_model
    >>> m = load_model("torchvision:resnet18", 3, pretrained=False)
    >>> set_trainable_groups(m, ["layer4", "head"])
    >>> _ = m.train(); frozen_batchnorm_eval(m)   # frozen BatchNorm keeps its running statistics
    >>> count_parameters(m)[1] < count_parameters(m)[0]
    True
"""

from __future__ import annotations

from typing import Callable, Iterable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from transferkit.errors import ConfigError
from transferkit.models.base import TransferModel
from transferkit.models.groups import LayerGroup
from transferkit.models.heads import find_classifier, strip_classifier

__all__ = [
    "LayerGroup",
    "layer_groups",
    "set_trainable_groups",
    "freeze_groups",
    "unfreeze_groups",
    "frozen_batchnorm_eval",
    "batchnorm_eval",
    "count_parameters",
    "group_parameter_counts",
    "find_classifier",
    "strip_classifier",
]


def layer_groups(model: TransferModel) -> list[LayerGroup]:
    """Ordered layer groups of ``model`` (stem first, ``head`` last).

    Args:
        model: a TransferModel.

    Returns:
        The groups; every parameter is in exactly one.

    Example:
        >>> [g.name for g in layer_groups(m)][-1]  # doctest: +SKIP
        'head'
    """
    return model.layer_groups()


def _select(model: TransferModel, names: Iterable[str] | Callable[[str], bool]) -> tuple[list[LayerGroup], set[str]]:
    groups = layer_groups(model)
    if callable(names):
        chosen = {g.name for g in groups if names(g.name)}
    else:
        chosen = {names} if isinstance(names, str) else set(names)
        unknown = sorted(chosen - {g.name for g in groups})
        if unknown:
            raise ConfigError(
                f"Unknown layer group(s) {', '.join(unknown)}; this model has: "
                f"{', '.join(g.name for g in groups)}."
            )
    return groups, chosen


def _set_requires_grad(model: TransferModel, groups: list[LayerGroup], names: set[str], value: bool) -> None:
    params = dict(model.named_parameters())
    for group in groups:
        if group.name in names:
            for pname in group.param_names:
                params[pname].requires_grad_(value)


def set_trainable_groups(model: TransferModel, trainable: Iterable[str] | Callable[[str], bool]) -> None:
    """Make exactly the named groups trainable (``requires_grad=True``), freeze all others.

    Args:
        model: a TransferModel.
        trainable: group names, or a predicate on the group name.

    Raises:
        ConfigError: a name that is not a group of this model.

    Example:
        >>> set_trainable_groups(m, ["head"])                    # linear probe  # doctest: +SKIP
        >>> set_trainable_groups(m, lambda g: g != "stem")       # all but the stem  # doctest: +SKIP
    """
    groups, chosen = _select(model, trainable)
    all_names = {g.name for g in groups}
    _set_requires_grad(model, groups, all_names - chosen, False)
    _set_requires_grad(model, groups, chosen, True)


def freeze_groups(model: TransferModel, names: Iterable[str] | Callable[[str], bool]) -> None:
    """Set ``requires_grad=False`` for the named groups; others are left as they are.

    Example:
        >>> freeze_groups(m, ["stem", "layer1"])  # doctest: +SKIP
    """
    groups, chosen = _select(model, names)
    _set_requires_grad(model, groups, chosen, False)


def unfreeze_groups(model: TransferModel, names: Iterable[str] | Callable[[str], bool]) -> None:
    """Set ``requires_grad=True`` for the named groups; others are left as they are.

    Example:
        >>> unfreeze_groups(m, ["layer4"])  # doctest: +SKIP
    """
    groups, chosen = _select(model, names)
    _set_requires_grad(model, groups, chosen, True)


def frozen_batchnorm_eval(model: nn.Module) -> None:
    """Put frozen BatchNorm layers into eval mode (call after ``model.train()``).

    A BatchNorm (any ``_BatchNorm``, including timm's ``BatchNormAct2d``) whose own parameters
    are all frozen, or that has no parameters and lives in a fully frozen group, uses its
    running statistics instead of updating them: a frozen backbone then behaves as pre-trained,
    and small batches do not corrupt the statistics.

    Args:
        model: a TransferModel (or any module: then only the parameter rule applies).

    Example:
        >>> _ = m.train(); frozen_batchnorm_eval(m)  # doctest: +SKIP
    """
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, _BatchNorm) and own and not any(p.requires_grad for p in own):
            module.eval()
    if not isinstance(model, TransferModel):
        return
    params = dict(model.named_parameters())
    for group in model.layer_groups():
        if group.param_names and not any(params[p].requires_grad for p in group.param_names):
            for _, module in group.modules:
                if isinstance(module, _BatchNorm) and not list(module.parameters(recurse=False)):
                    module.eval()


def batchnorm_eval(model: nn.Module) -> int:
    """Put every BatchNorm layer in eval mode: running statistics stay fixed, affine params train.

    Call after ``model.train()``. Fine-tuning on a small dataset with small batches would
    otherwise replace the pre-training statistics with noisy estimates from a few target batches,
    and the model would behave differently in eval mode than it did while training.

    Returns:
        How many BatchNorm layers were switched.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
        >>> batchnorm_eval(m), m[1].training
        (1, False)
    """
    count = 0
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.eval()
            count += 1
    return count


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        (8, 8)
    """
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def group_parameter_counts(model: TransferModel) -> list[tuple[str, int, int]]:
    """``(group, total, trainable)`` per layer group, in group order.

    Example:
        >>> group_parameter_counts(m)[-1][0]  # doctest: +SKIP
        'head'
    """
    params = dict(model.named_parameters())
    rows = []
    for group in layer_groups(model):
        ps = [params[n] for n in group.param_names]
        rows.append((group.name, sum(p.numel() for p in ps), sum(p.numel() for p in ps if p.requires_grad)))
    return rows
