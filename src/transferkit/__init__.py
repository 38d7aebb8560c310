"""transferkit: adapt pre-trained models to small labelled datasets.

Example:
    >>> import transferkit as tk
    >>> result = tk.train(tk.TrainConfig(model="builtin:efficientnet_lite0", data="builtin:mnist"))  # doctest: +SKIP
    >>> tk.predict(result.run_dir, ["digit.png"])[0]["label"]  # doctest: +SKIP
    '7'
"""

from .api import Run, evaluate, load_run, predict
from .compare import CompareResult, compare
from .config import TrainConfig
from .errors import (
    BackendUnavailableError,
    ConfigError,
    DataError,
    ExportError,
    RunFolderError,
    TransferkitError,
    UnknownModelError,
    UnsupportedModelError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from .export import ExportedModel, ExportResult, export_run, load_exported
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
from .recommend import Recommendation, recommend
from .train import RunResult, resume, train

__version__ = "0.1.0"

__all__ = [
    "TrainConfig", "train", "resume", "RunResult", "evaluate", "predict", "load_run", "Run",
    "load_model", "list_models", "ModelSpec", "TransferModel",
    "compare", "CompareResult", "recommend", "Recommendation",
    "apply_lora", "merge_lora", "unmerge_lora", "remove_lora", "has_lora", "save_adapter", "load_adapter",
    "lora_savings", "resolve_targets", "LoraSettings",
    "export_run", "ExportResult", "load_exported", "ExportedModel", "ExportError", "BackendUnavailableError",
    "TransferkitError", "ConfigError", "DataError", "RunFolderError", "UnknownModelError",
    "UnsupportedModelError", "WeightsMismatchError", "WeightsUnavailableError", "__version__",
]
