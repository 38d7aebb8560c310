"""Resumable checkpoints: RUN_DIR/checkpoint/ holds the state after the last checkpointed epoch.

A phase's first and last epochs write one, and the epochs between only when ``--checkpoint-every``
seconds have passed since the last one was written (0: every epoch; by default 20 times as long
as that write took, so checkpoints cost at most a twentieth of the run): a checkpoint of MiniLM
(weights, best weights, AdamW state, each flushed to disk) costs about 1.5 s on a 2-core CPU, a
quarter of a few-shot epoch, overhead a hand-written loop does not pay. A kill loses at most
the training since the last checkpoint.

Weights go to safetensors; the optimizer state, counters, RNG states (torch, CUDA, NumPy,
Python, the loader's generator) and metric records go to a ``torch.save`` file that is read back
with ``weights_only=True`` (never unpickled as code). Each file is replaced atomically, the state
file last, so a kill at any moment leaves the previous epoch's complete checkpoint or the new one.

Beside the loop's state the file keeps the run's own (:class:`RunState`): fingerprints of the
data and config the run started with (a resume refuses to continue on anything else), the time
spent so far (the time budget counts it), the warnings and test-record entries of the phases
before, and whether the phase's loop had already ended (early stop, time budget, last epoch),
so a run killed between that decision and its test pass is not trained further.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import TrainConfig
from ..data import DataBundle
from ..errors import RunFolderError
from ..io import runfolder as rf
from ..io.atomic import atomic_save_torch, atomic_save_weights, load_weights
from ..io.records import EpochRecord, EventKind, Phase
from .loop import Checkpoint, LoopState

__all__ = [
    "resume_hint",
    "AUTO_INTERVAL_FACTOR",
    "FOLDER",
    "CheckpointWriter",
    "Resumable",
    "RunState",
    "check_unchanged",
    "config_fingerprint",
    "data_fingerprint",
    "load_checkpoint",
    "load_phase_start",
    "mark_finished",
    "remove_checkpoint",
    "restore_cuda_rng",
    "restore_host_rng",
    "save_checkpoint",
    "save_phase_start",
]

FOLDER = rf.CHECKPOINT
_STATE = "state.pt"
# The loop's end, marked beside the state it ends (named by the state's random id) instead of
# rewriting state.pt: that file holds the optimizer's moments (MiniLM: ~180 MB, ~1 s to rewrite).
_FINISHED = "finished.pt"
# LP-FT: the weights phase 2 started from (the probe), which its kept weights are interpolated
# towards after the loop (``train.wise``); a resumed phase 2 has lost them from memory.
_PHASE_START = "phase-start.safetensors"


@dataclass
class RunState:
    """What the runner keeps beside the loop's state, so a resumed run ends as an uninterrupted one.

    Attributes:
        data_fingerprint: :func:`data_fingerprint` of the data the run started with.
        config_fingerprint: :func:`config_fingerprint` of its config.yaml.
        elapsed: seconds the run had spent when the checkpoint was written.
        warnings: the run's warnings so far (test_metrics.json ``warnings``).
        extra: TestMetrics entries the earlier phases filled (``head``, ``probe_scale``, ...).
        finished: the phase's loop has ended (early stop, time budget, last epoch): a resume
            restores its best weights and goes straight to the test pass.
    """

    data_fingerprint: str = ""
    config_fingerprint: str = ""
    elapsed: float = 0.0
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    def to_state(self) -> dict[str, Any]:
        """Plain containers (``weights_only`` loads them); ``extra`` as JSON, which it is."""
        return {"data_fingerprint": self.data_fingerprint, "config_fingerprint": self.config_fingerprint,
                "elapsed": float(self.elapsed), "warnings": list(self.warnings),
                "extra": json.dumps(self.extra), "finished": bool(self.finished)}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> RunState:
        if not state:  # a checkpoint written before run states existed
            return cls()
        return cls(state["data_fingerprint"], state["config_fingerprint"], float(state["elapsed"]),
                   list(state["warnings"]), json.loads(state["extra"]), bool(state["finished"]))


@dataclass
class Resumable:
    """An interrupted run as its checkpoint left it: the loop's state and the run's."""

    loop: Checkpoint
    run: RunState
    cuda_rng: list[torch.Tensor] | None = None
    host_rng: dict[str, Any] | None = None  # NumPy's and Python's generators

    def stop_decided(self) -> bool:
        """Whether the phase had already decided to train no further (a resume must not)."""
        last = self.loop.records[-1] if self.loop.records else None
        early_stop = last is not None and last.phase is self.loop.phase and any(
            e.kind is EventKind.EARLY_STOP for e in last.events)
        return self.run.finished or early_stop


_LABELS_PER_PIECE = 1 << 16


def _hash_item(digest: Any, item: Any) -> None:
    if isinstance(item, np.ndarray):  # an in-memory image: its shape, type and pixels
        digest.update(f"{item.shape}{item.dtype}".encode())
        digest.update(np.ascontiguousarray(item).tobytes())
    else:  # a path or a text
        digest.update(str(item).encode("utf-8", "surrogatepass"))
    digest.update(b"\0")


def data_fingerprint(data: DataBundle) -> str:
    """SHA-256 of the data listing: class names, and per split its items (paths, texts or
    pixels) and labels in order, so a changed file list, label or split assignment changes it.

    Example:
        >>> data_fingerprint(load_data("builtin:digits"))[:8]  # doctest: +SKIP
        '3f9c01ab'
    """
    digest = hashlib.sha256(json.dumps(list(data.classes)).encode())
    for name in ("train", "val", "test"):
        split = getattr(data, name)
        digest.update(f"|{name}:{len(split)}|".encode())
        _hash_labels(digest, split.labels)
        digest.update(b"|")
        for item in split.items:  # a table's paths are read as a stream, never all held
            _hash_item(digest, item)
    return digest.hexdigest()


def _hash_labels(digest: Any, labels: Any) -> None:
    """The bytes of ``json.dumps([int(x) for x in labels])`` ("[0, 2, 1]"), a piece at a time,
    so the fingerprint of a run started before labels were streamed still matches."""
    digest.update(b"[")
    for start in range(0, len(labels), _LABELS_PER_PIECE):
        piece = labels[start : start + _LABELS_PER_PIECE]
        values = piece.tolist() if isinstance(piece, np.ndarray) else piece
        digest.update((", " if start else "").encode() + ", ".join(str(int(x)) for x in values).encode())
    digest.update(b"]")


def config_fingerprint(config_file: Path) -> str:
    """SHA-256 of the config as read back from its file (formatting and comments do not count)."""
    values = TrainConfig.load(config_file).to_dict()
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def check_unchanged(ck: Resumable, data: DataBundle, run_dir: Path) -> None:
    """Refuse to resume on other data, splits or config than the run started with.

    Raises:
        RunFolderError: naming what changed and how to go on.
    """
    run_dir = Path(run_dir)
    if ck.run.config_fingerprint and ck.run.config_fingerprint != config_fingerprint(run_dir / rf.CONFIG):
        raise RunFolderError(
            f"Cannot resume {run_dir}: its {rf.CONFIG} changed since the run started, and the epochs "
            "so far were trained with the old settings. Restore the file, or start a new run with "
            f"`transferkit train --config {run_dir / rf.CONFIG} --out NEW_FOLDER`."
        )
    if ck.run.data_fingerprint and ck.run.data_fingerprint != data_fingerprint(data):
        raise RunFolderError(
            f"Cannot resume {run_dir}: the data {data.source} changed since the run started (its "
            "files, texts, labels or train/val/test splits differ), so the epochs so far do not "
            "fit it. Restore the data as it was, or start a new run with `transferkit train "
            f"--config {run_dir / rf.CONFIG} --out NEW_FOLDER`."
        )


def _host_rng() -> dict[str, Any]:
    """NumPy's and Python's global generators as plain containers (tensors, ints, lists)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}


