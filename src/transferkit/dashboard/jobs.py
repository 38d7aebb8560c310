"""The job queue: runs started from the dashboard are real ``transferkit`` subprocesses.

A job is ``python -m transferkit -q <command> <options> --out <new folder in the first
root>``, so it trains exactly as the command line would, or ``... export|latency <run folder>
<options>`` (the Export page), one at a time per run: the dashboard writes into a run only
through a job, and an export waits for the slot a training job holds (a latency measured beside
a training job would measure the contention). Before a job is queued its options go through the command's own ``--check`` (the
same parsing and checks as the real command, in a subprocess of a few seconds): bad input gets
the CLI's one-paragraph error and starts nothing. At most ``max_running`` jobs run at once (the
rest wait, ``queued``); a running job is cancelled with SIGINT, like Ctrl-C, so its folder stays
resumable, then SIGTERM and SIGKILL if it does not stop.

Example:
    >>> queue = JobQueue([Path("runs")])  # doctest: +SKIP
    >>> job = queue.submit("train", {"model": "builtin:minilm", "data": "news.csv", "epochs": 3})  # doctest: +SKIP
    >>> queue.cancel(job.id)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit import workflows

from .folders import NotInRoots, Roots

__all__ = [
    "COMMANDS",
    "INTO_RUN",
    "STATUSES",
    "Job",
    "JobError",
    "JobQueue",
    "check_with_cli",
    "cli_command",
    "job_queue_factory",
    "options_to_argv",
]

#: The commands a job may run: ``train`` (the Start-a-run page), ``efficiency`` and ``compare``
#: write a new folder; ``export`` and ``latency`` (the Export page) write into an existing run.
COMMANDS = ("train", "efficiency", "compare", "export", "latency")
#: Commands whose first argument is a run folder they write into (option ``run``), with no --out;
#: the page checks the run and format itself, so they have no ``--check``.
INTO_RUN = frozenset({"export", "latency"})
STATUSES = ("queued", "running", "finished", "failed", "cancelled")
#: Options the queue sets itself, or that would make the job something else than a new run.
RESERVED = frozenset({"out", "check", "config", "resume", "json", "debug", "quiet", "help", "version"})
OUTPUT_LINES = 50  # the tail of a job's output kept for the page
CHECK_SECONDS = 120.0  # a --check imports torch and looks at files: seconds, never minutes
INTERRUPT_GRACE = 10.0  # seconds a cancelled run gets to stop like Ctrl-C before SIGTERM
TERMINATE_GRACE = 5.0  # then before SIGKILL

CommandBuilder = Callable[[str, Sequence[str], Path], list[str]]
Checker = Callable[[str, Sequence[str]], "str | None"]


class JobError(ValueError):
    """A job that cannot be queued: the message is the one paragraph to show (no ``error:``)."""


def cli_command(command: str, argv: Sequence[str], out: Path | None) -> list[str]:
    """The subprocess of a job: this Python running the transferkit CLI (``out=None``: no --out)."""
    tail = ["--out", str(out)] if out is not None else []
    return [sys.executable, "-m", "transferkit", "-q", command, *argv, *tail]


def check_with_cli(command: str, argv: Sequence[str]) -> str | None:
    """Run ``transferkit <command> ... --check``: None when it prints ok, else its error paragraph
    (without the ``error:`` prefix), exactly as the command line shows it."""
    try:
        done = subprocess.run([*cli_command(command, argv, None), "--check"], capture_output=True, text=True,
                              timeout=CHECK_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"Checking the options of {command} took more than {CHECK_SECONDS:.0f} s; try again."
    if done.returncode == 0:
        return None
    return error_paragraph(done.stderr.splitlines()) or (
        f"transferkit {command} --check stopped with exit status {done.returncode}.")


def error_paragraph(lines: Sequence[str]) -> str | None:
    """The CLI's one-paragraph error among output lines (the last ``error: ...``), unprefixed."""
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):].strip()
    return None


def options_to_argv(options: dict[str, Any]) -> list[str]:
    """Form values -> CLI options, by one rule: field ``per_class`` is ``--per-class``; True and
    False are ``--x`` and ``--no-x``; lists are comma-joined; None and "" are left out. Values go
    as ``--x=value`` so a value that starts with ``-`` is never read as an option.

    Example:
        >>> options_to_argv({"per_class": 20, "augment": False, "group_lrs": [1e-5, 1e-3]})
        ['--per-class=20', '--no-augment', '--group-lrs=1e-05,0.001']
    """
    argv = []
    for name, value in options.items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise JobError(f"Option name {name!r} is not an option of transferkit; use the names of "
                           "`transferkit train --help` (per_class or per-class).")
        flag = name.strip().replace("_", "-")
        if flag.replace("-", "_") in RESERVED:
            raise JobError(f"Option {name!r} cannot be given here: the dashboard writes every run into a "
                           "new folder of its own under the first --runs folder.")
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        elif isinstance(value, (list, tuple)):
            argv.append(f"--{flag}={','.join(str(v) for v in value)}")
        elif isinstance(value, (str, int, float)):
            argv.append(f"--{flag}={value}")
        else:
            raise JobError(f"Option {name!r}: give a number, text, true/false or a list, got {value!r}.")
    return argv


