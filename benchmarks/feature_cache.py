"""Feature extraction, 10 epochs, two ways on the same data in one process.

- transferkit: each split is encoded once by the frozen backbone; the head trains on the cached
  [N, F] features (``extract_features`` + ``fit_head_adamw``).
- peer: the usual loop, ``for x, y in loader: head(backbone(x))`` with the frozen backbone in eval
  mode, re-running the backbone on every batch of every epoch (and on validation every epoch).

Both train the same plain ``nn.Linear`` head (same initialisation, same batch order, AdamW with
the same warmup + cosine schedule, same clipping), so the accuracies must agree; the speed ratio
is what caching buys. transferkit's default head (standardised features) is reported too.

Run: .venv/bin/python benchmarks/feature_cache.py [--model builtin:efficientnet_lite0]
     [--data builtin:digits] [--per-class 20] [--epochs 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.data import load_data
from transferkit.models import load_model
from transferkit.train.device import move_to, prepare_model_layout, seed_everything
from transferkit.train.features import extract_features
from transferkit.train.head import fit_head_adamw
from transferkit.train.loaders import make_indexed_loader, make_loader
from transferkit.train.loop import LoopSettings
from transferkit.train.schedule import warmup_cosine

# Both sides run the backbone on batches of 8 (the fastest size for a CPU, so the plain loop is
# not slowed by a batch size the cached side avoids) and train the head on batches of 8.
LR, WEIGHT_DECAY, BATCH, EVAL_BATCH, WARMUP, CLIP = 1e-3, 1e-4, 8, 8, 0.05, 1.0


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def run_cached(model, data, epochs: int, seed: int, standardize: bool) -> tuple[float, float]:
    start = time.perf_counter()
    device = torch.device("cpu")
    cached = [
        extract_features(model, make_indexed_loader(model, split, batch_size=EVAL_BATCH), len(split), device)
        for split in (data.train, data.val, data.test)
    ]
    settings = LoopSettings(epochs=epochs, weight_decay=WEIGHT_DECAY, warmup_fraction=WARMUP,
                            grad_clip=CLIP, patience=epochs + 1)
    torch.manual_seed(seed)
    head, _ = fit_head_adamw(cached[0], cached[1], len(data.classes), settings, LR, BATCH,
                             seed_everything(seed), standardize=standardize)
    with torch.no_grad():
        acc = accuracy(head(cached[2].features), cached[2].labels)
    return time.perf_counter() - start, acc


@torch.no_grad()
def _eval_plain(model, head, loader) -> tuple[float, float]:
    head.eval()
    logits, labels = [], []
    for x, y in loader:
        logits.append(head(model.forward_features(move_to(x, torch.device("cpu")))))
        labels.append(y)
    head.train()
    logits_t, labels_t = torch.cat(logits), torch.cat(labels)
    return accuracy(logits_t, labels_t), F.cross_entropy(logits_t, labels_t).item()


def run_plain(model, data, epochs: int, seed: int) -> tuple[float, float]:
    start = time.perf_counter()
    model.eval()  # frozen backbone: eval mode, no gradients
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    train_loader = make_loader(model, data.train, batch_size=BATCH, train=True,
                               generator=seed_everything(seed))
    val_loader = make_loader(model, data.val, batch_size=EVAL_BATCH)
    test_loader = make_loader(model, data.test, batch_size=EVAL_BATCH)
    torch.manual_seed(seed)
    head = nn.Linear(model.spec.num_features, len(data.classes))
    optimizer = torch.optim.AdamW(head.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    total = epochs * len(train_loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total, int(WARMUP * total)))
    best = (-1.0, float("inf"), None)
    for _ in range(epochs):
        for x, y in train_loader:
            with torch.no_grad():
                feats = model.forward_features(move_to(x, torch.device("cpu")))  # channels-last too
            loss = F.cross_entropy(head(feats), y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), CLIP)
            optimizer.step()
            schedule.step()
        val_acc, val_loss = _eval_plain(model, head, val_loader)
        if val_acc > best[0] or (val_acc == best[0] and val_loss < best[1]):
            best = (val_acc, val_loss, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[2])
    test_acc, _ = _eval_plain(model, head, test_loader)
    return time.perf_counter() - start, test_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:efficientnet_lite0")
    parser.add_argument("--data", default="builtin:digits")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load_data(args.data, seed=args.seed, per_class=args.per_class)
    model = prepare_model_layout(load_model(args.model, num_classes=len(data.classes)), data.modality)
    print(f"model {args.model}, data {args.data}: {len(data.train)} train / {len(data.val)} val / "
          f"{len(data.test)} test, {args.epochs} epochs, {torch.get_num_threads()} threads")
    times: dict[str, list[float]] = {"cached": [], "plain": [], "cached-standardized": []}
    accs: dict[str, list[float]] = {k: [] for k in times}
    for repeat in range(args.repeats):
        for name, fn in (
            ("cached", lambda: run_cached(model, data, args.epochs, args.seed, standardize=False)),
            ("plain", lambda: run_plain(model, data, args.epochs, args.seed)),
            ("cached-standardized", lambda: run_cached(model, data, args.epochs, args.seed, True)),
        ):
            seconds, acc = fn()
            times[name].append(seconds)
            accs[name].append(acc)
            print(f"  repeat {repeat + 1} {name:>20}: {seconds:7.2f} s  test accuracy {acc:.4f}")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedian seconds: transferkit cached {med['cached']:.2f}, plain loop {med['plain']:.2f}")
    print(f"test accuracy: transferkit cached {accs['cached'][0]:.4f}, plain loop {accs['plain'][0]:.4f} "
          f"(difference {100 * abs(accs['cached'][0] - accs['plain'][0]):.2f} points); "
          f"transferkit default head (standardised) {accs['cached-standardized'][0]:.4f}")
    print(f"speed ratio (plain / cached): {med['plain'] / med['cached']:.1f}x")


if __name__ == "__main__":
    main()
