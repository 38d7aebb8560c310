"""Export and deployment: ONNX (verified in ONNX Runtime), TorchScript, TensorRT.

``export_run`` turns a run folder into one file plus a JSON sidecar (preprocessing, labels,
version, verification) that a consumer can use without transferkit; ``load_exported`` predicts
from such a file with the same output as :func:`transferkit.predict` on the run folder.

Example:
    >>> from transferkit.export import export_run, load_exported
    >>> result = export_run("runs/my-run", "onnx")  # doctest: +SKIP
    >>> load_exported(result.path).predict(["cat.jpg"], top_k=1)[0]["label"]  # doctest: +SKIP
    'cat'
"""

# Each module registers its format in EXPORT_FORMATS, in this order (the order `--help` lists
# them); features registers the onnxruntime feature backend.
# isort: off
from . import onnx  # noqa: F401
from . import torchscript  # noqa: F401
from . import tensorrt  # noqa: F401
from . import features  # noqa: F401
# isort: on
from .core import QUANTIZATIONS, ExportResult, export_run
from .formats import DEFAULT_FORMAT, EXPORT_DIR, EXPORT_FORMATS, ExportFormat
from .latency import LATENCY_JSON, LatencyReport, LatencyRow, exported_files, measure_latency, read_latency
from .predictor import ExportedModel, load_exported
from .sidecar import is_exported, read_sidecar, sidecar_path, tokenizer_dir
from .tensorrt import tensorrt_missing
from .verify import DEFAULT_TOLERANCE, Verification

__all__ = [
    "export_run", "ExportResult", "Verification", "load_exported", "ExportedModel", "is_exported",
    "read_sidecar", "sidecar_path", "tokenizer_dir", "tensorrt_missing", "EXPORT_FORMATS", "ExportFormat", "DEFAULT_FORMAT",
    "QUANTIZATIONS", "DEFAULT_TOLERANCE", "EXPORT_DIR", "measure_latency", "read_latency", "exported_files",
    "LatencyReport", "LatencyRow", "LATENCY_JSON",
]
