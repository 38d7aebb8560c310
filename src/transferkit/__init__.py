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
    ConfigError,
    DataError,
    RunFolderError,
    TransferkitError,
    UnknownModelError,
    UnsupportedModelError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from .models import ModelSpec, TransferModel, list_models, load_model
from .recommend import Recommendation, recommend
from .train import RunResult, resume, train

__version__ = "0.1.0"

__all__ = [
    "TrainConfig", "train", "resume", "RunResult", "evaluate", "predict", "load_run", "Run",
    "load_model", "list_models", "ModelSpec", "TransferModel",
    "compare", "CompareResult", "recommend", "Recommendation",
    "TransferkitError", "ConfigError", "DataError", "RunFolderError", "UnknownModelError",
    "UnsupportedModelError", "WeightsMismatchError", "WeightsUnavailableError", "__version__",
]
