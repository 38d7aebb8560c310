"""Training: the loop, the feature cache, the head solvers, the run folder."""

from .runner import RunResult, check_config, resume, train

__all__ = ["RunResult", "check_config", "resume", "train"]
