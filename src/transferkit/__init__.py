"""transferkit: adapt pre-trained models to small labelled datasets.

Example:
    >>> import transferkit as tk
    >>> result = tk.train(tk.TrainConfig(model="builtin:efficientnet_lite0", data="builtin:mnist"))  # doctest: +SKIP
    >>> tk.predict(result.run_dir, ["digit.png"])[0]["label"]  # doctest: +SKIP
    '7'
"""

from . import workflows
from ._version import __version__
from .config import DataOptions, TrainConfig
from .errors import (
    BackendUnavailableError,
    ConfigError,
    DataError,
    ExportError,
    FileAccessError,
    ModelLoadError,
    RunFolderError,
    TrainingDivergedError,
    TransferkitError,
    UnknownModelError,
    UnreadableImagesError,
    UnsupportedModelError,
    WeightsMismatchError,
    WeightsUnavailableError,
    file_access_error,
)
from .export import DEFAULT_FORMAT as DEFAULT_EXPORT_FORMAT
from .export import EXPORT_FORMATS, ExportedModel, ExportResult, export_run, load_exported
from .export import LatencyReport, exported_files, measure_latency, read_latency
from .inference import TABLE_SUFFIXES, Run, evaluate, load_run, predict, table_inputs
from .io.records import EpochRecord, Phase, TestMetrics
from .lora import (
    LoraSettings,
    apply_lora,
    has_lora,
    load_adapter,
    lora_savings,
    merge_lora,
    remove_lora,
    resolve_targets,
    save_adapter,
    unmerge_lora,
)
from .models import ModelSpec, TransferModel, list_models, load_model
from .strategies import Strategy, get_strategy, register_strategy, strategy_class, strategy_names
from .train import RunResult, check_config, resume, train
from .workflows import CompareResult, Recommendation, compare, recommend

__all__ = [
    "TrainConfig", "DataOptions", "train", "check_config", "resume", "RunResult", "evaluate", "predict", "table_inputs", "TABLE_SUFFIXES", "load_run", "Run",
    "Strategy", "register_strategy", "strategy_names", "strategy_class", "get_strategy", "EpochRecord", "TestMetrics", "Phase",
    "workflows", "EXPORT_FORMATS", "DEFAULT_EXPORT_FORMAT",
    "load_model", "list_models", "ModelSpec", "TransferModel",
    "compare", "CompareResult", "recommend", "Recommendation",
    "apply_lora", "merge_lora", "unmerge_lora", "remove_lora", "has_lora", "save_adapter", "load_adapter",
    "lora_savings", "resolve_targets", "LoraSettings",
    "export_run", "ExportResult", "load_exported", "ExportedModel", "ExportError", "BackendUnavailableError",
    "measure_latency", "read_latency", "LatencyReport", "exported_files",
    "TransferkitError", "ConfigError", "DataError", "RunFolderError", "UnknownModelError",
    "UnsupportedModelError", "WeightsMismatchError", "ModelLoadError", "WeightsUnavailableError", "__version__",
    "FileAccessError", "TrainingDivergedError", "file_access_error", "UnreadableImagesError",
]
