"""LoRA layers, injection, merge/unmerge, parameter counts, layer groups, export and PEFT files.

Every model here is tiny and built in the test: an MLP, a small CNN with 1x1 and 3x3 convs, a
torchvision ResNet with one block per stage, and the 2-layer BERT from ``helpers.tiny``.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

import transferkit as tk
from transferkit import lora
from transferkit.errors import ConfigError
from transferkit.lora.layers import LoraConv2d, LoraLinear
from transferkit.strategies import get_strategy

from helpers.tiny import image_batch, tiny_resnet


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4, bias=False))


class SmallCNN(nn.Module):
    """3x3 stem, depthwise conv (not adaptable), 1x1 conv, strided 3x3 conv, pooled, head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.pw = nn.Conv2d(4, 6, 1)
        self.down = nn.Conv2d(6, 5, 3, stride=2, padding=1, bias=False)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.down(self.pw(torch.relu(self.dw(torch.relu(self.stem(x)))))))
        return self.head(x.mean((2, 3)))


def randomize_b(model: nn.Module, seed: int = 1) -> None:
    """Non-zero B, so the low-rank path changes the outputs (B starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora.lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def tiny_bert(tiny_bert_dir) -> tk.TransferModel:
    torch.manual_seed(0)
    return tk.load_model(f"hf:{tiny_bert_dir}", num_classes=3)


@pytest.fixture(scope="module")
def tokens(tiny_bert) -> dict:
    return dict(tiny_bert.tokenizer()(["a good movie", "the girl was eating bread and it was bad"],
                                      padding=True, return_tensors="pt"))


# -- the layers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make, x", [
    (mlp, torch.randn(3, 7, 6)),
    (SmallCNN, image_batch(8)),
])
def test_zero_b_gives_the_base_outputs_exactly(make, x) -> None:
    base = make().eval()
    adapted = copy.deepcopy(base)
    assert lora.apply_lora(adapted, rank=2, targets="all")
    adapted.eval()
    with torch.no_grad():
        assert torch.equal(adapted(x), base(x))
    adapted.train()  # the fast training path, too
    assert torch.equal(adapted(x).detach(), base.train()(x).detach())


def test_zero_b_text_encoder(tiny_bert, tokens) -> None:
    adapted = copy.deepcopy(tiny_bert).eval()
    names = lora.apply_lora(adapted)
    assert [n.rsplit(".", 1)[-1] for n in names] == ["query", "value"] * 2  # the text default
    with torch.no_grad():
        torch.testing.assert_close(adapted(tokens), tiny_bert.eval()(tokens), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dropout, bias", [(0.0, True), (0.0, False), (0.3, True)])
def test_fast_path_matches_plain_autograd(dropout, bias) -> None:
    """The custom autograd function gives the outputs and gradients of the textbook formula."""
    torch.manual_seed(0)
    layer = LoraLinear(nn.Linear(6, 5, bias=bias).double(), rank=3, alpha=6.0, dropout=dropout)
    with torch.no_grad():
        layer.lora_B.normal_()
    layer.weight.requires_grad_(True)  # every gradient, including W's and b's
    x = torch.randn(2, 4, 6, dtype=torch.double, requires_grad=True)
    results = []
    for forward in (layer._fast, layer._plain):
        torch.manual_seed(7)  # same dropout mask
        forward(x).square().sum().backward()
        results.append([x.grad] + [p.grad for p in layer.parameters()])
        x.grad = None
        layer.zero_grad()
    for fast, plain in zip(*results):
        torch.testing.assert_close(fast, plain)


def test_training_path_uses_bf16_autocast() -> None:
    layer = LoraLinear(nn.Linear(8, 4), rank=2)
    x = torch.randn(3, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.lora_A.grad.dtype == torch.float32 and x.grad.dtype == torch.float32


# -- merge, unmerge, remove -------------------------------------------------------------------------
@pytest.mark.parametrize("make, x", [(mlp, torch.randn(4, 6)), (SmallCNN, image_batch(8))])
def test_merge_unmerge_round_trip(make, x) -> None:
    model = make()
    lora.apply_lora(model, rank=2, alpha=4.0, targets="all")
    randomize_b(model)
    model.eval()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        unmerged = model(x)
        lora.merge_lora(model)
        merged = model(x)
        lora.merge_lora(model)  # merging twice is a no-op
        twice = model(x)
        lora.unmerge_lora(model)
        again = model(x)
    assert not torch.allclose(unmerged, make().eval()(x))  # the update matters
    torch.testing.assert_close(merged, unmerged, rtol=0, atol=1e-5)
    assert torch.equal(twice, merged)
    torch.testing.assert_close(again, unmerged, rtol=0, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), weights[name], rtol=0, atol=1e-6)


def test_merged_state_dict_and_remove_lora_give_an_ordinary_model() -> None:
    model, x = SmallCNN(), image_batch(8)
    plain = copy.deepcopy(model)
    lora.apply_lora(model, rank=2, targets="all")
    randomize_b(model)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        plain.load_state_dict(lora.merged_state_dict(model))  # strict: no lora keys left
        torch.testing.assert_close(plain.eval()(x), expected, rtol=0, atol=1e-5)
        assert not any(layer.merged for _, layer in lora.lora_layers(model))  # left unchanged
        removed = lora.remove_lora(model)
        assert not lora.has_lora(removed)
        assert {type(m) for m in removed.modules()} == {SmallCNN, nn.Conv2d, nn.Linear}
        torch.testing.assert_close(removed(x), expected, rtol=0, atol=1e-5)


def test_unmerged_model_exports_with_torchscript_and_onnx(tmp_path) -> None:
    model = SmallCNN()
    lora.apply_lora(model, rank=2, targets="all")
    randomize_b(model)
    model.eval()
    x = image_batch(8)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        torch.testing.assert_close(torch.jit.trace(model, x)(x), expected)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.onnx.export(model, (x,), str(tmp_path / "m.onnx"), input_names=["x"], dynamo=False)
    out = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-4, atol=1e-5)


# -- targets, counts, gradients ---------------------------------------------------------------------
@pytest.mark.parametrize("targets, expected", [
    ("all", ["stem", "pw", "down"]),  # the depthwise conv (groups=4) is left out; never the head
    ("all-linear", None),  # no Linear outside the head
    ("pw", ["pw"]),
    ("*o*", ["down"]),  # glob over the whole name
    (["stem", "down"], ["stem", "down"]),
])
def test_resolve_targets(targets, expected) -> None:
    model = SmallCNN()
    if expected is None:
        with pytest.raises(ConfigError, match="selects no layer"):
            lora.resolve_targets(model, targets)
    else:
        assert lora.resolve_targets(model, targets) == expected


@pytest.mark.parametrize("targets, fragment", [
    ("nope", "matches no module"),
    ("dw", "cannot adapt"),
    ("head", "never the head"),
    (",", "no pattern"),
])
def test_bad_targets(targets, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        lora.apply_lora(SmallCNN(), targets=targets)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"rank": 0}, "lora_rank"), ({"rank": -2}, "lora_rank"), ({"alpha": 0.0}, "lora_alpha"),
    ({"dropout": 1.0}, "lora_dropout"),
])
def test_bad_settings(kwargs, fragment) -> None:
    with pytest.raises(ConfigError, match=fragment):
        lora.apply_lora(mlp(), **kwargs)


@pytest.mark.parametrize("rank", [1, 4])
def test_trainable_count_is_r_d_plus_k_plus_head(rank) -> None:
    model = SmallCNN()
    lora.apply_lora(model, rank=rank, targets="all")
    for name, p in model.named_parameters():
        p.requires_grad_(lora.is_lora_parameter(name) or name.startswith("head."))
    # stem 3x3 (3 -> 4): r(3*9 + 4); pw 1x1 (4 -> 6): r(4 + 6); down 3x3 (6 -> 5): r(6*9 + 5); head 5*3+3.
    expected = rank * (3 * 9 + 4) + rank * (4 + 6) + rank * (6 * 9 + 5) + 5 * 3 + 3
    assert tk.lora_savings(model, ranks=[rank])[0]["trainable_params"] == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    per_layer = tk.lora_savings(model, ranks=[rank])[0]["per_layer"]
    assert [(x["lora"], x["full"]) for x in per_layer] == [
        (rank * 31, 108), (rank * 10, 24), (rank * 59, 270)]


def test_savings_rows_and_bert_base_sized_layer() -> None:
    rows = tk.lora_savings(nn.Sequential(nn.Linear(768, 768)), targets="all-linear")
    assert [r["rank"] for r in rows] == [1, 2, 4, 8, 16, 32, 64]
    r8 = rows[3]
    assert (r8["lora_params"], r8["per_layer"][0]["full"]) == (12_288, 589_824)  # 48x fewer
    assert r8["full_params"] == r8["total_params"] == 768 * 768 + 768
    assert r8["share"] == pytest.approx(12_288 / (768 * 769))
    with pytest.raises(ConfigError, match="positive whole number"):
        tk.lora_savings(nn.Sequential(nn.Linear(4, 4)), ranks=[8, 0])


def test_gradients_reach_only_a_b_and_the_head(tiny_bert, tokens) -> None:
    model = copy.deepcopy(tiny_bert)
    get_strategy("lora", tk.TrainConfig(model="m", data="d", strategy="lora", lora_targets="all-linear")).prepare(model)
    model.train()
    nn.functional.cross_entropy(model(tokens), torch.tensor([0, 2])).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad == trainable
    assert all(lora.is_lora_parameter(n) or n.startswith("head.") for n in trainable)
    assert {n.rsplit(".", 1)[0] for n in trainable if lora.is_lora_parameter(n)} == set(
        lora.resolve_targets(model, "all-linear"))
    assert not any(".pooler." in n for n in trainable)  # the encoder pools itself: no gradient there


def test_apply_is_idempotent_and_refuses_other_settings() -> None:
    model = mlp()
    first = lora.apply_lora(model, rank=2, targets="all")
    state = copy.deepcopy(model.state_dict())
    assert lora.apply_lora(model, rank=2, targets="all") == first
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with pytest.raises(ConfigError, match="already has a LoRA adapter"):
        lora.apply_lora(model, rank=4, targets="all")


@pytest.mark.parametrize("family", ["torchvision", "hf"])
def test_lora_parameters_join_their_layers_group(family, tiny_bert) -> None:
    if family == "torchvision":
        from transferkit.models.torchvision import from_module

        model = from_module(tiny_resnet(), num_classes=3, name="resnet18")
    else:
        model = copy.deepcopy(tiny_bert)
    before = {n: g.name for g in model.layer_groups() for n in g.param_names}
    lora.apply_lora(model, rank=2, targets="all")
    after = {n: g.name for g in model.layer_groups() for n in g.param_names}
    assert {n: g for n, g in after.items() if n in before} == before  # base weights stay put
    for name, group in after.items():
        if lora.is_lora_parameter(name):
            assert group == after[name.rsplit(".", 1)[0] + ".weight"]


def test_timm_parameter_name_rules() -> None:
    """timm's groups name parameters (``model.conv1.weight``), not modules."""
    from transferkit.models.groups import compute_layer_groups

    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    lora.apply_lora(net, rank=1, targets="0")
    groups = compute_layer_groups(net, [("stem", ["0.weight", "0.bias"]), ("top", ["1"])], "top")
    assert groups[0].param_names == ["0.weight", "0.bias", "0.lora_A", "0.lora_B"]


