"""``recommend``: which adaptation strategy to use on this model and data, with what settings, and why.

The advice follows the classic transfer-learning table (how much data, how far the target is from
the pre-training domain), driven by measured inputs rather than guesses:

- examples per class in the training split (median over classes) and the number of classes, from
  the same ``load_data`` call, seed, fractions and ``per_class`` that training would use;
- model size (total parameters of the loaded model);
- **separability**: how well the frozen pre-trained features already separate the classes. A
  linear probe (L-BFGS logistic regression) is fitted on cached features of at most 20 training
  examples per class (400 in all) and scored on up to 200 validation examples;
  ``separability = (probe accuracy - 1/C) / (1 - 1/C)`` is 0 at chance and 1 when perfect. The
  probe sees few examples, so it measures the features, not what the full data could reach;
- compute: whether CUDA is available, and how much memory the GPU has.

Large models on limited compute or memory get LoRA when the features need to change: it trains
``r (d + k)`` parameters per adapted layer and keeps no gradients or optimizer state for the
frozen weights (full fine-tuning with AdamW holds about 16 bytes per parameter: weights,
gradients and two moments in float32).

The rules live in :func:`decide`, a pure function of those measurements, so every branch is
testable without a model. ``RULES`` is the same table in words (printed by ``--explain``).

The table is the prior. By default :func:`recommend` then measures: a race
(``workflows.race``) trains every strategy briefly on the user's data by successive halving,
the rule's choices first, and recommends what scored best on validation within the budget.
``race=False`` (``--no-race``) returns the rule's answer alone, in seconds.
"""

from __future__ import annotations

import dataclasses
import shlex
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple, Sequence

import torch

from ..config import DataOptions, TrainConfig
from ..data import as_data_options, load_data
from ..errors import ConfigError, DataError
from ..models import load_model
from ..strategies import strategy_names
from ..train.class_balance import imbalanced
from ..train.device import inference_batch_size, prepare_model_layout, resolve_device, seed_everything
from ..train.features import CachedFeatures, extract_features
from ..train.head import fit_head_lbfgs
from ..train.loaders import apply_image_size, make_indexed_loader
from .race import RaceResult, check_budget, check_out
from .race import race as run_race

__all__ = ["recommend", "Recommendation", "Decision", "decide", "race_order", "measure", "train_command", "RULES",
           "Rule", "Choice", "strategies_named"]

VERY_SMALL = 30  # examples per class below which only the head (or very little more) can be trained
LARGE = 300  # examples per class above which the whole network can be fine-tuned safely
SIMILAR = 0.7  # separability at or above which the pre-trained features already fit the task
LARGE_SHIFT = 0.4  # separability below which the features need to change a lot
LARGE_MODEL = 100_000_000  # parameters above which fine-tuning on a CPU is impractically slow
FULL_FT_BYTES = 16  # per parameter: float32 weight, gradient and AdamW's two moments
GPU_SHARE = 0.5  # full fine-tuning's fixed state may take this share of GPU memory; activations need the rest
PROBE_PER_CLASS, PROBE_MAX_TRAIN, PROBE_MAX_VAL = 20, 400, 200
PROBE_L2 = 1e-2  # one fixed strength: choosing it on the validation split would flatter the probe
FULL_LR = {"image": 1e-4, "text": 3e-5}  # text encoders forget faster; a lower rate keeps them intact


class Choice(NamedTuple):
    """A strategy a rule may recommend and its settings; ``full_lr`` adds full fine-tuning's rate
    for the modality (``FULL_LR``)."""

    strategy: str
    settings: Mapping[str, Any] = MappingProxyType({})
    full_lr: bool = False


class Rule(NamedTuple):
    """One row of the table: when it fires, what it advises in words, and its choices per case
    (most rules have one case, ``""``); the first registered choice of the case is recommended."""

    name: str
    when: str
    then: str
    choices: Mapping[str, tuple[Choice, ...]]


_FE_LBFGS = Choice("feature-extraction", {"head_solver": "lbfgs"})
_FE_ADAMW = Choice("feature-extraction", {"head_solver": "adamw"})

