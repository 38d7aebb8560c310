"""Ordered layer groups: which parameters and modules form the stem, each block, and the head.

A source module describes its groups as *rules*: an ordered list of ``(group name, prefixes)``
where a prefix is a qualified module or parameter name inside the ``TransferModel``
(``backbone.model.layer1``, ``backbone.model.cls_token``). A parameter belongs to the group of
its longest matching prefix; anything no rule names joins the *fallback* group (the last
backbone group: final norms, poolers, pre-logits layers). This keeps "every parameter in exactly
one group" true by construction, whatever extra parameters a model family carries.

``surgery`` re-exports :class:`LayerGroup` and works on these groups; the class lives here so
that ``models`` does not import ``surgery`` (imports flow one way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

from transferkit.errors import UnsupportedModelError

__all__ = ["LayerGroup", "GroupRules", "compute_layer_groups", "chunk_units"]

#: ``[(group name, [qualified prefixes]), ...]`` in stem-to-head order.
GroupRules = list[tuple[str, list[str]]]


@dataclass
class LayerGroup:
    """One ordered group of layers.

    Attributes:
        name: ``stem``, ``layer1``, ``blocks.3``, ... or ``head`` (always last).
        param_names: qualified parameter names (as in ``TransferModel.named_parameters()``).
        modules: ``(qualified name, module)`` for every submodule that belongs to the group
            (flat: descendants are listed too), used e.g. to put BatchNorm into eval mode.
    """

    name: str
    param_names: list[str] = field(default_factory=list)
    modules: list[tuple[str, nn.Module]] = field(default_factory=list)


def _matcher(rules: GroupRules):
    """Return ``match(name) -> group or None`` using the longest matching prefix.

    A prefix matches at dot boundaries, so the candidates for ``name`` are its own dotted
    prefixes, longest first: a dict lookup each, instead of a scan over every rule's prefix for
    every parameter and module (a model has hundreds of both, and training asks for the groups
    a dozen times a run). The empty prefix matches everything, last; where two rules name the
    same prefix the first wins.
    """
    owner: dict[str, str] = {}
    for group, prefixes in rules:
        for prefix in prefixes:
            owner.setdefault(prefix, group)

    def match(name: str) -> str | None:
        candidate = name
        while candidate:
            if candidate in owner:
                return owner[candidate]
            cut = candidate.rfind(".")
            candidate = candidate[:cut] if cut > 0 else ""
        return owner.get("")

    return match


def compute_layer_groups(model: nn.Module, rules: GroupRules, fallback: str | None) -> list[LayerGroup]:
    """Assign every parameter and module of ``model`` to one group.

    Args:
        model: the ``TransferModel`` (names are qualified from its root).
        rules: ordered ``(name, prefixes)``; groups that end up empty are dropped (except ``head``).
        fallback: group for parameters no prefix matches (usually the last backbone group).

    Returns:
        The groups in rule order.

    Example:
        >>> m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> [g.name for g in compute_layer_groups(m, [("stem", ["0"]), ("head", ["1"])], "stem")]
        ['stem', 'head']
    """
    match = _matcher(rules)
    groups = {name: LayerGroup(name) for name, _ in rules}
    if fallback is not None and fallback not in groups:
        raise UnsupportedModelError(f"layer-group fallback {fallback!r} is not one of {list(groups)}")

    modules = dict(model.named_modules())

    def sibling_group(name: str) -> str | None:
        """Where the first parameter of ``name``'s module went: parameters added to a layer after
        the rules were written (LoRA's ``lora_A`` beside ``weight``) join their layer's group."""
        owner, _, _ = name.rpartition(".")
        first = next(iter(modules[owner]._parameters), None) if owner in modules else None
        return match(f"{owner}.{first}") if first and f"{owner}.{first}" != name else None

    def group_of(name: str) -> str:
        found = match(name) or sibling_group(name) or fallback
        if found is None:
            raise UnsupportedModelError(
                f"parameter {name!r} belongs to no layer group and there is no fallback group"
            )
        return found

    for pname, _ in model.named_parameters():
        groups[group_of(pname)].param_names.append(pname)
    for mname, module in model.named_modules():
        direct = [n for n, _ in module.named_parameters(recurse=False)]
        if direct:  # a module goes where its own parameters went (BatchNorm weight/bias)
            gname = group_of(f"{mname}.{direct[0]}" if mname else direct[0])
        else:
            gname = match(mname) if mname else None
            if gname is None and any(True for _ in module.buffers(recurse=False)):
                gname = fallback  # e.g. a BatchNorm without affine parameters
        if gname is not None:
            groups[gname].modules.append((mname, module))
    return [g for g in groups.values() if g.param_names or g.name == "head"]


def chunk_units(units: Sequence[tuple[str, list[str]]], limit: int = 10, target: int = 8) -> GroupRules:
    """Merge consecutive units into about ``target`` groups when there are more than ``limit``.

    Args:
        units: ordered ``(name, prefixes)`` (e.g. one per block).
        limit: keep units as they are up to this many.
        target: the number of groups to aim for when merging (contiguous, equal-sized chunks).

    Returns:
        Rules; a merged group is named ``first-last`` by index (``features.1-3``).

    Example:
        >>> [n for n, _ in chunk_units([(f"b.{i}", [f"b.{i}"]) for i in range(12)], 8, 8)]
        ['b.0-1', 'b.2-3', 'b.4-5', 'b.6-7', 'b.8-9', 'b.10-11']
    """
    units = list(units)
    if len(units) <= limit:
        return [(n, list(p)) for n, p in units]
    size = -(-len(units) // target)  # ceil: equal chunks, at most `target` of them
    rules: GroupRules = []
    for start in range(0, len(units), size):
        chunk = units[start : start + size]
        first, last = chunk[0][0], chunk[-1][0]
        name = first if len(chunk) == 1 else f"{first}-{last.rsplit('.', 1)[-1]}"
        rules.append((name, [p for _, ps in chunk for p in ps]))
    return rules
