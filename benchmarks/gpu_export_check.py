"""GPU checks for export (issue 5), in one short process: each step prints PASS / FAIL / SKIP.

1. a tiny run trained on CUDA exports to ONNX and TorchScript and verifies (export runs on the CPU);
2. the TorchScript file predicts on CUDA with the same top-k as the run folder;
3. ``--backend onnxruntime`` with ``--device cuda`` trains (ONNX Runtime's CUDA provider if
   installed, else its CPU one) to the accuracy of ``--backend torch``;
4. TensorRT (torch-tensorrt + CUDA): the tiny image run, a tiny text run and EfficientNet-Lite0
   export with ``--format tensorrt``, verify against eager (fp32, TF32 off), predict from the
   ``.ts`` file like the run folder, and Lite0 latency eager vs TensorRT at batch 1 and 32;
   without torch-tensorrt: the "not available" message and exit status 2.

Run from the repository root: bash benchmarks/gpu_export_check.sh (see there).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

RESULTS: list[tuple[str, str, str]] = []


def step(name: str, fn: Callable[[], str | None]) -> None:
    start = time.perf_counter()
    try:
        note = fn() or ""
        status = "SKIP" if note.startswith("skip") else "PASS"
    except Exception as exc:  # report and go on: one failure must not hide the other checks
        status, note = "FAIL", f"{type(exc).__name__}: {str(exc)[:400]}"
        traceback.print_exc(limit=3)
    RESULTS.append((status, name, note))
    print(f"[{status}] {name} ({time.perf_counter() - start:.1f} s) {note}", flush=True)


def cli(*args: Any) -> int:
    from transferkit.cli import main

    return main([str(a) for a in args])


def same_top_k(a: list[dict], b: list[dict]) -> float:
    """Largest score difference; raises when any top-k label order differs."""
    worst = 0.0
    for x, y in zip(a, b):
        if [t["label"] for t in x["top_k"]] != [t["label"] for t in y["top_k"]]:
            raise AssertionError(f"top-k differs for {x['input']}: {x['top_k']} vs {y['top_k']}")
        worst = max(worst, max(abs(s["score"] - t["score"]) for s, t in zip(x["top_k"], y["top_k"])))
    return worst


def main() -> None:
    import transferkit as tk
    from conftest import write_digit_folder, write_sentiment_csv
    from helpers.tiny import tiny_bert_folder
    from transferkit.export import tensorrt_missing

    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="gpu-export-"))
    digits = write_digit_folder(root / "digits", per_class=10)
    images = [str(p) for c in ("0", "1", "2") for p in sorted((digits / c).glob("*.png"))[:2]]
    csv = write_sentiment_csv(root / "reviews.csv")
    bert = tiny_bert_folder(root / "bert")
    texts = ["good great film", "bad terrible movie", "a"]
    img_run, txt_run, lite0_run = root / "img", root / "txt", root / "lite0"

    def train_and_export() -> str:
        assert cli("-q", "train", "--model", "timm:test_efficientnet", "--no-pretrained", "--data", digits,
                   "--out", img_run, "--epochs", "2", "--strategy", "full", "--device", "cuda") == 0
        assert cli("-q", "train", "--model", f"hf:{bert}", "--data", csv, "--out", txt_run, "--epochs", "2",
                   "--device", "cuda") == 0
        notes = []
        for run in (img_run, txt_run):
            for fmt in ("onnx", "torchscript"):
                result = tk.export_run(run, fmt)
                notes.append(f"{run.name}/{fmt} diff {result.verification.max_abs_diff:.1e}")
        return "; ".join(notes)

    def torchscript_on_cuda() -> str:
        exported = tk.load_exported(img_run / "export" / "model.pt", device="cuda")
        return f"max score diff {same_top_k(exported.predict(images), tk.predict(img_run, images)):.1e}"

    def onnxruntime_backend_on_cuda() -> str:
        import onnxruntime as ort

        acc = {}
        for backend in ("torch", "onnxruntime"):
            out = root / f"backend-{backend}"
            assert cli("-q", "train", "--model", "timm:test_efficientnet", "--no-pretrained", "--data", digits,
                       "--out", out, "--epochs", "5", "--device", "cuda", "--backend", backend) == 0
            acc[backend] = json.loads((out / "test_metrics.json").read_text())["accuracy"]
        assert acc["torch"] == acc["onnxruntime"], acc
        return f"accuracy {acc}; ORT providers {ort.get_available_providers()}"

    step("CUDA-trained runs export to ONNX and TorchScript, verified", train_and_export)
    step("TorchScript file predicts on CUDA like the run folder", torchscript_on_cuda)
    step("--backend onnxruntime with --device cuda: same accuracy as torch", onnxruntime_backend_on_cuda)

    missing = tensorrt_missing()
    if missing:
        def unavailable() -> str:
            code = cli("export", img_run, "--format", "tensorrt")
            assert code == 2, code
            return f"skip TensorRT ({missing}); the CLI said so with exit status 2"

        step("TensorRT", unavailable)
    else:
        tensorrt_checks(tk, img_run, txt_run, lite0_run, digits, images, texts)
    print("\nSUMMARY")
    for status, name, note in RESULTS:
        print(f"  [{status}] {name}: {note}")


def tensorrt_checks(tk: Any, img_run: Path, txt_run: Path, lite0_run: Path, digits: Path,
                    images: list[str], texts: list[str]) -> None:
    import torch_tensorrt

    print(f"torch_tensorrt {torch_tensorrt.__version__}", flush=True)

    def export_and_predict(run: Path, inputs: list[str]) -> str:
        result = tk.export_run(run, "tensorrt", force=True)
        exported = tk.load_exported(result.path)
        worst = same_top_k(exported.predict(inputs), tk.predict(run, inputs))
        return f"{result.verification.summary()}; predict max score diff {worst:.1e}; {result.seconds:.0f} s"

    step("TensorRT: tiny image run", lambda: export_and_predict(img_run, images))
    step("TensorRT: tiny text run (dynamic batch and length)", lambda: export_and_predict(txt_run, texts))

    def lite0() -> str:
        assert cli("-q", "train", "--model", "builtin:efficientnet_lite0", "--data", digits, "--out", lite0_run,
                   "--device", "cuda") == 0
        note = export_and_predict(lite0_run, images)
        return note + "; " + lite0_latency(tk, lite0_run)

    step("TensorRT: EfficientNet-Lite0 (+ latency vs eager CUDA)", lite0)


def lite0_latency(tk: Any, run_dir: Path) -> str:
    run = tk.load_run(run_dir, "cuda")
    trt = tk.load_exported(run_dir / "export" / "model.trt.ts")._runner

    def ms(fn: Callable[[], Any]) -> float:
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(30):
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    notes = []
    with torch.inference_mode():
        for batch in (1, 32):
            x = torch.randn(batch, 3, 224, 224, device="cuda")
            eager = ms(lambda: run.model(x))
            compiled = ms(lambda: trt(x))
            notes.append(f"batch {batch}: eager {eager:.2f} ms, TensorRT {compiled:.2f} ms ({eager / compiled:.1f}x)")
    return "; ".join(notes)


if __name__ == "__main__":
    main()