RULES: tuple[Rule, ...] = (
    Rule("large-model-cpu", f"> {LARGE_MODEL // 10**6} M parameters and no CUDA",
         "feature-extraction; lora, 3 epochs, if the features separate poorly and there is data "
         "(else lp-ft)",
         {"tiny": (_FE_LBFGS,), "similar": (_FE_ADAMW,),
          "shifted": (Choice("lora", {"epochs": 3}), Choice("lp-ft", {"epochs": 3}), _FE_ADAMW)}),
    Rule("large-model-gpu-memory", f"CUDA, but {FULL_FT_BYTES} bytes per parameter exceed "
         f"{GPU_SHARE:.0%} of the GPU's memory, >= {VERY_SMALL} examples per class and separability < {SIMILAR}",
         "lora, 10 epochs (else lp-ft)",
         {"": (Choice("lora", {"epochs": 10}), Choice("lp-ft", {"epochs": 10}), _FE_ADAMW)}),
    # LP-FT before the probe alone when the features already separate: on the defaults suite
    # (docs/defaults.md; 10 datasets, 2 seeds) LP-FT's mean matched or beat feature extraction's in
    # 18 of 20 cells at 5 and 20 per class and every cell at 100 (worst: -1.1 points, faces 5 per
    # class, one test image of 30), and it starts from that very probe, which it keeps when
    # fine-tuning does not help on validation. The probe alone stays the fallback.
    Rule("tiny-similar", f"< {VERY_SMALL} examples per class and separability >= {SIMILAR}",
         "lp-ft with its defaults (else feature-extraction with the L-BFGS head)",
         {"": (Choice("lp-ft"), _FE_LBFGS)}),
    Rule("tiny-shifted", f"< {VERY_SMALL} examples per class and separability < {SIMILAR}",
         "lp-ft with its defaults (else last-n with 1 group)",
         # LP-FT's own defaults, chosen on the defaults suite (docs/defaults.md); 5 epochs, the
         # table's earlier guess, was no better there (race picks, seed 0: -0.2 points on average
         # over six cells, -2.7 to +3.5) and made the race measure a run `compare` never trains.
         {"": (Choice("lp-ft"), Choice("last-n", {"last_n": 1, "epochs": 5}), _FE_LBFGS)}),
    Rule("large-or-shifted", f"> {LARGE} examples per class, or separability < {LARGE_SHIFT}",
         "full fine-tuning, lr 1e-4 (images) / 3e-5 (text) (else lp-ft)",
         {"": (Choice("full", {"epochs": 10}, full_lr=True), Choice("lp-ft", {"epochs": 10}, full_lr=True))}),
    Rule("medium-similar", f"{VERY_SMALL}-{LARGE} examples per class and separability >= {SIMILAR}",
         "lp-ft with its defaults (else feature-extraction with the L-BFGS head, last-n with 1 group)",
         {"": (Choice("lp-ft"), _FE_LBFGS, Choice("last-n", {"last_n": 1}))}),
    # With lr_decay, --lr is the head's rate: 5e-4 gives the head 5e-4, the top group 1.5e-4 and
    # the next 4.5e-5, close to full fine-tuning's 1e-3 head / 1e-4 body.
    Rule("medium-shifted", f"{VERY_SMALL}-{LARGE} examples per class and separability "
         f"{LARGE_SHIFT}-{SIMILAR}", "last-n with 2 groups and discriminative rates (lr_decay 0.3), "
         "else discriminative, else gradual unfreezing",
         {"": (Choice("last-n", {"last_n": 2, "lr_decay": 0.3, "lr": 5e-4, "epochs": 10}),
               Choice("discriminative", {"lr_decay": 0.3, "lr": 5e-4, "epochs": 10}),
               Choice("gradual", {"unfreeze_every": 2}), Choice("full", {"epochs": 10}, full_lr=True))}),
)
_RULES = {r.name: r for r in RULES}


def strategies_named() -> set[str]:
    """Every strategy some rule of ``RULES`` may recommend."""
    return {c.strategy for rule in RULES for case in rule.choices.values() for c in case}


class Decision(NamedTuple):
    """What :func:`decide` returns: the rule that fired, its (available) choice, and every
    available choice of the rule's case in order, as (strategy, hyperparameters): the race's prior."""

    rule: str
    strategy: str
    hyperparameters: dict[str, Any]
    reasons: list[str]
    prior: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass
