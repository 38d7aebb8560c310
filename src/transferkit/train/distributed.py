"""Data-parallel training on torch.distributed: the process group, sharding and collectives.

transferkit does not run its own engine. Workers are started by torch's elastic launcher: by
``torchrun`` (``torch.distributed.run``) or, for ``--nproc N``, by :func:`launch`. That launcher
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address, and :func:`session`
joins the process group. The backend is NCCL on CUDA (one GPU per process) and Gloo on the CPU.
Gradients are averaged by ``DistributedDataParallel`` (:meth:`Distributed.wrap`).

What makes a run independent of the number of processes:

- Batches are global. Each global batch of ``batch_size`` examples, in the order of one seeded
  permutation, is cut into one contiguous chunk per rank (:class:`GlobalBatchSampler`). The
  loss is summed over a rank's real examples and scaled by ``world / examples in the global
  batch``, so DDP's mean over ranks is the one-process mean. A rank whose chunk of the last
  batch is empty gets one padding example labelled ``IGNORE``: it counts for nothing, but the
  rank still takes part in the gradient all-reduce.
- Evaluation shards each split contiguously (:meth:`Distributed.shard`) and gathers the rows on
  rank 0 in order, so every example counts exactly once. Rank 0 decides (validation scores,
  early stopping, the time budget) and broadcasts the decision.
- Rank 0 alone writes the run folder.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, RandomSampler, Sampler

from .. import errors
from ..io import runfolder as rf
from ..io.atomic import atomic_write_json

log = logging.getLogger("transferkit")

__all__ = ["Distributed", "SINGLE", "GlobalBatchSampler", "IGNORE", "session", "launch", "in_launched_worker",
           "threads_per_process", "WorkerFailedError", "REPORTS_ENV"]

#: The label of a padding example: ``F.cross_entropy(ignore_index=IGNORE)`` gives it no loss.
IGNORE = -100
#: Where a worker records its error (and rank 0 the run folder) for the process that launched it.
REPORTS_ENV = "TRANSFERKIT_WORKER_REPORTS"
#: How long a collective may wait for a rank before the process group gives up.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


class WorkerFailedError(errors.TransferkitError, RuntimeError):
    """A worker process of a distributed run died or raised an unexpected error."""


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a data-parallel run (``world == 1``: a plain run).

    Example:
        >>> Distributed(rank=1, world=2).shard(5)
        range(3, 5)
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run folder and decides."""
        return self.rank == 0

    def shard_sizes(self, n: int) -> list[int]:
        """Rows per rank when ``n`` rows are cut into contiguous chunks (the first ``n % world``
        ranks take one more)."""
        base, extra = divmod(n, self.world)
        return [base + (r < extra) for r in range(self.world)]

    def shard(self, n: int) -> range:
        """This rank's contiguous chunk of ``range(n)``."""
        sizes = self.shard_sizes(n)
        start = sum(sizes[: self.rank])
        return range(start, start + sizes[self.rank])

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: its own GPU (``LOCAL_RANK``) on CUDA."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def _comm(self, tensor: torch.Tensor) -> torch.Tensor:
        """NCCL moves GPU tensors only; Gloo CPU ones."""
        on_gpu = dist.get_backend() == "nccl"
        return tensor.to(torch.device("cuda", torch.cuda.current_device()) if on_gpu else "cpu")

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (small Python objects: paths, records, decisions)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (pickled: keep each call to tens
        of MB; the decoded-image cache swaps its images in chunks)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait until every rank is here (rank 0 has written what the others read next)."""
        if self.enabled:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (float64)."""
        if not self.enabled:
            return list(values)
        total = self._comm(torch.tensor(values, dtype=torch.float64))
        dist.all_reduce(total)
        return total.cpu().tolist()

    def gather_rows(self, rows: torch.Tensor, n: int) -> torch.Tensor | None:
        """Every rank's chunk (``rows`` [n_r, ...] for ``shard(n)``) joined in order on rank 0:
        [n, ...] there, ``None`` elsewhere. A rank with an empty chunk may send [0] or [0, 0]."""
        if not self.enabled:
            return rows
        sizes = self.shard_sizes(n)
        # the trailing shape and dtype from a rank that has rows (chunk sizes fall with the rank)
        shape, dtype = self.broadcast_object((tuple(rows.shape[1:]), rows.dtype) if self.main else None)
        padded = torch.zeros((max(sizes), *shape), dtype=dtype)
        if len(rows):
            padded[: len(rows)] = rows.reshape(len(rows), *shape)
        padded = self._comm(padded)
        if not self.main:
            dist.gather(padded, dst=0)
            return None
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.gather(padded, parts, dst=0)
        return torch.cat([p[:s].cpu() for p, s in zip(parts, sizes)])

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` under DistributedDataParallel (gradients averaged in buckets while the
        backward pass runs), or ``model`` itself in a plain run or when nothing trains.

        ``static_graph``: a trainable parameter may take no part in the loss (a Hugging Face
        pooler whose output the mean pooling ignores), and DDP would wait for its gradient
        forever; a static graph finds such parameters in the first step and skips them after,
        without ``find_unused_parameters``' walk of the autograd graph at every step. The set of
        parameters that train changes only between epochs, where the model is wrapped anew.
        Buffers are not synchronised at every forward: BatchNorm's running statistics are
        averaged at the end of each epoch (:meth:`average_buffers`).
        """
        if not self.enabled or not any(p.requires_grad for p in model.parameters()):
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False, static_graph=True,
                                       gradient_as_bucket_view=True)

    def unwrap(self, net: nn.Module) -> None:
        """Detach a DDP wrapper's gradient hooks before the model is wrapped again (the set
        of trainable parameters changed: gradual unfreezing)."""
        remove = getattr(net, "_remove_autograd_hooks", None)
        if remove is not None:
            remove()

    def average_buffers(self, model: nn.Module) -> None:
        """BatchNorm running statistics averaged over the ranks (each saw its own examples).

        On CUDA, BatchNorm layers that train are SyncBatchNorm (:func:`sync_batchnorm`), whose
        batch statistics already span all ranks; on the CPU torch has no SyncBatchNorm, so batch
        statistics are per rank and only the running estimates are made equal here (timm's
        ``distribute_bn``)."""
        if not self.enabled:
            return
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                for buffer in (module.running_mean, module.running_var):
                    if buffer is None:
                        continue
                    moved = self._comm(buffer.detach().float())
                    dist.all_reduce(moved)
                    with torch.no_grad():
                        buffer.copy_((moved / self.world).to(buffer))

    def reseed(self, seed: int, epoch: int) -> None:
        """Ranks after 0 draw their own dropout masks and augmentations, from a seed that depends
        on the rank and epoch only, so a resumed run draws the same ones (rank 0 keeps the
        one-process random stream)."""
        if self.enabled and not self.main:
            torch.manual_seed((seed * 1_000_003 + self.rank * 10_007 + epoch) % 2**63)


SINGLE = Distributed()


def sync_batchnorm(model: nn.Module, ctx: Distributed, device: torch.device) -> nn.Module:
    """BatchNorm layers made SyncBatchNorm on CUDA in a distributed run, so batch statistics span
    the global batch as in one process; elsewhere ``model`` unchanged."""
    if ctx.enabled and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's chunk of every global batch.

    The order is torch's ``RandomSampler`` with the same generator; inside a DataLoader given that
    generator too (as ``make_loader`` does: the loader draws its base seed from it first), the
    batches are those of ``DataLoader(shuffle=True, generator=g)``, so ``world == 1`` is exactly
    the plain run. A
    padding example is ``-(i + 1)`` for example ``i`` (:class:`PaddedDataset` labels it IGNORE).

    Example:
        >>> [b for b in GlobalBatchSampler(5, 4, Distributed(rank=1, world=2), shuffle=False)]
        [[2, 3], [-5]]
    """

    def __init__(self, n: int, batch_size: int, ctx: Distributed, *, shuffle: bool = True,
                 generator: torch.Generator | None = None) -> None:
        self.n, self.batch_size, self.ctx = n, batch_size, ctx
        self.shuffle, self.generator = shuffle, generator

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def global_size(self, batch: int) -> int:
        """Real examples in global batch ``batch`` (0-based), over all ranks."""
        return min(self.batch_size, self.n - batch * self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(RandomSampler(range(self.n), generator=self.generator)) if self.shuffle else list(range(self.n))
        for start in range(0, self.n, self.batch_size):
            batch = order[start : start + self.batch_size]
            mine = [batch[i] for i in self.ctx.shard(len(batch))]
            yield mine or [-(batch[0] + 1)]


class PaddedDataset(Dataset):
    """A dataset where index ``-(i + 1)`` is example ``i`` labelled :data:`IGNORE`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if i >= 0:
            return self.dataset[i]
        x, _ = self.dataset[-i - 1]
        return x, IGNORE


def in_launched_worker() -> bool:
    """Whether this process is a worker of a multi-process launch (torchrun or ``--nproc``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[Distributed]:
    """The process group of this worker, or ``SINGLE`` outside a launch.

    The group is joined on first use and kept until the process exits: a second run in the same
    worker (``compare`` under torchrun, a script that trains twice) reuses it. Leaving and
    joining again would reuse the rendezvous store's keys of the first group and hang.
    """
    if not in_launched_worker():
        yield SINGLE
        return
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
        atexit.register(_leave)
    ctx = Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    if not ctx.main:  # one voice: rank 0 logs and draws progress; the others only their errors
        log.setLevel(logging.ERROR)
    yield ctx


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def report_run_dir(ctx: Distributed, run_dir: Path) -> None:
    """Rank 0 tells the launching process where the run folder is (for its failure message)."""
    folder = os.environ.get(REPORTS_ENV)
    if ctx.main and folder:
        Path(folder, "run_dir").write_text(str(run_dir), encoding="utf-8")


def threads_per_process(nproc: int) -> int:
    """CPU threads each of ``nproc`` local workers uses: the cores shared out (``OMP_NUM_THREADS``
    when set wins), so processes do not fight over cores."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // nproc)


def _worker(fn: Callable[..., Any], args: tuple[Any, ...], threads: int) -> Any:
    """A launched worker: run ``fn(*args)``. An error is written for the launching process and
    the worker exits quietly (status 2 for bad input, else 1): when one rank fails, the others
    fail next in a collective, and only the launcher knows which error came first; it prints
    that one (with its traceback when it is not bad input)."""
    torch.set_num_threads(threads)
    try:
        return fn(*args)
    except Exception as exc:
        _write_report(exc)
        sys.exit(2 if isinstance(exc, errors.TransferkitError) else 1)


def _write_report(exc: Exception) -> None:
    folder = os.environ.get(REPORTS_ENV)
    if not folder:
        return
    report = {"rank": int(os.environ.get("RANK", "0")), "type": type(exc).__name__,
              "message": " ".join(str(exc).split()), "time": time.time(),
              "bad_input": isinstance(exc, errors.TransferkitError),
              "traceback": "".join(traceback.format_exception(exc))}
    path = Path(folder, f"rank-{report['rank']}.json")
    path.with_suffix(".tmp").write_text(json.dumps(report), encoding="utf-8")
    os.replace(path.with_suffix(".tmp"), path)


def launch(fn: Callable[..., Any], args: tuple[Any, ...], nproc: int) -> Any:
    """Run ``fn(*args)`` in ``nproc`` local worker processes started by torch's elastic launcher
    (what ``torchrun --standalone --nproc-per-node N`` does: a rendezvous on a free port); return
    rank 0's result.

    A worker that raises or dies ends the run: the launcher stops the others at once, and this
    raises the first failing rank's error (the same error type for bad input), naming the run
    folder to resume.

    Example:
        >>> launch(train_in_worker, (config,), nproc=2)  # doctest: +SKIP
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    reports = Path(tempfile.mkdtemp(prefix="transferkit-workers-"))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.1, start_method="spawn")
    old = os.environ.get(REPORTS_ENV)
    os.environ[REPORTS_ENV] = str(reports)  # the spawned workers inherit it
    try:
        with _quiet_launcher():
            results = elastic_launch(config, _worker)(fn, args, threads_per_process(nproc))
    except ChildFailedError as exc:
        raise _failure(exc, reports, nproc) from None
    except SignalException as exc:  # Ctrl-C or a stop: the launcher has ended the workers
        raise KeyboardInterrupt(f"stopped by {signal.Signals(exc.sigval).name}") from None
    finally:
        if old is None:
            os.environ.pop(REPORTS_ENV, None)
        else:
            os.environ[REPORTS_ENV] = old
        shutil.rmtree(reports, ignore_errors=True)
    return results[0]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


@contextlib.contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The elastic agent's own log lines (rendezvous, 'failed (exitcode: 2)', a failure table)
    stay quiet: :func:`launch` reports a failure once, in one paragraph."""
    loggers = [logging.getLogger(name) for name in ("torch.distributed.elastic", "torch.multiprocessing")]
    old = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, old):
            logger.setLevel(level)


def _failure(exc: Any, reports: Path, nproc: int) -> errors.TransferkitError:
    """The error to raise for a failed launch: the first failing rank's, as that rank raised it."""
    found = []
    for path in reports.glob("rank-*.json"):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text(encoding="utf-8")))
    run_dir = _read(reports / "run_dir")
    killed = {rank: f for rank, f in exc.failures.items() if f.exitcode < 0 and -f.exitcode != signal.SIGTERM}
    resume = (f" The run folder {run_dir} keeps every finished epoch: continue with `transferkit train "
              f"--resume {run_dir} --nproc {nproc}`." if run_dir else "")
    if killed:  # a signal from outside (out of memory, kill -9) is the cause, not what followed
        rank, failure = min(killed.items())
        name = signal.Signals(-failure.exitcode).name
        error: errors.TransferkitError = WorkerFailedError(
            f"Worker process {rank} of {nproc} died ({name}), so the distributed run was stopped; the "
            f"other workers were ended too.{resume} If the system ran out of memory, use fewer "
            "processes (--nproc) or a smaller --batch-size.")
    elif found:
        first = min(found, key=lambda r: r["time"])
        kind = getattr(errors, first["type"], None)
        if first["bad_input"] and isinstance(kind, type) and issubclass(kind, errors.TransferkitError):
            error = kind(first["message"])
        else:
            sys.stderr.write(f"[worker {first['rank']}] {first['traceback']}")
            error = WorkerFailedError(
                f"Worker process {first['rank']} of {nproc} failed with {first['type']}: {first['message']} "
                f"(its traceback is above); the other workers were stopped.{resume}")
    else:
        rank, failure = min(exc.failures.items())
        error = WorkerFailedError(f"Worker process {rank} of {nproc} exited with status {failure.exitcode}; "
                                  f"the distributed run was stopped.{resume}")
    _mark_failed(run_dir, error)
    return error


def _mark_failed(run_dir: str | None, error: Exception) -> None:
    """``failure.json`` in the run folder says the first failure (rank 0 may have written the
    one that followed, a lost connection to the dead worker)."""
    if not run_dir:
        return
    path = Path(run_dir) / rf.FAILURE
    if Path(run_dir).is_dir():
        with contextlib.suppress(OSError):
            atomic_write_json(path, {"error": str(error), "type": type(error).__name__})
