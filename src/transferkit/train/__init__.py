"""Training: the loop, the feature cache, the head solvers, the run folder."""

from .runner import RunResult, resume, train

__all__ = ["RunResult", "resume", "train"]
