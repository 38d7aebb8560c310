"""Helpers shared by the workflows: output folders, reading JSON files, number lists.

Figures are saved with ``transferkit.train.plots.save_figure`` and folders named by
``transferkit.io.runfolder.default_folder``, the one naming pattern of every folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import FunctionType
from typing import Any, Iterable, Sequence

from ..config import TrainConfig
from ..errors import ConfigError, RunFolderError
from ..io.runfolder import default_folder
from ..strategies import strategy_class


def prepare_out(out: str | Path | None, kind: str, model: str, files: Iterable[str]) -> Path:
    """The output folder (created by the first file written into it); refused if it already holds
    this analysis's files.

    An existing folder is fine otherwise, so an explorer can write beside a run or another analysis.
    Nothing is created here, so input errors found later leave no empty folder behind.
    """
    path = Path(out) if out is not None else default_folder(model, kind=kind)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out: {path} exists and is a file; give a folder for the {kind} results.")
    clash = [name for name in files if (path / name).exists()]
    if clash:
        raise RunFolderError(
            f"{path} already holds {', '.join(clash)} from an earlier {kind}; nothing was "
            "overwritten. Choose another --out, or remove those files first."
        )
    return path


def options_for(strategy: str, shared: dict[str, Any]) -> dict[str, Any]:
    """Options shared by several runs, as one strategy takes them. ``epochs`` is for strategies
    that train the backbone: a head on cached features (an epoch costs milliseconds) keeps its
    own default, as a shared --epochs meant for end-to-end runs (say 6) would starve it (MiniLM +
    BBC News, 20 per class: feature extraction 0.803 at 6 epochs); LP-FT's probe has its own too.

    Example:
        >>> options_for("linear-probe", {"epochs": 3, "seed": 1}), options_for("full", {"epochs": 3})
        ({'seed': 1}, {'epochs': 3})
    """
    if strategy_class(strategy).uses_feature_cache() and "epochs" in shared:
        return {k: v for k, v in shared.items() if k != "epochs"}
    return dict(shared)


def trains_same_run(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two configs train the same run: the same settings, and one strategy class only
    renames the other (``linear-probe`` is feature extraction with the L-BFGS head, the default).

    Example:
        >>> base = TrainConfig(model="builtin:efficientnet_lite0", data="builtin:digits")
        >>> trains_same_run(dataclasses.replace(base, strategy="feature-extraction"),
        ...                 dataclasses.replace(base, strategy="linear-probe"))
        True
        >>> trains_same_run(dataclasses.replace(base, strategy="feature-extraction", head_solver="adamw"),
        ...                 dataclasses.replace(base, strategy="linear-probe", head_solver="adamw"))
        False
    """
    # the settings each run trains with: defaults filled in, a strategy's fixed settings applied
    # (linear-probe's head is L-BFGS even where feature extraction was given --head-solver adamw)
    for modality in ("image", "text"):
        if dataclasses.replace(a.resolved(modality), strategy=b.strategy) != b.resolved(modality):
            return False
    ca, cb = strategy_class(a.strategy), strategy_class(b.strategy)
    sub, base = (ca, cb) if issubclass(ca, cb) else (cb, ca) if issubclass(cb, ca) else (None, None)
    if sub is None or base is None:
        return False
    methods = [k for k, v in vars(sub).items() if not k.startswith("__")
               and isinstance(v, (FunctionType, classmethod, staticmethod, property))]
    return not methods and sub.phases == base.phases


def read_json(path: Path) -> Any:
    """A JSON file (``RunFolderError`` naming the file when it is not valid JSON)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc}); it may have been edited or cut short.") from None


def parse_int_list(text: str | Sequence[int], name: str) -> list[int]:
    """``"5,10,20"`` -> ``[5, 10, 20]``, strictly increasing positive whole numbers.

    Example:
        >>> parse_int_list("10,30,100", "per_class")
        [10, 30, 100]
    """
    items = str(text).split(",") if isinstance(text, str) else list(text)
    try:
        values = [int(str(v).strip()) for v in items if str(v).strip()]
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a comma-separated list of whole numbers; "
                          "write e.g. 10,30,100.") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{name}: give at least one positive whole number (>= 1), got {text!r}.")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"{name}: the values must be strictly increasing (each size is a larger "
                          f"nested subset of the one before), got {text!r}; write e.g. 10,30,100.")
    return values


def fmt_params(n: int) -> str:
    """``4_700_000`` -> ``'4.70 M'``; small counts stay whole.

    Example:
        >>> fmt_params(4_700_000), fmt_params(1_280), fmt_params(12)
        ('4.70 M', '1.28 k', '12')
    """
    if n >= 1_000_000:
        return f"{n / 1e6:.2f} M"
    if n >= 1_000:
        return f"{n / 1e3:.2f} k"
    return str(n)
