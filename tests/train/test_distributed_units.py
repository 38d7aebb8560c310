"""The pieces of data-parallel training that need no process group: global batches cut into rank
chunks, sharding, padding, the kill hook's rank filter, thread shares and the launcher's choice
of the one error to report (issue 16). The runs themselves are in ``test_distributed.py``."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from transferkit import errors
from transferkit.io import atomic
from transferkit.train import distributed as dd
from transferkit.train.distributed import (
    IGNORE,
    Distributed,
    GlobalBatchSampler,
    PaddedDataset,
)


def _epochs(sampler, count: int = 2) -> list[list[int]]:
    """``count`` epochs of a sampler's batches, flattened into one list of lists."""
    return [list(map(int, batch)) for _ in range(count) for batch in sampler]


@pytest.mark.parametrize("n, batch", [(22, 7), (20, 5), (3, 8), (1, 1)])
def test_one_rank_draws_the_batches_of_a_shuffled_dataloader(n: int, batch: int) -> None:
    mine, theirs = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    sampler = GlobalBatchSampler(n, batch, Distributed(), generator=mine)
    # as make_loader uses it: the DataLoader draws its base seed from the same generator first
    ours = DataLoader(range(n), batch_sampler=sampler, generator=mine)
    plain = DataLoader(range(n), batch_size=batch, shuffle=True, generator=theirs)
    assert _epochs(ours) == _epochs(plain)
    assert torch.equal(mine.get_state(), theirs.get_state())  # the next draw (a resumed run's) agrees too
    assert len(sampler) == len(plain)


