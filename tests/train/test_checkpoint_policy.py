"""When a run writes its checkpoint: the first and last epochs of a phase always, the epochs
between once ``--checkpoint-every`` seconds have passed (by default 20x the last write's time),
and the epoch a time budget ended on even when the interval had skipped it."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferkit.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.io.records import Phase
from transferkit.train.checkpoint import (
    AUTO_INTERVAL_FACTOR,
    CheckpointWriter,
    RunState,
    load_checkpoint,
    mark_finished,
    save_checkpoint,
)
from transferkit.train.loop import Checkpoint, LoopSettings, LoopState, fit


class Clock:
    """A clock for the writer; each write advances it by the write's duration."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def _writer(clock: Clock, every: float | None, write_seconds: float) -> tuple[CheckpointWriter, list[int]]:
    written: list[int] = []

    def write(ck: int) -> None:
        written.append(ck)
        clock.now += write_seconds

    return CheckpointWriter(write, every, clock), written


def _epochs(writer: CheckpointWriter, clock: Clock, epochs: int, epoch_seconds: float) -> None:
    for epoch in range(1, epochs + 1):
        clock.now += epoch_seconds
        writer(epoch, epoch == epochs)


def test_default_interval_is_twenty_times_the_last_write(clock) -> None:
    # a write takes 1.5 s (MiniLM here), an epoch 4 s: the next is due 30 s after the last
    writer, written = _writer(clock, None, 1.5)
    _epochs(writer, clock, 20, 4.0)
    assert AUTO_INTERVAL_FACTOR == 20
    assert written == [1, 9, 17, 20]  # the first, then every 8 epochs (32 s >= 30 s), the last
    spent_writing = 1.5 * len(written)  # a twentieth between the first and last writes, and those two
    assert spent_writing / (20 * 4.0 + spent_writing) < 1 / AUTO_INTERVAL_FACTOR + 2 * 1.5 / (20 * 4.0)


def test_zero_writes_every_epoch_and_seconds_are_seconds(clock) -> None:
    writer, written = _writer(clock, 0.0, 1.5)
    _epochs(writer, clock, 5, 4.0)
    assert written == [1, 2, 3, 4, 5]
    writer, written = _writer(clock, 10.0, 1.5)
    _epochs(writer, clock, 7, 4.0)
    assert written == [1, 4, 7]  # 12 s after the write of epoch 1, then the last epoch


def test_cheap_writes_keep_one_checkpoint_per_epoch(clock) -> None:
    writer, written = _writer(clock, None, 0.01)  # a tiny model: 0.2 s interval, 1 s epochs
    _epochs(writer, clock, 4, 1.0)
    assert written == [1, 2, 3, 4]


def test_time_budget_writes_the_epoch_the_interval_skipped() -> None:
    """The loop ends on the time budget after an epoch the interval skipped: that epoch's state is
    written then (nothing trained since), so a resume continues from where training stopped."""
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(8, 2)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    settings = LoopSettings(epochs=50, weight_decay=0.0, patience=1000, deadline=time.perf_counter() + 3600)
    calls: list[tuple[int, bool]] = []

    def checkpoint(ck, final: bool) -> bool:
        calls.append((ck.state.epoch, final))
        if ck.state.epoch == 3:
            settings.deadline = 0.0  # the budget is spent: no epoch 4
        return ck.state.epoch == 1 or final  # an interval that skips epochs 2 and 3

    result = fit(model, loader, loader, [{"params": list(model.parameters()), "lr": 0.01}], settings,
                 phase=Phase.FINE_TUNE, checkpoint=checkpoint)
    assert result.stopped_early and result.epochs_run == 3
    assert calls == [(1, False), (2, False), (3, False), (3, True)]  # epoch 3 written at the stop


def test_checkpoint_every_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="checkpoint_every"):
        TrainConfig(model="m", data="d", checkpoint_every=-1.0)
    assert TrainConfig(model="m", data="d").checkpoint_every is None


def _checkpoint(epoch: int) -> Checkpoint:
    return Checkpoint(Phase.FINE_TUNE, LoopState(epoch=epoch), {"w": torch.zeros(2)}, None,
                      {"state": {}, "param_groups": []}, [], torch.get_rng_state(), None, [])


def test_finished_marks_the_state_it_ends_and_goes_stale_with_the_next(tmp_path) -> None:
    save_checkpoint(tmp_path, _checkpoint(3), RunState(warnings=["w"]))
    state_file = tmp_path / "checkpoint" / "state.pt"
    written = state_file.stat().st_mtime_ns
    mark_finished(tmp_path, RunState(warnings=["w", "end"]))
    assert state_file.stat().st_mtime_ns == written  # not rewritten (MiniLM: ~180 MB of optimizer state)
    resumed = load_checkpoint(tmp_path)
    assert resumed.run.finished and resumed.run.warnings == ["w", "end"] and resumed.loop.state.epoch == 3
    # a later phase's checkpoint: the marker named the state before it
    save_checkpoint(tmp_path, _checkpoint(1), RunState(warnings=["next"]))
    resumed = load_checkpoint(tmp_path)
    assert not resumed.run.finished and resumed.run.warnings == ["next"]


def test_a_marker_naming_another_state_is_ignored(tmp_path) -> None:
    save_checkpoint(tmp_path, _checkpoint(2), RunState())
    mark_finished(tmp_path, RunState())
    marker = tmp_path / "checkpoint" / "finished.pt"
    stale = torch.load(marker, weights_only=True) | {"id": "another"}  # an earlier state's marker
    torch.save(stale, marker)
    assert not load_checkpoint(tmp_path).run.finished
    marker.write_bytes(b"cut sh")  # a marker cut short
    assert not load_checkpoint(tmp_path).run.finished