def test_cnn_strategy_keeps_batchnorm_in_eval() -> None:
    from transferkit.models.torchvision import from_module

    model = from_module(tiny_resnet(), num_classes=3, name="resnet18")
    strategy = get_strategy("lora", tk.TrainConfig(model="m", data="d", strategy="lora"))
    strategy.prepare(model)
    names = lora.resolve_targets(model)
    assert len(names) == 12 and all  # conv1, 2 per block, 3 downsample 1x1 convs(isinstance(model.get_submodule(n), LoraConv2d) for n in names)
    model.train()
    strategy.on_epoch_start(model, 1)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert model.get_submodule(names[0]).training


# -- PEFT-format adapter files ----------------------------------------------------------------------
def test_save_adapter_writes_peft_names(tmp_path, tiny_bert) -> None:
    model = copy.deepcopy(tiny_bert)
    names = lora.apply_lora(model, rank=4, alpha=8.0)
    folder = lora.save_adapter(model, tmp_path / "adapter")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8.0)
    assert config["target_modules"] == names and config["modules_to_save"] == ["head"]
    from safetensors.torch import load_file

    keys = set(load_file(str(folder / "adapter_model.safetensors")))
    assert keys == {f"base_model.model.{n}.lora_{f}.weight" for n in names for f in "AB"} | {
        "base_model.model.head.weight", "base_model.model.head.bias"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temporary folder left


@pytest.mark.parametrize("family", ["bert", "cnn"])
def test_peft_loads_our_adapter(tmp_path, family, tiny_bert, tokens) -> None:
    peft = pytest.importorskip("peft")
    base = copy.deepcopy(tiny_bert) if family == "bert" else SmallCNN()
    x = tokens if family == "bert" else image_batch(8)
    ours = copy.deepcopy(base)
    lora.apply_lora(ours, rank=2, alpha=3.0, targets="all")
    randomize_b(ours)
    with torch.no_grad():
        ours.head.weight.mul_(2)  # the head is saved with the adapter
    lora.save_adapter(ours, tmp_path / "a")
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "a")).eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours.eval()(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "cnn"])
def test_we_load_a_peft_adapter(tmp_path, family, tiny_bert, tokens) -> None:
    peft = pytest.importorskip("peft")
    base = copy.deepcopy(tiny_bert) if family == "bert" else SmallCNN()
    x = tokens if family == "bert" else image_batch(8)
    targets = lora.resolve_targets(base, "all")
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(
        r=3, lora_alpha=5, target_modules=targets, modules_to_save=["head"]))
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.normal_(0, 0.1)
    theirs.save_pretrained(str(tmp_path / "p"))
    ours = copy.deepcopy(base)
    assert lora.load_adapter(ours, tmp_path / "p") == targets
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=1e-5)


def test_load_adapter_errors(tmp_path, tiny_bert) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        lora.load_adapter(mlp(), tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not an adapter folder"):
        lora.load_adapter(mlp(), tmp_path / "empty")
    model = copy.deepcopy(tiny_bert)
    lora.apply_lora(model, rank=2)
    lora.save_adapter(model, tmp_path / "bert")
    with pytest.raises(ConfigError, match="does not fit this model"):
        lora.load_adapter(SmallCNN(), tmp_path / "bert")  # other layers
    other = copy.deepcopy(tiny_bert)
    other.reset_classifier(5)
    with pytest.raises(ConfigError, match="its head has 3 classes, this model's head 5"):
        lora.load_adapter(other, tmp_path / "bert")  # another number of classes
    with pytest.raises(ConfigError, match="no LoRA layers"):
        lora.save_adapter(mlp(), tmp_path / "x")
