"""Training throughput: transferkit's fine-tuning epoch against a minimal hand-written PyTorch loop.

For each case, in one process, on the same model weights and the same pre-collated batches (so
only the training step and the loop around it are timed, not decoding or tokenizing):

- ``hand fp32``: the minimal loop: forward, cross-entropy, backward, gradient clipping at 1.0,
  AdamW step, over a list of batches. The recipe transferkit's ``full`` strategy runs (AdamW with
  a group per layer group, clipping at 1.0), without anything else.
- ``transferkit fp32``: ``train.loop.fit`` for one epoch (the strategy's parameter groups,
  warmup + cosine, the per-step loss check, metrics, progress) with no validation batches.
- ``transferkit bf16``: the same with ``--precision bf16`` (autocast; native on CPUs with AVX-512
  BF16 or AMX, such as this project's AMD EPYC). The output says what ``--precision auto`` picks.

Each measurement is one epoch of ``--steps`` steps; the three run in rotating order for
``--repeats`` rounds, so load from other processes hits all alike, and the medians are reported
with the ratios transferkit/hand (target <= 1.05) and fp32/bf16 (targets: MiniLM >= 1.3x,
EfficientNet-Lite0 >= 1.1x).

Cases (CPU): ``builtin:efficientnet_lite0`` at 224 px, batch 16 (channels-last, as transferkit
runs it); ``builtin:minilm`` at 128 tokens, batch 16.

``--accuracy`` also trains each model with ``transferkit train --strategy full`` in fp32 and in
bf16 on a built-in dataset (Lite0: digits; MiniLM: bbc-news; 20 per class) and
prints the test accuracies (target: within 0.5 points).

Run: .venv/bin/python benchmarks/throughput.py [--cases lite0,minilm] [--steps 6] [--repeats 5] [--accuracy]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

import transferkit as tk
from transferkit.config import TrainConfig
from transferkit.models import load_model
from transferkit.strategies import get_strategy
from transferkit.train.device import (
    autocast,
    move_to,
    prepare_model_layout,
    resolve_precision,
)
from transferkit.train.loop import LoopSettings, fit

CPU = torch.device("cpu")
RESULTS = Path(__file__).resolve().parent / "results"
CASES = {"lite0": ("builtin:efficientnet_lite0", "builtin:digits"), "minilm": ("builtin:minilm", "builtin:bbc-news")}


def batches_for(case: str, model: Any, steps: int, batch: int) -> list[tuple[Any, torch.Tensor]]:
    """``steps`` batches of random-but-fixed inputs in the model's own input format."""
    g = torch.Generator().manual_seed(0)
    labels = [torch.randint(0, 5, (batch,), generator=g) for _ in range(steps)]
    if model.spec.modality == "image":
        size = model.spec.image.crop_size
        return [(move_to(torch.randn(batch, 3, size, size, generator=g), CPU), y) for y in labels]
    vocab = model.tokenizer().vocab_size
    inputs = [{"input_ids": torch.randint(1000, vocab, (batch, 128), generator=g),
               "attention_mask": torch.ones(batch, 128, dtype=torch.long)} for _ in labels]
    return list(zip(inputs, labels))


def setup(case: str) -> tuple[Any, Any]:
    spec, _ = CASES[case]
    model = load_model(spec, num_classes=5)
    prepare_model_layout(model, model.spec.modality)
    strategy = get_strategy("full", TrainConfig(model=spec, data="-", strategy="full").resolved(model.spec.modality))
    return model, strategy


def hand_epoch(model: Any, strategy: Any, batches: list, precision: str) -> None:
    """The minimal loop: nothing but the arithmetic every fine-tuning loop does."""
    strategy.prepare(model)
    model.train()
    strategy.on_epoch_start(model, 1)
    optimizer = torch.optim.AdamW(strategy.param_groups(model), weight_decay=0.01)
    for inputs, targets in batches:
        with autocast(CPU, precision):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
        optimizer.step()


def transferkit_epoch(model: Any, strategy: Any, batches: list, precision: str) -> None:
    strategy.prepare(model)
    settings = LoopSettings(epochs=1, weight_decay=0.01, grad_clip=1.0, patience=10, precision=precision)
    fit(model, batches, [], strategy.param_groups(model), settings, phase="fine-tune",
        on_epoch_start=strategy.on_epoch_start)


def time_cases(case: str, steps: int, repeats: int, batch: int) -> dict[str, Any]:
    template, strategy = setup(case)
    batches = batches_for(case, template, steps, batch)
    auto = resolve_precision("auto", CPU, template)  # what --precision auto picks for this model
    runners: dict[str, tuple[Callable[..., None], str]] = {
        "hand fp32": (hand_epoch, "fp32"), "transferkit fp32": (transferkit_epoch, "fp32"),
        "transferkit bf16": (transferkit_epoch, "bf16")}
    for run, precision in runners.values():  # warm-up: allocator, oneDNN primitives
        run(copy.deepcopy(template), strategy, batches, precision)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            run, precision = runners[name]
            model = copy.deepcopy(template)  # a fresh copy, made before the clock starts
            start = time.perf_counter()
            run(model, strategy, batches, precision)
            seconds[name].append((time.perf_counter() - start) / steps)
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    return {"case": case, "model": CASES[case][0], "batch": batch, "steps": steps, "auto_precision": auto,
            "seconds_per_step": seconds, "median": medians,
            "transferkit_over_hand": medians["transferkit fp32"] / medians["hand fp32"],
            "fp32_over_bf16": medians["transferkit fp32"] / medians["transferkit bf16"]}


def accuracy(case: str, per_class: int) -> dict[str, float]:
    spec, data = CASES[case]
    scores = {}
    for precision in ("fp32", "bf16"):
        result = tk.train(TrainConfig(model=spec, data=data, strategy="full", per_class=per_class,
                                      precision=precision, out=f"/tmp/throughput-{case}-{precision}-{os.getpid()}"),
                          progress=False)
        scores[precision] = result.test_metrics["accuracy"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="lite0,minilm")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--per-class", type=int, default=20)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load:.2f}")
    report: dict[str, Any] = {"load_average_start": load, "date": time.strftime("%Y-%m-%d %H:%M"), "cases": []}
    for case in args.cases.split(","):
        row = time_cases(case, args.steps, args.repeats, args.batch)
        if args.accuracy:
            row["accuracy"] = accuracy(case, args.per_class)
        report["cases"].append(row)
        med = row["median"]
        print(f"{row['model']} batch {args.batch}: hand fp32 {med['hand fp32']:.3f} s/step, transferkit fp32 "
              f"{med['transferkit fp32']:.3f} ({row['transferkit_over_hand']:.3f}x the hand loop), transferkit "
              f"bf16 {med['transferkit bf16']:.3f} (fp32/bf16 {row['fp32_over_bf16']:.2f}x); --precision auto "
              f"picks {row['auto_precision']} for this model")
        if args.accuracy:
            print(f"  test accuracy, full, {args.per_class}/class on {CASES[case][1]}: {row['accuracy']}")
    report["load_average_end"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throughput-cpu.json").write_text(json.dumps(report, indent=1))
    print(f"load average at the end {report['load_average_end']:.2f}; written {RESULTS / 'throughput-cpu.json'}")


if __name__ == "__main__":
    main()