def restore_host_rng(state: dict[str, Any] | None) -> None:
    """Put NumPy's and Python's generators back as :func:`save_checkpoint` found them."""
    if not state:
        return
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _cuda_rng() -> list[torch.Tensor] | None:
    return [s.cpu() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None


def save_checkpoint(run_dir: Path, ck: Checkpoint, run: RunState | None = None) -> None:
    """Write ``ck`` and ``run`` into ``run_dir/checkpoint`` (weights first, the state file last)."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(exist_ok=True)
    epoch = ck.state.epoch
    atomic_save_weights(folder / f"model-{epoch}.safetensors", ck.model)
    if ck.best_model is not None:
        atomic_save_weights(folder / f"best-{epoch}.safetensors", ck.best_model)
    state = {  # plain containers only: read back with weights_only=True
        "phase": ck.phase.value, "state": dataclasses.asdict(ck.state), "optimizer": ck.optimizer,
        "join_steps": ck.join_steps, "torch_rng": ck.torch_rng, "generator_rng": ck.generator_rng,
        "cuda_rng": _cuda_rng(), "host_rng": _host_rng(),
        "records": [r.to_dict() for r in ck.records], "epoch": epoch, "has_best": ck.best_model is not None,
        "run": (run or RunState()).to_state(),
        "id": secrets.token_hex(8),  # what a finished marker names; a new state makes old ones stale
    }
    atomic_save_torch(folder / _STATE, state)
    (folder / _FINISHED).unlink(missing_ok=True)  # stale now: it names the previous state
    for old in folder.glob("*.safetensors"):  # only the files the new state names survive
        if old.name not in (f"model-{epoch}.safetensors", f"best-{epoch}.safetensors", _PHASE_START):
            old.unlink(missing_ok=True)


# By default a checkpoint is due once training has run this many times as long as the last
# checkpoint took to write: at most 1/20 of a run's time goes to checkpoints.
AUTO_INTERVAL_FACTOR = 20.0


class CheckpointWriter:
    """The loop's checkpoint callback: calls ``write(ck)`` for the first epoch, for the phase's
    last (``final``), and otherwise when ``every`` seconds have passed since the last write
    (``None``: :data:`AUTO_INTERVAL_FACTOR` times that write's duration; 0: every epoch);
    returns whether it wrote.

    Example:
        >>> writer = CheckpointWriter(lambda ck: save_checkpoint(Path("run"), ck), every=None)
        >>> writer(ck, final=False)  # doctest: +SKIP
        True
    """

    def __init__(self, write: Callable[[Checkpoint], None], every: float | None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.write, self.every, self.clock = write, every, clock
        self.last_end: float | None = None  # clock() when the last write ended
        self.last_cost = 0.0  # seconds it took

    def __call__(self, ck: Checkpoint, final: bool) -> bool:
        if not final and self.last_end is not None:
            interval = AUTO_INTERVAL_FACTOR * self.last_cost if self.every is None else self.every
            if self.clock() - self.last_end < interval:
                return False
        start = self.clock()
        self.write(ck)
        self.last_end = self.clock()
        self.last_cost = self.last_end - start
        return True


def _read_state(run_dir: Path, mmap: bool = False) -> dict[str, Any]:
    path = Path(run_dir) / FOLDER / _STATE
    if not path.is_file():
        raise RunFolderError(
            f"{run_dir} has no checkpoint to resume from ({path} is missing): either "
            "the run finished (its results are in the folder), or it was stopped before its "
            "first end-to-end epoch ended; start it again with `transferkit train --config "
            f"{Path(run_dir) / rf.CONFIG}`."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise RunFolderError(
            f"The checkpoint {path} is unreadable ({type(exc).__name__}); the run cannot be "
            f"resumed. Start it again with `transferkit train --config {Path(run_dir) / rf.CONFIG}`."
        ) from None


def save_phase_start(run_dir: Path, weights: dict[str, torch.Tensor]) -> None:
    """Keep the weights a fine-tuning phase started from beside its checkpoint (LP-FT's probe)."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(exist_ok=True)
    atomic_save_weights(folder / _PHASE_START, weights)


def load_phase_start(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights :func:`save_phase_start` kept (raises RunFolderError if they are gone: without
    them a resumed run would silently keep other weights than its config asks for)."""
    path = Path(run_dir) / FOLDER / _PHASE_START
    if not path.is_file():
        raise RunFolderError(
            f"{path} is missing: it holds the weights LP-FT's phase 2 started from, which --wise-alpha "
            "interpolates towards, so the run cannot be resumed as configured. Start it again with "
            f"`transferkit train --config {Path(run_dir) / rf.CONFIG}`."
        )
    return load_weights(path)


def mark_finished(run_dir: Path, run: RunState) -> None:
    """Record that the phase's loop has ended (with the warnings and entries it produced), so a
    run killed before its test pass is resumed straight to the test pass. The checkpoint's
    weights already hold the best epoch's state the loop restored.

    The record is a small file naming the state it finishes; state.pt itself is only opened
    memory-mapped, to read that name, not read and rewritten whole."""
    folder = Path(run_dir) / FOLDER
    if not (folder / _STATE).is_file():  # no epoch ended (time budget): nothing to resume
        return
    state_id = _read_state(run_dir, mmap=True).get("id")
    atomic_save_torch(folder / _FINISHED, {"id": state_id, "run": dataclasses.replace(run, finished=True).to_state()})


def _run_state(folder: Path, state: dict[str, Any]) -> RunState:
    """The run's state as the checkpoint left it: the finished marker's when it names this state."""
    marker = folder / _FINISHED
    if state.get("id") is not None and marker.is_file():
        try:
            finished = torch.load(marker, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a marker cut short by a kill: the loop had not ended
            finished = {}
        if finished.get("id") == state["id"]:
            return RunState.from_state(finished["run"])
    return RunState.from_state(state.get("run"))


def load_checkpoint(run_dir: Path) -> Resumable:
    """Read the checkpoint of an interrupted run (raises RunFolderError if there is none)."""
    folder = Path(run_dir) / FOLDER
    state = _read_state(run_dir)
    epoch = state["epoch"]
    try:
        best = load_weights(folder / f"best-{epoch}.safetensors") if state["has_best"] else None
        model = load_weights(folder / f"model-{epoch}.safetensors")
    except Exception as exc:  # noqa: BLE001 - a missing or corrupt weights file
        raise RunFolderError(
            f"The checkpoint weights in {folder} are missing or unreadable ({type(exc).__name__}); "
            "the run cannot be resumed. Start it again with `transferkit train --config "
            f"{Path(run_dir) / rf.CONFIG}`."
        ) from None
    loop = Checkpoint(
        phase=Phase.parse(state["phase"]), state=LoopState(**state["state"]),
        model=model, best_model=best,
        optimizer=state["optimizer"], join_steps=list(state["join_steps"]),
        torch_rng=state["torch_rng"], generator_rng=state["generator_rng"],
        records=[EpochRecord.from_dict(r) for r in state["records"]],
    )
    return Resumable(loop, _run_state(folder, state), state.get("cuda_rng"), state.get("host_rng"))


def restore_cuda_rng(ck: Resumable) -> None:
    """Put the CUDA generators back (each device's), when the run had and still has CUDA."""
    if ck.cuda_rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ck.cuda_rng)


def resume_hint(run_dir: Path) -> str:
    """What to do about a run stopped before it finished (Ctrl-C, a kill): resume it from its
    checkpoint, or, with none yet, start it again."""
    if (Path(run_dir) / FOLDER / _STATE).is_file():
        return (f"{run_dir} was interrupted; continue it from its last finished epoch with "
                f"`transferkit train --resume {run_dir}` (tk.resume).")
    return (f"{run_dir} was interrupted before a checkpoint was written (none is written before the "
            f"first end-to-end epoch ends); start it again with `transferkit train --config "
            f"{Path(run_dir) / rf.CONFIG} --out NEW_FOLDER`.")


def remove_checkpoint(run_dir: Path) -> None:
    """Drop the checkpoint once the run has finished and written its results (the state file
    first: a kill midway leaves no state that would claim the run is unfinished)."""
    folder = Path(run_dir) / FOLDER
    (folder / _STATE).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
