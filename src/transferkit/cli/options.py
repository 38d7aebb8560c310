"""Click options built from the typed configs, so an option's name, type, choices and help are
the dataclass field's: one owner per option.

Every option defaults to ``None`` so that only the options actually given override a
``--config`` file or the config's defaults; booleans become ``--x/--no-x``; ``Literal`` fields
become choices.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Callable, Iterable, Literal, Union

import click

import transferkit as tk

__all__ = ["field_options", "train_options", "data_options", "given", "data_from", "TRAIN_POSITIONAL",
           "FiniteFloat", "POSITIVE_SECONDS", "COUNT", "nproc_option"]

# TrainConfig fields that commands declare by hand (``train`` has its own --model, --data, ...).
TRAIN_POSITIONAL = ("model", "data", "out", "pretrained")


class FiniteFloat(click.ParamType):
    """A number option that rejects NaN and infinity (click's ``float`` and ``FloatRange`` accept
    ``nan``, which passes every comparison) and checks a range.

    Example:
        >>> FiniteFloat(0, low_open=True).convert("2.5", None, None)
        2.5
    """

    name = "number"

    def __init__(self, low: float | None = None, *, low_open: bool = False, high: float | None = None) -> None:
        self.low, self.low_open, self.high = low, low_open, high

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f"from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return f"at most {self.high:g}" if self.high is not None else "any finite number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number.", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; give a number {self._range()}.", param, ctx)
        too_low = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        if too_low or (self.high is not None and number > self.high):
            self.fail(f"{value!r} is out of range; give a number {self._range()}.", param, ctx)
        return number


#: Seconds of a time budget: a positive, finite number.
POSITIVE_SECONDS = FiniteFloat(0, low_open=True)
#: A count of things (classes, epochs, seeds, examples): a whole number >= 1.
COUNT = click.IntRange(min=1)


def nproc_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--nproc N``: ``what`` trains data-parallel in N local processes (one owner of its help)."""
    return click.option(
        "--nproc", "nproc", type=COUNT, default=None, metavar="N",
        help=f"Train {what} data-parallel in N local processes (torch.distributed: Gloo on the CPU, "
             "one GPU each with NCCL). On a CPU the cores are shared out: cores/N threads each. Under "
             "torchrun, leave it out.")


def _click_type(annotation: Any) -> Any:
    """``int | None`` -> int; ``Literal[...]`` -> a choice; lists and mixed unions -> text that
    the config parses (``1e-5,1e-4``; ``auto`` or ``64``)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return _click_type(args[0]) if len(args) == 1 else str
    if typing.get_origin(annotation) is Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    if typing.get_origin(annotation) is list:
        return str
    return annotation


def _helps() -> dict[str, str]:
    helps = tk.TrainConfig.field_help()
    helps["strategy"] = f"Adaptation strategy: {', '.join(tk.strategy_names())} (`transferkit strategies`)."
    return helps


def field_options(names: Iterable[str], cls: type = tk.TrainConfig) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: one ``--option`` per named field of ``cls``, with the field's help and type."""
    names = list(names)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        hints, helps = typing.get_type_hints(cls), _helps()
        for name in reversed(names):
            flag, kind = name.replace("_", "-"), _click_type(hints[name])
            if kind is bool:
                option = click.option(f"--{flag}/--no-{flag}", name, default=None, help=helps[name])
            else:
                option = click.option(f"--{flag}", name, type=kind, default=None, help=helps[name])
            func = option(func)
        return func
    return decorate


def train_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every TrainConfig field as an option, except those ``train`` declares by hand."""
    return field_options([f.name for f in dataclasses.fields(tk.TrainConfig) if f.name not in TRAIN_POSITIONAL])(func)


def data_options(*, exclude: Iterable[str] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the DataOptions fields (splits, seed, per-class, columns, image size) as
    options, for the commands that read data (``--data`` itself is declared by the command)."""
    skip = {"data", *exclude}
    return field_options([f.name for f in dataclasses.fields(tk.DataOptions) if f.name not in skip])


def given(values: dict[str, Any]) -> dict[str, Any]:
    """The options actually given on the command line."""
    return {k: v for k, v in values.items() if v is not None}


def data_from(data: str, values: dict[str, Any]) -> tuple[tk.DataOptions, dict[str, Any]]:
    """Split a command's option values into one DataOptions and the rest (given ones only)."""
    names = {f.name for f in dataclasses.fields(tk.DataOptions)}
    values = given(values)
    options = tk.DataOptions(data=data, **{k: v for k, v in values.items() if k in names})
    return options, {k: v for k, v in values.items() if k not in names}
