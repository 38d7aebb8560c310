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

from .core import DEFAULT_FILES, QUANTIZATIONS, ExportResult, export_run
from .predictor import ExportedModel, load_exported
from .sidecar import FORMATS, is_exported, read_sidecar, sidecar_path, tokenizer_dir
from .tensorrt import tensorrt_missing
from .verify import DEFAULT_TOLERANCE, Verification

__all__ = [
    "export_run", "ExportResult", "Verification", "load_exported", "ExportedModel", "is_exported",
    "read_sidecar", "sidecar_path", "tokenizer_dir", "tensorrt_missing", "FORMATS", "QUANTIZATIONS",
    "DEFAULT_FILES", "DEFAULT_TOLERANCE",
]