def test_one_rank_alone_draws_the_random_sampler_order() -> None:
    mine, theirs = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    order = list(RandomSampler(range(22), generator=theirs))
    batches = _epochs(GlobalBatchSampler(22, 7, Distributed(), generator=mine), 1)
    assert batches == [order[i : i + 7] for i in range(0, 22, 7)]
    assert torch.equal(mine.get_state(), theirs.get_state())


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("n, batch", [(22, 7), (21, 7), (5, 4), (2, 1), (4, 2)])
def test_rank_chunks_joined_in_rank_order_are_the_global_batch(world: int, n: int, batch: int) -> None:
    whole = _epochs(GlobalBatchSampler(n, batch, Distributed(), generator=torch.Generator().manual_seed(5)))
    samplers = [GlobalBatchSampler(n, batch, Distributed(rank=r, world=world),
                                   generator=torch.Generator().manual_seed(5)) for r in range(world)]
    chunks = [_epochs(s) for s in samplers]
    assert {len(s) for s in samplers} == {len(whole) // 2}  # every rank steps equally often
    assert all(len(c) == len(whole) for c in chunks)
    padded = 0
    for i, batch_ids in enumerate(whole):
        real = [[j for j in c[i] if j >= 0] for c in chunks]
        assert sum(real, []) == batch_ids
        for rank, c in enumerate(chunks):
            if not real[rank]:  # only an empty chunk is padded, with one copy of the batch's first example
                assert c[i] == [-(batch_ids[0] + 1)]
                padded += 1
            else:
                assert c[i] == real[rank]
    expected = 2 * sum(max(0, world - min(batch, n - s)) for s in range(0, n, batch))
    assert padded == expected
    assert [samplers[0].global_size(b) for b in range(len(samplers[0]))] == [len(b) for b in whole[: len(whole) // 2]]


def test_sampler_docstring_example_pads_the_empty_chunk() -> None:
    ranks = [list(GlobalBatchSampler(5, 4, Distributed(rank=r, world=2), shuffle=False)) for r in (0, 1)]
    assert ranks == [[[0, 1], [4]], [[2, 3], [-5]]]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_every_row_once(world: int) -> None:
    for n in range(0, world + 4):  # fewer rows than ranks, as many, more
        ranks = [Distributed(rank=r, world=world) for r in range(world)]
        shards = [ctx.shard(n) for ctx in ranks]
        assert [i for s in shards for i in s] == list(range(n))
        assert [len(s) for s in shards] == ranks[0].shard_sizes(n)
        sizes = ranks[0].shard_sizes(n)
        assert sizes == sorted(sizes, reverse=True) and max(sizes) - min(sizes) <= 1  # gather_rows relies on it


def test_padded_dataset_labels_negative_indices_ignore() -> None:
    base = [(torch.tensor([0.0]), 0), (torch.tensor([1.0]), 1)]
    padded = PaddedDataset(base)
    assert len(padded) == 2
    x, y = padded[1]
    assert torch.equal(x, torch.tensor([1.0])) and y == 1
    x, y = padded[-2]  # example 1 as padding
    assert torch.equal(x, torch.tensor([1.0])) and y == IGNORE == -100


@pytest.mark.parametrize("wanted, rank, kills", [
    ("train-step:2@1", "1", [2]),  # the named rank, at its 2nd step
    ("train-step:2@1", "0", []),  # another rank: never
    ("train-step:2", "0", [2]),  # no rank named: whichever process reaches it
    ("train-step@0", None, [1]),  # RANK unset: rank 0 (a plain run); count defaults to 1
    ("fit-done:1@1", "1", []),  # another point
])
def test_kill_point_rank_filter(monkeypatch, wanted: str, rank: str | None, kills: list[int]) -> None:
    monkeypatch.setenv(atomic.KILL_AT_ENV, wanted)
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr(atomic, "_reached", {})
    killed: list[int] = []
    step = 0
    monkeypatch.setattr(atomic.os, "kill", lambda pid, sig: killed.append(step) if sig == signal.SIGKILL else None)
    for step in range(1, 5):
        atomic.kill_point("train-step")
    assert killed == kills


def test_threads_per_process(monkeypatch) -> None:
    monkeypatch.setattr(dd.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert dd.threads_per_process(2) == 3  # the user's setting wins
    monkeypatch.setenv("OMP_NUM_THREADS", "0")
    assert dd.threads_per_process(2) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert [dd.threads_per_process(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


# ---- the launcher's failure report ------------------------------------------------------------


def _reports(folder: Path, run_dir: Path | None, *reports: dict) -> Path:
    """A workers' reports folder as ``_worker``/``report_run_dir`` leave it."""
    folder.mkdir()
    if run_dir is not None:
        run_dir.mkdir()
        (folder / "run_dir").write_text(str(run_dir), encoding="utf-8")
    for r in reports:
        full = {"message": "m", "traceback": "Traceback (most recent call last):\n  boom\n", **r}
        (folder / f"rank-{r['rank']}.json").write_text(json.dumps(full), encoding="utf-8")
    return folder


def _child_failed(**exitcodes: int) -> SimpleNamespace:
    """What ``ChildFailedError`` carries: ``failures`` {rank: object with ``exitcode``}."""
    return SimpleNamespace(failures={int(r[1:]): SimpleNamespace(exitcode=c) for r, c in exitcodes.items()})


def test_a_killed_rank_wins_over_the_error_that_followed(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    reports = _reports(tmp_path / "rep", run, {"rank": 0, "type": "RuntimeError", "time": 2.0, "bad_input": False,
                                                "message": "Connection closed by peer"})
    error = dd._failure(_child_failed(r0=1, r1=-signal.SIGKILL), reports, 2)
    assert type(error) is dd.WorkerFailedError
    message = str(error)
    assert "Worker process 1 of 2 died (SIGKILL)" in message
    assert f"--resume {run} --nproc 2" in message and "Connection closed" not in message
    assert "Traceback" not in capsys.readouterr().err  # the follow-on error is not printed
    assert json.loads((run / "failure.json").read_text()) == {"error": message, "type": "WorkerFailedError"}


def test_the_earliest_bad_input_is_raised_as_its_own_class(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    reports = _reports(tmp_path / "rep", run,
                       {"rank": 0, "type": "RuntimeError", "time": 5.0, "bad_input": False},
                       {"rank": 1, "type": "TrainingDivergedError", "time": 4.0, "bad_input": True,
                        "message": "the loss diverged at step 3"})
    # a rank ended by the launcher's SIGTERM is a consequence, not the cause
    error = dd._failure(_child_failed(r0=1, r1=2, r2=-signal.SIGTERM), reports, 3)
    assert type(error) is errors.TrainingDivergedError and str(error) == "the loss diverged at step 3"
    assert capsys.readouterr().err == ""
    assert json.loads((run / "failure.json").read_text())["type"] == "TrainingDivergedError"


def test_the_earliest_bug_is_a_worker_failure_with_its_traceback(tmp_path: Path, capsys) -> None:
    reports = _reports(tmp_path / "rep", None,  # failed before rank 0 made the folder: nothing to mark
                       {"rank": 1, "type": "ValueError", "time": 1.0, "bad_input": False, "message": "bad shape"},
                       {"rank": 0, "type": "DataError", "time": 1.5, "bad_input": True})
    error = dd._failure(_child_failed(r0=2, r1=1), reports, 2)
    assert type(error) is dd.WorkerFailedError
    assert str(error).startswith("Worker process 1 of 2 failed with ValueError: bad shape")
    assert "--resume" not in str(error)
    assert capsys.readouterr().err.startswith("[worker 1] Traceback")
    assert list(tmp_path.iterdir()) == [tmp_path / "rep"]


def test_no_report_names_the_exit_status(tmp_path: Path) -> None:
    run = tmp_path / "run"
    error = dd._failure(_child_failed(r1=1, r0=3), _reports(tmp_path / "rep", run), 2)
    assert type(error) is dd.WorkerFailedError
    assert str(error).startswith("Worker process 0 of 2 exited with status 3")
    assert f"--resume {run}" in str(error) and (run / "failure.json").is_file()
