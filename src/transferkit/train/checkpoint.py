"""Resumable checkpoints: RUN_DIR/checkpoint/ holds the state after the last finished epoch.

Weights go to safetensors; the optimizer state, counters, RNG states and metric records go to a
``torch.save`` file that is read back with ``weights_only=True`` (never unpickled as code).
Each file is replaced atomically, the state file last, so a kill at any moment leaves the
previous epoch's complete checkpoint or the new one.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from ..errors import RunFolderError
from ..io import runfolder as rf
from ..io.atomic import atomic_save_torch, atomic_save_weights, load_weights
from ..io.records import EpochRecord, Phase
from .loop import Checkpoint, LoopState

FOLDER = rf.CHECKPOINT
_STATE = "state.pt"


def save_checkpoint(run_dir: Path, ck: Checkpoint) -> None:
    """Write ``ck`` into ``run_dir/checkpoint`` (weights first, the state file last)."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(exist_ok=True)
    epoch = ck.state.epoch
    atomic_save_weights(folder / f"model-{epoch}.safetensors", ck.model)
    if ck.best_model is not None:
        atomic_save_weights(folder / f"best-{epoch}.safetensors", ck.best_model)
    state = {  # plain containers only: read back with weights_only=True
        "phase": ck.phase.value, "state": dataclasses.asdict(ck.state), "optimizer": ck.optimizer,
        "join_steps": ck.join_steps, "torch_rng": ck.torch_rng, "generator_rng": ck.generator_rng,
        "records": [r.to_dict() for r in ck.records], "epoch": epoch, "has_best": ck.best_model is not None,
    }
    atomic_save_torch(folder / _STATE, state)
    for old in folder.glob("*.safetensors"):  # only the files the new state names survive
        if old.name not in (f"model-{epoch}.safetensors", f"best-{epoch}.safetensors"):
            old.unlink(missing_ok=True)


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """Read the checkpoint of an interrupted run (raises RunFolderError if there is none)."""
    folder = Path(run_dir) / FOLDER
    if not (folder / _STATE).is_file():
        raise RunFolderError(
            f"{run_dir} has no checkpoint to resume from ({folder / _STATE} is missing): either "
            "the run finished (its results are in the folder), or it was stopped before its "
            "first end-to-end epoch ended; start it again with `transferkit train --config "
            f"{Path(run_dir) / rf.CONFIG}`."
        )
    state = torch.load(folder / _STATE, map_location="cpu", weights_only=True)
    epoch = state["epoch"]
    best = load_weights(folder / f"best-{epoch}.safetensors") if state["has_best"] else None
    return Checkpoint(
        phase=Phase.parse(state["phase"]), state=LoopState(**state["state"]),
        model=load_weights(folder / f"model-{epoch}.safetensors"), best_model=best,
        optimizer=state["optimizer"], join_steps=list(state["join_steps"]),
        torch_rng=state["torch_rng"], generator_rng=state["generator_rng"],
        records=[EpochRecord.from_dict(r) for r in state["records"]],
    )


def remove_checkpoint(run_dir: Path) -> None:
    """Drop the checkpoint once the run has finished and written its results."""
    shutil.rmtree(Path(run_dir) / FOLDER, ignore_errors=True)