@dataclass
class Job:
    """One queued, running or ended subprocess and what the page shows of it."""

    id: str
    command: str
    argv: list[str]
    out: Path
    status: str = "queued"
    returncode: int | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=OUTPUT_LINES))
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    cancelling: bool = False
    watcher: threading.Thread | None = field(default=None, repr=False)  # records how the job ended

    @property
    def error(self) -> str | None:
        """A failed job's one paragraph, as the command line printed it."""
        return error_paragraph(list(self.output)) if self.status == "failed" else None

    def folder_id(self, roots: Roots) -> str | None:
        """The id of the job's folder once its page can show it (a run: once it holds its
        config and its running lock; a study: once it has its first results)."""
        try:
            return roots.id_of(self.out) if workflows.summarize_folder(self.out) is not None else None
        except (NotInRoots, OSError):
            return None

    def to_dict(self, roots: Roots) -> dict[str, Any]:
        folder_id = self.folder_id(roots)
        return {"id": self.id, "command": self.command, "argv": list(self.argv), "out": str(self.out),
                "folder_id": folder_id, "status": self.status, "returncode": self.returncode,
                "submitted": self.submitted, "started": self.started, "ended": self.ended,
                "output": list(self.output), "error": self.error}


class JobQueue:
    """Runs jobs as subprocesses, at most ``max_running`` at once, in the order submitted.

    Args:
        roots: the dashboard's roots; jobs write into new folders in the first.
        max_running: jobs that may run at once (``transferkit dashboard --jobs N``).
        build: the subprocess of a job (tests give a short Python command).
        check: validates a job's options before it is queued (None: no check).
    """

    def __init__(self, roots: Sequence[str | Path], max_running: int = 1, *,
                 build: CommandBuilder = cli_command, check: Checker | None = check_with_cli) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running}")
        self.roots = Roots.of(list(roots))
        self.max_running, self.build, self.check = max_running, build, check
        self.jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self._count = 0
        self._closed = False

    # -- submitting -------------------------------------------------------------------------------
    def submit(self, command: str, options: dict[str, Any]) -> Job:
        """Check ``options`` with the command's own ``--check`` and queue the job.

        Raises:
            JobError: an unknown command, a reserved or malformed option, or the CLI's error
                paragraph for bad input; nothing is queued and no folder is made.
        """
        if command not in COMMANDS:
            raise JobError(f"Unknown command {command!r}; the dashboard runs {', '.join(COMMANDS)}.")
        if not isinstance(options, dict):
            raise JobError("options: give an object of option names and values, e.g. {\"model\": ...}.")
        if command in INTO_RUN:
            out, argv = self._run_folder(options), options_to_argv({k: v for k, v in options.items() if k != "run"})
            argv = [str(out), *argv]
        else:
            out, argv = None, options_to_argv(options)
            if self.check is not None and (problem := self.check(command, argv)) is not None:
                raise JobError(problem)
        with self._lock:
            if self._closed:
                raise JobError("The dashboard is stopping; no new runs are started.")
            if out is not None and any(j.out == out and j.status in ("queued", "running") for j in self.jobs.values()):
                raise JobError(f"An export or measurement of {out.name} is already queued or running; wait for "
                               "it to end.")
            self._count += 1
            job = Job(str(self._count), command, argv, out or self._new_folder(command, options))
            self.jobs[job.id] = job
            self._start_ready()
        return job

    def _run_folder(self, options: dict[str, Any]) -> Path:
        """The existing run folder (inside the roots) an export or measurement writes into."""
        try:
            if not options.get("run"):
                raise NotInRoots("")
            return self.roots.folder(self.roots.id_of(Path(str(options["run"])).resolve()))
        except NotInRoots:
            raise JobError("run: give a run folder inside the dashboard's --runs folders.") from None

    def _new_folder(self, command: str, options: dict[str, Any]) -> Path:
        """``<first root>/<the CLI's default folder name>``, unused by any folder or job (the job's
        command creates it; a name taken gets -2, -3, ...)."""
        model = str(options.get("model") or "model")
        strategy = str(options.get("strategy") or "feature-extraction") if command == "train" else None
        name = workflows.default_folder(model, kind=None if command == "train" else command, strategy=strategy).name
        taken = {job.out for job in self.jobs.values()}
        path, n = self.roots.jobs_root / name, 1
        while path in taken or path.exists():
            n += 1
            path = self.roots.jobs_root / f"{name}-{n}"
        return path

    # -- running ----------------------------------------------------------------------------------
    def _start_ready(self) -> None:
        """Start queued jobs while fewer than ``max_running`` run (called under the lock)."""
        running = sum(1 for j in self.jobs.values() if j.status == "running")
        for job in self.jobs.values():
            if running >= self.max_running or self._closed:
                return
            if job.status == "queued":
                self._launch(job)
                running += job.status == "running"

    def _launch(self, job: Job) -> None:
        options: dict[str, Any] = {}
        if os.name == "nt":  # a process group of its own, so CTRL_BREAK reaches only the job
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:  # its own session: a Ctrl-C in the dashboard's terminal is the queue's to pass on
            options["start_new_session"] = True
        # output lines arrive while the job runs; SIGINT raises KeyboardInterrupt in the job even
        # when this process ignores it (see transferkit/__main__.py), so cancel stops it like Ctrl-C
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TRANSFERKIT_SIGINT": "interrupt"}
        if self.max_running > 1 and "OMP_NUM_THREADS" not in env:
            # jobs running side by side share the cores: torch's threads spin-wait, and N jobs each
            # using every core train many times slower than N jobs using a share each
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.max_running))
        try:
            out = None if job.command in INTO_RUN else job.out  # an export writes into its run: no --out
            job.process = subprocess.Popen(self.build(job.command, job.argv, out), stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           encoding="utf-8", errors="replace", env=env, **options)
        except OSError as exc:
            job.status, job.ended = "failed", time.time()
            job.output.append(f"error: Could not start the job ({exc}).")
            return
        job.status, job.started = "running", time.time()
        job.watcher = threading.Thread(target=self._watch, args=(job,), daemon=True, name=f"job-{job.id}")
        job.watcher.start()

    def _watch(self, job: Job) -> None:
        """Collect the job's output until it exits, record how it ended, start the next job."""
        process = job.process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            with self._lock:  # list() copies the deque under the same lock
                job.output.append(line.rstrip("\n"))
        code = process.wait()
        with self._lock:
            job.returncode, job.ended = code, time.time()
            job.status = "cancelled" if job.cancelling else "finished" if code == 0 else "failed"
            self._start_ready()

    # -- cancelling -------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> Job:
        """Drop a queued job, or interrupt a running one (SIGINT, then SIGTERM and SIGKILL after
        grace periods, in a thread); an ended job is left as it is.

        Raises:
            KeyError: no job has that id.
        """
        with self._lock:
            job = self.jobs[job_id]
            if job.status == "queued":
                job.status, job.ended = "cancelled", time.time()
            elif job.status == "running" and not job.cancelling:
                job.cancelling = True
                threading.Thread(target=_stop, args=(job.process, INTERRUPT_GRACE, TERMINATE_GRACE),
                                 daemon=True, name=f"cancel-{job.id}").start()
        return job

    def shutdown(self, interrupt_grace: float = 5.0, terminate_grace: float = 2.0) -> None:
        """Cancel every job and wait for the running ones to stop (the server is stopping)."""
        with self._lock:
            self._closed = True
            running = []
            for job in self.jobs.values():
                if job.status == "queued":
                    job.status, job.ended = "cancelled", time.time()
                elif job.status == "running":
                    job.cancelling = True
                    running.append(job)
        for job in running:
            _stop(job.process, interrupt_grace, terminate_grace)
            # the process has ended; its watcher records how (status, return code) after reading
            # the last of its output, so wait for that too: callers read the status next
            if job.watcher is not None:
                job.watcher.join(timeout=terminate_grace + 5.0)

    def list(self) -> list[dict[str, Any]]:
        """Every job, newest first, as the page shows it."""
        with self._lock:
            jobs = list(self.jobs.values())
        return [job.to_dict(self.roots) for job in reversed(jobs)]


