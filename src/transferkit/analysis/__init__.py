"""Evidence and explorers: sample efficiency, freezing and LoRA explorers, layer transferability,
training-progress plots and the self-contained HTML report.

Each analysis is a function that writes a JSON file and a PNG plot into a folder (atomically),
and :func:`write_report` turns a run, comparison or sample-efficiency folder into one HTML file.

Example:
    >>> from transferkit import analysis
    >>> r = analysis.sample_efficiency("builtin:efficientnet_lite0", "builtin:mnist",
    ...                                per_class="10,30,100,300", seeds=2)  # doctest: +SKIP
    >>> analysis.write_report(r.out_dir)  # doctest: +SKIP
    PosixPath('runs/efficiency-efficientnet_lite0-20261127-120000/report.html')
"""

from .efficiency import METHODS, EfficiencyResult, sample_efficiency
from .freezing import FreezingResult, explore_freezing, freezing_counts
from .lora_explorer import LoraExplorerResult, explore_lora
from .multiplier import data_multipliers, scratch_needed
from .progress import plot_run
from .report import write_report
from .transferability import TransferabilityResult, layer_transferability

__all__ = [
    "sample_efficiency", "EfficiencyResult", "METHODS", "data_multipliers", "scratch_needed",
    "explore_freezing", "freezing_counts", "FreezingResult", "explore_lora", "LoraExplorerResult",
    "layer_transferability", "TransferabilityResult", "plot_run", "write_report",
]