class Recommendation:
    """A strategy, its TrainConfig settings, why, what was measured, and the command to run it.

    Attributes:
        strategy: a name in ``transferkit.strategies.STRATEGY_NAMES``.
        hyperparameters: TrainConfig field names -> values, ``strategy`` included.
        reasons: one sentence per reason, the rule that fired first.
        measurements: the measured inputs (see :func:`measure`).
        command: a ready-to-run ``transferkit train ...`` line.
        rule: the name of the rule in ``RULES`` that fired (the prior).
        race: the measured race (every run: rung, epochs, validation accuracy, seconds,
            outcome), or ``None`` without one.
    """

    strategy: str
    hyperparameters: dict[str, Any]
    reasons: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    command: str = ""
    rule: str = ""
    race: RaceResult | None = None

    def explanation(self) -> str:
        """The measured inputs and the whole rule table, the rule that fired marked with ``*``."""
        lines = ["measured:"] + [f"  {k}: {v}" for k, v in self.measurements.items()]
        lines.append("rules (first match wins; * = the rule that fired):")
        for rule in RULES:
            lines.append(f"  {'*' if rule.name == self.rule else ' '} {rule.name}: if {rule.when} -> {rule.then}")
        return "\n".join(lines)


def _settings(choice: Choice, modality: str) -> dict[str, Any]:
    lr = {"lr": FULL_LR.get(modality, 1e-4)} if choice.full_lr else {}
    return {"strategy": choice.strategy, **choice.settings, **lr}


def _first_available(options: Sequence[Choice], available: Sequence[str], modality: str,
                     reasons: list[str]) -> tuple[str, dict[str, Any]]:
    """The first option whose strategy exists; say so when the preferred one does not."""
    for i, choice in enumerate(options):
        if choice.strategy in available:
            if i:
                reasons.append(f"{options[0].strategy} is not available in this transferkit "
                               f"(available: {', '.join(available)}); {choice.strategy} is the nearest.")
            return choice.strategy, _settings(choice, modality)
    # feature-extraction and full always exist; reaching this means the registry is empty.
    raise ConfigError(f"No recommended strategy is available (registered: {', '.join(available) or 'none'}); "
                      "reinstall transferkit.")


def _full_ft_exceeds_gpu(m: dict[str, Any]) -> bool:
    """Whether full fine-tuning's fixed state would crowd the GPU (unknown memory: no)."""
    gpu = m.get("gpu_memory_gb")
    return bool(m["cuda"] and gpu and m["total_params"] * FULL_FT_BYTES > GPU_SHARE * gpu * 2**30)


