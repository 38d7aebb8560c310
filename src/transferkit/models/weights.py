"""Weights files and the offline policy shared by all sources.

- :func:`read_weights_file` reads a user's ``--weights PATH`` (safetensors, or ``torch.load`` with
  ``weights_only=True`` so a file cannot run code).
- :func:`load_source_weights` loads it into the *source* architecture, ignoring the original
  classifier (it is replaced anyway) and reporting any other mismatch as one error.
- :func:`is_offline`, :func:`network_timeout` and :func:`unavailable_error` implement
  "use the cache, else try to download (10 s socket timeout), else explain the alternatives".
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from transferkit.errors import WeightsMismatchError, WeightsUnavailableError

__all__ = [
    "OFFLINE_ENV",
    "OFFLINE_ENVS",
    "offline_variable",
    "is_offline",
    "network_timeout",
    "unavailable_error",
    "hub_unreachable",
    "read_weights_file",
    "load_source_weights",
]

#: Set to 1 to never try a download (tests, air-gapped machines).
OFFLINE_ENV = "TRANSFERKIT_OFFLINE"
#: Every variable that means "offline"; HuggingFace's own two are honoured the same way, so a
#: machine set up for transformers never sees a connection attempt from transferkit either.
OFFLINE_ENVS = (OFFLINE_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TIMEOUT_S = 10.0


def offline_variable() -> str | None:
    """The first of :data:`OFFLINE_ENVS` set to 1/true/yes/on (huggingface_hub's rule), or None."""
    return next((v for v in OFFLINE_ENVS if os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}), None)


def is_offline() -> bool:
    """True when ``TRANSFERKIT_OFFLINE``, ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is 1/true/yes/on.

    Read at call time (huggingface_hub reads its variables once, at import).
    """
    return offline_variable() is not None


@contextlib.contextmanager
def network_timeout(seconds: float = _TIMEOUT_S) -> Iterator[None]:
    """Give every new socket a timeout, so a download attempt fails fast without network."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def hub_unreachable() -> OSError | None:
    """Probe the HuggingFace endpoint once (``socket`` connect, 10 s timeout).

    huggingface_hub retries failed requests with back-off (about 25 s per file), so without
    network a download attempt would hang for minutes; this probe fails in about a second.
    With a proxy configured the probe is skipped (a direct connection may be blocked).

    Returns:
        The connection error, or None if the endpoint answered (or a proxy is set).
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    from urllib.parse import urlparse

    from huggingface_hub import constants

    parsed = urlparse(constants.ENDPOINT)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "huggingface.co", port), timeout=_TIMEOUT_S).close()
    except OSError as err:
        return err
    return None


def unavailable_error(what: str, looked_for: str, cause: BaseException | None = None) -> WeightsUnavailableError:
    """Build the one-paragraph error for missing pre-trained weights.

    Args:
        what: the model, e.g. ``torchvision:resnet18 (IMAGENET1K_V1)``.
        looked_for: the file or cache entry looked for, with its full path.
        cause: the download error, if one was tried.

    Returns:
        A :class:`WeightsUnavailableError` to raise.
    """
    tried = (
        f" Downloading failed ({type(cause).__name__}: {cause})."
        if cause is not None
        else f" No download was tried because {offline_variable() or OFFLINE_ENV}=1 (unset it to allow one)."
    )
    return WeightsUnavailableError(
        f"Pre-trained weights for {what} are not available offline: looked for {looked_for}."
        f"{tried} Fix: connect to the internet once so the weights are cached, or place the file "
        f"there, or pass `--weights PATH` (a local state_dict .pt/.pth or .safetensors file for "
        f"this architecture), or train from random initialisation with `--no-pretrained`."
    )


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local weights file into a flat ``{name: tensor}`` state_dict.

    Accepts a plain state_dict, ``{"state_dict": ...}`` or ``{"model": ...}``; strips a
    ``module.`` (DataParallel) prefix; a saved TransferModel state_dict (``backbone.model.*`` +
    ``head.*``) is turned back into the source model's keys.

    Args:
        path: ``.safetensors`` (read with ``safetensors.torch.load_file``) or a torch file.

    Returns:
        The state_dict on CPU.

    Example:
        >>> sd = read_weights_file("resnet18.safetensors")  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"Weights file {path} does not exist. Pass `--weights` the path of a local state_dict "
            f"(.pt/.pth/.bin or .safetensors), or use `--no-pretrained`."
        )
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path), device="cpu")
        except SafetensorError as err:  # truncated download, wrong file renamed .safetensors
            raise WeightsMismatchError(
                f"Cannot read weights file {path}: it is truncated or not a safetensors file "
                f"({err}). Download or copy it again, or pass a torch state_dict (.pt/.pth)."
            ) from None
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # pickle of arbitrary objects, corrupt file, ...
            raise WeightsMismatchError(
                f"Cannot read weights file {path} ({type(err).__name__}: {_first_line(err)}). It must be a "
                f"state_dict saved with torch.save (tensors only) or a .safetensors file."
            ) from err
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsMismatchError(
            f"Weights file {path} does not hold a state_dict (a mapping of names to tensors)."
        )
    sd = {str(k): v for k, v in obj.items()}
    sd = _strip_prefix(sd, "module.")
    if sd and all(k.startswith(("backbone.model.", "head.")) for k in sd):
        sd = {k[len("backbone.model.") :]: v for k, v in sd.items() if k.startswith("backbone.model.")}
    return sd


def _first_line(err: BaseException, limit: int = 200) -> str:
    """An exception's first line, cut to ``limit`` characters (torch.load's unpickling errors
    run to a page of advice that does not apply to a user's file)."""
    text = (str(err).strip().splitlines() or [""])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _ignored(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes if p)


def load_source_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], ignore: Sequence[str], origin: str
) -> None:
    """Load ``state_dict`` into the source model, strictly except for the classifier.

    Args:
        model: the source architecture (classifier still in place).
        state_dict: from :func:`read_weights_file`.
        ignore: module prefixes whose keys are ignored on both sides (``fc``, ``classifier.1``).
        origin: the file, for the error message.

    Raises:
        WeightsMismatchError: naming up to 5 missing, unexpected or mis-shaped keys.
    """
    expected = {k: v for k, v in model.state_dict().items() if not _ignored(k, ignore)}
    found = {k: v for k, v in state_dict.items() if not _ignored(k, ignore)}
    problems: list[str] = []
    for k in expected:
        if k not in found:
            problems.append(f"{k} missing (expected {tuple(expected[k].shape)})")
        elif tuple(found[k].shape) != tuple(expected[k].shape):
            problems.append(f"{k} expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}")
    problems += [f"{k} unexpected (found {tuple(v.shape)})" for k, v in found.items() if k not in expected]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise WeightsMismatchError(
            f"Weights file {origin} does not fit {type(model).__name__}: {len(problems)} key(s) differ: "
            f"{shown}. Use a file saved from the same architecture (the spec's model name), "
            f"or drop `--weights`."
        )
    model.load_state_dict(found, strict=False)  # strict except the ignored classifier keys