def _stop(process: subprocess.Popen[str] | None, interrupt_grace: float, terminate_grace: float) -> None:
    """Stop a job like Ctrl-C (its run stays resumable); escalate if it does not end."""
    if process is None or process.poll() is not None:
        return
    try:
        process.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)  # type: ignore[attr-defined]
        process.wait(interrupt_grace)
        return
    except subprocess.TimeoutExpired:
        pass
    except OSError:  # already gone
        return
    _signal_job(process, signal.SIGTERM)
    try:
        process.wait(terminate_grace)
    except subprocess.TimeoutExpired:
        _signal_job(process, signal.SIGKILL if os.name != "nt" else signal.SIGTERM)
        process.wait()


def _signal_job(process: subprocess.Popen[str], sig: int) -> None:
    """Signal a job and, on POSIX, every process of its session: a ``--nproc`` run's workers
    would otherwise outlive a launcher that did not get to stop them."""
    if os.name == "nt":
        process.terminate()
        return
    try:
        os.killpg(process.pid, sig)  # the job leads a session of its own (start_new_session)
    except OSError:
        process.send_signal(sig)


def job_queue_factory(jobs: int) -> Callable[[list[Path]], JobQueue]:
    """What ``start``/``serve`` call with the roots to make the dashboard's queue.

    Example:
        >>> make = job_queue_factory(2)
        >>> make([Path(".")]).max_running
        2
    """
    return lambda roots: JobQueue(roots, jobs)
