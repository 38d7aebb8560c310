"""Registries: one place that lists the strategies (and, in ``export``, the export formats).

A registry maps names to the classes or objects that own everything about them, like timm's
``register_model``: the entries register themselves where they are defined, and
every other part of transferkit asks the registry instead of keeping its own list of names.

``STRATEGIES`` and ``FEATURE_BACKENDS`` live here, below ``config``, so that ``TrainConfig``
can check a name (and ask a strategy for its defaults) without importing the packages that fill
them, which sit above it: the strategies package, and ``train`` and ``export`` for the feature
backends (ONNX Runtime's comes from ``export``, which the training loop must not import).
Importing ``transferkit`` (or any of its modules) registers the built-in entries.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, Protocol, TypeVar

from .errors import ConfigError

__all__ = ["Registry", "RegisteredStrategy", "STRATEGIES", "FEATURE_BACKENDS"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> entries, in registration order.

    Example:
        >>> formats = Registry("export format")
        >>> formats.add("onnx", "the ONNX format object")
        >>> formats.names(), formats.get("onnx")
        (('onnx',), 'the ONNX format object')
    """

    def __init__(self, what: str, option: str | None = None) -> None:
        self.what = what  # "strategy": used in error messages
        self.option = option or what.replace(" ", "_")  # the config field or option that names one
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        if not name or name != name.strip():
            raise ValueError(f"a {self.what} needs a non-empty name without surrounding spaces, got {name!r}")
        if name in self._entries and self._entries[name] != entry:
            raise ValueError(f"{self.what} {name!r} is already registered ({self._entries[name]!r})")
        self._entries[name] = entry

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests that register an example entry clean up with this)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def get(self, name: str) -> T:
        """The entry named ``name``; ``ConfigError`` listing the known names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = ", ".join(self._entries) or "none registered"
            raise ConfigError(f"{self.option}: unknown {self.what} {name!r}; choose one of {known}.") from None


class RegisteredStrategy(Protocol):
    """What ``config`` needs from a registered strategy class (``strategies.base.Strategy``)."""

    name: str

    @classmethod
    def resolve_config(cls, config: Any, modality: str | None = None) -> Any: ...


#: Every adaptation strategy, by its ``--strategy`` name (filled by ``transferkit.strategies``).
STRATEGIES: Registry[type[RegisteredStrategy]] = Registry("strategy")


#: ``--backend``: name -> ``factory(model, loader, device, *, examples)`` that returns a function
#: encoding one loader batch into backbone features [B, F], or ``None`` to run the model in torch
#: (``examples``: how many the run will encode with it, for a factory that weighs a set-up cost). Filled by
#: ``transferkit.train.features`` (torch) and ``transferkit.export.features`` (onnxruntime).
FEATURE_BACKENDS: Registry[Callable[..., Any]] = Registry("feature backend", option="backend")