def decide(m: dict[str, Any], available: Sequence[str] | None = None) -> Decision:
    """Apply the strategy table to measurements; the first matching rule of ``RULES`` wins.

    Args:
        m: at least ``per_class`` (median training examples per class), ``separability``
            (0 = chance, 1 = perfect linear probe), ``total_params``, ``cuda`` (bool),
            ``modality`` (``image`` or ``text``), and optionally ``gpu_memory_gb``.
        available: strategy names to choose from (default: those registered now).

    Returns:
        A :class:`Decision`; strategies not in ``available`` fall back to the nearest that is.

    Example:
        >>> d = decide({"per_class": 10, "separability": 0.9, "total_params": 4_000_000,
        ...             "cuda": False, "modality": "image"}, ["feature-extraction", "full"])
        >>> d.rule, d.strategy, d.hyperparameters["head_solver"]
        ('tiny-similar', 'feature-extraction', 'lbfgs')
    """
    available = tuple(strategy_names() if available is None else available)
    n, sep = float(m["per_class"]), float(m["separability"])
    modality = m.get("modality", "image")
    lr = FULL_LR.get(modality, 1e-4)
    data = f"{n:g} training examples per class (median)"
    feats = f"separability {sep:.2f} (linear probe accuracy {m.get('probe_accuracy', float('nan')):.2f})"
    reasons: list[str]
    case = ""  # which of the rule's cases applies (most rules have one)
    if m["total_params"] > LARGE_MODEL and not m["cuda"]:
        rule = "large-model-cpu"
        reasons = [f"The model has {m['total_params'] / 1e6:.0f} M parameters and there is no CUDA "
                   "GPU: fine-tuning it on a CPU is slow, so train as little as possible."]
        if sep >= SIMILAR or n < VERY_SMALL:
            case = "tiny" if n < VERY_SMALL else "similar"
            reasons.append(f"With {data} and {feats}, a head on frozen features is enough; LoRA "
                           "(--strategy lora) is the next step if accuracy falls short.")
        else:
            case = "shifted"
            reasons.append(f"{feats} is low, so the features must adapt: LoRA trains small low-rank "
                           "adapters (a small share of the parameters) and skips the weight gradients and "
                           "optimizer state of the frozen layers; 3 epochs keep the CPU time in bounds.")
    elif _full_ft_exceeds_gpu(m) and n >= VERY_SMALL and sep < SIMILAR:
        rule = "large-model-gpu-memory"
        need = m["total_params"] * FULL_FT_BYTES / 2**30
        reasons = [f"Full fine-tuning would hold about {need:.1f} GB of weights, gradients and AdamW "
                   f"state, more than {GPU_SHARE:.0%} of the GPU's {m['gpu_memory_gb']:.0f} GB, before "
                   "any activations.",
                   f"{data} and {feats}: the features need to adapt, so LoRA trains low-rank adapters "
                   "on the frozen model, with the memory of little more than inference."]
    elif n < VERY_SMALL and sep >= SIMILAR:
        rule = "tiny-similar"
        reasons = [f"{data} is very little data (< {VERY_SMALL}): fine-tuning from a random head would "
                   "overfit.",
                   f"{feats} >= {SIMILAR}: the pre-trained features already separate the classes, so "
                   "a linear probe on them is a strong start.",
                   "Linear probe then fine-tune (lp-ft) fits that probe first (L-BFGS, L2 chosen by "
                   "cross-validation), then adapts the backbone gently and keeps the probe when that "
                   "does not help on validation; on the defaults suite it matched or beat the probe "
                   "alone on 18 of 20 few-shot cells."]
    elif n < VERY_SMALL:
        rule = "tiny-shifted"
        reasons = [f"{data} is very little data (< {VERY_SMALL}): only a small, gentle change to "
                   "the backbone is safe.",
                   f"{feats} < {SIMILAR}: the features fit the task only partly, so the head "
                   "alone will plateau.",
                   "Linear probe then fine-tune (lp-ft) first fits the head on frozen features, so the "
                   "fine-tune starts from a good head and moves the backbone little (a low rate, a long warmup)."]
    elif n > LARGE or sep < LARGE_SHIFT:
        rule = "large-or-shifted"
        why = (f"{data} is enough data (> {LARGE}) to fine-tune every layer" if n > LARGE else
               f"{feats} < {LARGE_SHIFT}: the target is far from the pre-training data, so every "
               "layer needs to adapt")
        reasons = [why + ".", f"Full fine-tuning at lr {lr:g} ({modality} models; "
                   "low enough to keep the pre-trained knowledge), early stopping on validation."]
    elif sep >= SIMILAR:
        rule = "medium-similar"
        reasons = [f"{data} is small to medium ({VERY_SMALL}-{LARGE}) and {feats} >= {SIMILAR}: "
                   "the frozen features already fit, so a probe on them is a strong start.",
                   "Linear probe then fine-tune (lp-ft) starts from that probe and adapts the backbone "
                   "gently; on the defaults suite at 100 per class it beat the probe alone by 2-12 "
                   "points on five of six datasets (the sixth: both perfect)."]
    else:
        rule = "medium-shifted"
        reasons = [f"{data} is small to medium ({VERY_SMALL}-{LARGE}) and {feats} is moderate "
                   f"({LARGE_SHIFT}-{SIMILAR}): adapt the top of the network, keep the generic lower layers.",
                   "Training the last 2 layer groups with rates shrinking 0.3x per group downwards "
                   "from the head's 5e-4 changes the task-specific layers most."]
    reasons.insert(0, f"Rule {rule}: {_RULES[rule].when}.")
    choices = _RULES[rule].choices[case]
    strategy, hyper = _first_available(choices, available, modality, reasons)
    prior = tuple((c.strategy, _settings(c, modality)) for c in choices if c.strategy in available)
    return Decision(rule, strategy, hyper, [r[:1].upper() + r[1:] for r in reasons], prior)


