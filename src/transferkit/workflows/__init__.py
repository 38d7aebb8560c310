"""Workflows: what drives training several times or reads many runs.

``compare`` (every strategy on the same splits), ``recommend`` (measure, the rule table as the prior, then a measured race),
sample efficiency, the freezing and LoRA explorers, layer transferability, training-progress
plots and the self-contained HTML report. Each writes JSON and PNG files into a folder
(atomically), and :func:`write_report` turns a run, comparison or study folder into one HTML file.

Example:
    >>> from transferkit import workflows
    >>> r = workflows.sample_efficiency("builtin:efficientnet_lite0", "builtin:mnist",
    ...                                 per_class="10,30,100,300", seeds=2)  # doctest: +SKIP
    >>> workflows.write_report(r.out_dir)  # doctest: +SKIP
    PosixPath('runs/efficiency-efficientnet_lite0-20261127-120000/report.html')
"""

from ..io.runfolder import default_folder
from ._common import parse_int_list
from .catalog import (
    RESTORE_KINDS,
    STATUSES,
    FolderSummary,
    denoiser_run_details,
    find_folders,
    restore_comparison_details,
    summarize_folder,
)
from .compare import CompareResult, compare, pick_best
from .efficiency import DEFAULT_TIME_BUDGET, EFFICIENCY_JSON, EFFICIENCY_SUMMARY, METHODS, EfficiencyResult, sample_efficiency
from .freezing import FREEZING_JSON, FREEZING_NUM_CLASSES, FreezingResult, describe_freezing, explore_freezing, freezing_counts
from .lora_explorer import DEFAULT_NUM_CLASSES, LORA_JSON, LoraExplorerResult, explore_lora, lora_table
from .multiplier import data_multipliers, mean_curve, scratch_needed
from .progress import plot_run
from .race import BUDGET_FACTOR as RACE_BUDGET_FACTOR
from .race import RaceEntry, RaceResult
from .recommend import Recommendation, recommend
from .report import folder_kinds, write_report
from .report_run import run_records, run_test_metrics
from .transferability import TRANSFERABILITY_JSON, TransferabilityResult, layer_transferability

__all__ = [
    "compare", "CompareResult", "pick_best", "recommend", "Recommendation", "RaceResult", "RaceEntry",
    "RACE_BUDGET_FACTOR",
    "sample_efficiency", "EfficiencyResult", "METHODS", "DEFAULT_TIME_BUDGET", "data_multipliers",
    "scratch_needed", "explore_freezing", "freezing_counts", "FreezingResult", "describe_freezing", "explore_lora",
    "LoraExplorerResult", "lora_table", "DEFAULT_NUM_CLASSES", "layer_transferability", "TransferabilityResult", "plot_run", "write_report",
    "parse_int_list", "default_folder", "find_folders", "summarize_folder", "FolderSummary", "STATUSES", "folder_kinds",
    "run_records", "run_test_metrics",
    "mean_curve", "FREEZING_NUM_CLASSES", "LORA_JSON", "FREEZING_JSON", "TRANSFERABILITY_JSON", "EFFICIENCY_JSON",
    "EFFICIENCY_SUMMARY", "RESTORE_KINDS", "restore_comparison_details", "denoiser_run_details",
]