def race_order(m: dict[str, Any], available: Sequence[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The race's prior, best first: the fired rule's choices with its settings, then the strategies
    of the rules that fire a notch away (separability -0.2 and +0.2, 3x more and 3x fewer examples
    per class) with their own defaults (as ``compare`` runs them), so that with a short budget the
    strategies the table would consider next are measured first.

    Example:
        >>> [s for s, _ in race_order({"per_class": 10, "separability": 0.86, "total_params": 4_000_000,
        ...                            "cuda": False, "modality": "image"})]
        ['lp-ft', 'feature-extraction', 'last-n']
    """
    out = {name: settings for name, settings in decide(m, available).prior}
    nudges = ({"separability": m["separability"] - 0.2}, {"separability": m["separability"] + 0.2},
              {"per_class": m["per_class"] * 3}, {"per_class": m["per_class"] / 3})
    for nudge in nudges:
        for name, _ in decide({**m, **nudge}, available).prior:
            out.setdefault(name, {"strategy": name})
    return list(out.items())


def _probe_sample(labels: Sequence[int], per_class: int, limit: int, seed: int) -> list[int]:
    """Seeded indices: at most ``per_class`` of each class and ``limit`` in all (round-robin)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g).tolist()
    taken: dict[int, int] = {}
    chosen = []
    for i in order:
        if taken.get(labels[i], 0) < per_class and len(chosen) < limit:
            taken[labels[i]] = taken.get(labels[i], 0) + 1
            chosen.append(i)
    return sorted(chosen)


def measure(model: str, data: str | DataOptions, *, pretrained: bool = True, weights: str | None = None,
            max_length: int | None = None, device: str = "auto", **data_options: Any) -> dict[str, Any]:
    """Measure what :func:`decide` needs: data size, classes, model size, separability, CUDA.

    Args:
        model: model spec.
        data: data spec or :class:`DataOptions` (the splits training would use).
        **data_options: DataOptions fields (per_class, seed, ...) applied to ``data``.

    Returns:
        ``{"per_class", "per_class_min", "per_class_max", "num_classes", "n_train", "n_val", "n_test", "modality",
        "total_params", "probe_accuracy", "separability", "probe_train", "probe_val", "image_size", "cuda",
        "gpu_memory_gb",
        "seconds"}``.

    Example:
        >>> measure("builtin:efficientnet_lite0", "builtin:digits", per_class=10)["per_class"]  # doctest: +SKIP
        10.0
    """
    start = time.perf_counter()
    opts = as_data_options(data, **data_options)
    seed, data = opts.seed, opts.data
    seed_everything(seed)
    net = load_model(model, num_classes=2, pretrained=pretrained, weights=weights, max_length=max_length)
    bundle = load_data(opts)
    if bundle.modality != net.spec.modality:
        raise ConfigError(f"The model {model} takes {net.spec.modality} input but the data {data} is "
                          f"{bundle.modality}; pick a model for {bundle.modality} data (see `transferkit models`).")
    apply_image_size(net, opts.image_size, bundle.train)  # the probe sees what training would feed
    held_out = bundle.val if len(bundle.val) else bundle.test
    if len(bundle.train) == 0 or len(held_out) == 0:
        raise DataError(f"The data {data} leaves no training or no held-out examples ({len(bundle.train)} "
                        f"train, {len(bundle.val)} val, {len(bundle.test)} test); add examples or raise --val-fraction.")
    num_classes = bundle.num_classes
    counts = bundle.train.class_counts(num_classes)
    net.reset_classifier(num_classes)  # count parameters as training will have them
    torch_device = resolve_device(device)
    prepare_model_layout(net, net.spec.modality).to(torch_device).eval()
    batch = inference_batch_size(32, torch_device, net.spec.modality)

    def encode(split: Any, idx: list[int]) -> CachedFeatures:
        part = split.subset(idx)
        loader = make_indexed_loader(net, part, batch_size=batch)
        return extract_features(net, loader, len(part), torch_device)

    cap = max(1, min(PROBE_PER_CLASS, PROBE_MAX_TRAIN // num_classes))
    train = encode(bundle.train, _probe_sample(bundle.train.labels, cap, PROBE_MAX_TRAIN, seed))
    val_idx = _probe_sample(held_out.labels, len(held_out), PROBE_MAX_VAL, seed + 1)
    val = encode(held_out, val_idx)
    _, chosen = fit_head_lbfgs(train, val, num_classes, grid=(PROBE_L2,))
    acc, chance = float(chosen["val_accuracy"]), 1.0 / num_classes
    return {
        "per_class": float(statistics.median(counts)), "per_class_min": min(counts),
        "per_class_max": max(counts), "num_classes": num_classes, "n_train": len(bundle.train),
        "n_val": len(bundle.val), "n_test": len(bundle.test),
        "modality": net.spec.modality, "total_params": sum(p.numel() for p in net.parameters()),
        "probe_accuracy": round(acc, 4), "separability": round((acc - chance) / (1 - chance), 4),
        "probe_train": len(train), "probe_val": len(val),
        "image_size": net.spec.image.crop_size if net.spec.image else None, "cuda": torch.cuda.is_available(),
        "gpu_memory_gb": _gpu_memory_gb(),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _gpu_memory_gb() -> float | None:
    """Total memory of CUDA device 0 in GiB (``None`` without CUDA)."""
    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)


def _flag(name: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + name.replace("_", "-")]
    return [flag, f"{value:g}" if isinstance(value, float) else str(value)]


def train_command(model: str, data: str, settings: dict[str, Any]) -> str:
    """A shell-quoted ``transferkit train`` line; settings equal to TrainConfig's defaults are left out.

    Example:
        >>> train_command("builtin:efficientnet_lite0", "my images", {"strategy": "full", "lr": 1e-4, "seed": 0})
        "transferkit train --model builtin:efficientnet_lite0 --data 'my images' --strategy full --lr 0.0001"
    """
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    args = ["transferkit", "train", "--model", model, "--data", data]
    for name, value in settings.items():
        if value is None or (name in defaults and defaults[name] == value):
            continue
        args += _flag(name, value)
    return " ".join(shlex.quote(a) for a in args)


_MODEL_OPTIONS = ("pretrained", "weights", "max_length", "device")
# How the race's runs and the recommended command train; measuring the features does not need it.
_TRAIN_OPTIONS = ("precision", "class_weights")


def recommend(model: str, data: str | DataOptions, *, race: bool = True, budget: float | None = None,
              out: str | Path | None = None, progress: bool | None = None, **options: Any) -> Recommendation:
    """Measure the model and data, apply the strategy table, race the strategies, return the advice.

    Args:
        model: model spec, e.g. ``builtin:efficientnet_lite0``.
        data: data spec, e.g. ``builtin:digits``, or :class:`DataOptions`: the splits, seed and
            ``per_class`` training would use.
        race: train the strategies briefly by successive halving and pick on validation
            (``workflows.race``); ``False``: the rule table's answer alone, in seconds.
        budget: the race's seconds (default ``race.BUDGET_FACTOR`` x one feature-extraction run, at
            most ``race.COMPARE_SHARE`` of every candidate's estimated full run).
        out: keep the race's run folders and race.json here (default: a temporary folder).
        progress: progress bars in the race's runs (default: when stderr is a terminal).
        **options: DataOptions fields (per_class, seed, val_fraction, ...) applied to ``data``,
            how training would load the model (pretrained, weights, max_length, device) and
            train it (precision, class_weights: the race trains with them, the command carries them).

    Returns:
        A :class:`Recommendation` (``race`` holds the race's runs, ``None`` without one).

    Raises:
        ConfigError: an unknown option, a budget that is not a positive number, or ``budget``
            or ``out`` without a race.

    Example:
        >>> rec = recommend("builtin:efficientnet_lite0", "builtin:digits", per_class=10, race=False)  # doctest: +SKIP
        >>> rec.strategy, rec.command  # doctest: +SKIP
        ('feature-extraction', 'transferkit train --model builtin:efficientnet_lite0 ... --head-solver lbfgs')
        >>> rec = recommend("builtin:efficientnet_lite0", "builtin:digits", per_class=10)  # doctest: +SKIP
        >>> print(rec.race.table())  # doctest: +SKIP
    """
    data_fields = [f.name for f in dataclasses.fields(DataOptions) if f.name != "data"]
    known = data_fields + list(_MODEL_OPTIONS) + list(_TRAIN_OPTIONS)
    bad = sorted(set(options) - set(known))
    if bad:
        raise ConfigError(f"recommend: unknown option(s) {', '.join(bad)}; known: {', '.join(known)}.")
    budget = check_budget(budget)
    if not race and (budget is not None or out is not None):
        raise ConfigError("budget and out set the race, which is off (--no-race); drop them, or drop "
                          "--no-race to race the strategies.")
    if out is not None:
        check_out(out)  # before measuring: a folder in use fails in a second
    given = {k: options[k] for k in _MODEL_OPTIONS if options.get(k) is not None}
    training = {k: options[k] for k in _TRAIN_OPTIONS if options.get(k) is not None}
    opts = as_data_options(data, **{k: v for k, v in options.items() if k in data_fields and v is not None})
    TrainConfig(model=model, **dataclasses.asdict(opts), **given, **training)  # validates the values
    measurements = {"model": model, "data": opts.data, **measure(model, opts, **given)}
    decision = decide(measurements)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    hyper = {k: v for k, v in decision.hyperparameters.items() if k in fields}
    reasons = list(decision.reasons)
    if measurements["probe_val"] < 50:  # one example moves the accuracy by more than 2 points
        reasons.append(f"The probe was scored on only {measurements['probe_val']} held-out examples, so "
                       "separability is a rough estimate; `transferkit compare` measures the candidates.")
    if imbalanced([measurements["per_class_min"], measurements["per_class_max"]]):
        reasons.append(_imbalance_reason(measurements, training.get("class_weights", "none")))
    if dropped := sorted(set(decision.hyperparameters) - set(hyper)):
        reasons.append(f"Settings {', '.join(dropped)} are not TrainConfig options in this version; left out.")
    strategy, result = decision.strategy, None
    if race:
        prior = [(name, {k: v for k, v in settings.items() if k in fields})
                 for name, settings in race_order(measurements)]
        result = run_race(model, opts, prior, modality=measurements["modality"], budget=budget, out=out,
                          progress=progress, n_val=measurements["n_val"],
                          guess=_cost_guess(measurements), **given, **training)
        strategy, hyper = result.winner, {"strategy": result.winner, **result.settings}
        reasons = result.reasons + [f"Prior: {r}" if i == 0 else r for i, r in enumerate(reasons)]
    run_settings = {**hyper, **{k: getattr(opts, k) for k in data_fields}, **given, **training}
    command = train_command(model, opts.data, run_settings)
    return Recommendation(strategy, hyper, reasons, measurements, command, decision.rule, result)


def _imbalance_reason(m: dict[str, Any], class_weights: str) -> str:
    """The advice's line on imbalanced classes (the race picks on validation accuracy, weighted
    only with ``--class-weights balanced``)."""
    text = (f"The classes are imbalanced ({m['per_class_min']} to {m['per_class_max']} training examples "
            "per class): ")
    if class_weights == "balanced":
        return text + "the race and the command weight each class's loss and score by --class-weights balanced."
    return text + ("the race scored plain validation accuracy, which rewards the large classes; if the "
                   "small ones matter, run recommend again with --class-weights balanced.")


def _cost_guess(m: dict[str, Any]) -> tuple[float, float]:
    """An end-to-end run's overhead and one epoch as shares of a feature-extraction run, before one
    is measured. Feature extraction encodes every split once (N examples); an end-to-end run
    encodes only the test split outside its epochs, and an epoch passes the training split forward
    and back (~3 forward passes) and the validation split forward."""
    encoded = m["n_train"] + m["n_val"] + m["n_test"]
    if not encoded:
        return 1.0, 1.0
    return 1 - (m["n_train"] + m["n_val"]) / encoded, (3 * m["n_train"] + m["n_val"]) / encoded
