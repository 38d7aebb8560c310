"""``--backend onnxruntime`` (transferkit.export.features): the session's options, the choice of
engine by a timed batch (torch where it is faster, said in the log), and features equal to
torch's on text batches of different lengths."""

from __future__ import annotations

import logging

import pytest
import torch

from transferkit.data import Split
from transferkit.export import features as backend
from transferkit.models import load_model
from transferkit.train.features import extract_features
from transferkit.train.loaders import make_indexed_loader

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    """The tiny BERT, 12 texts of 1 to 34 words and a loader of 3-text batches (lengths differ by batch)."""
    model = load_model(f"hf:{tiny_bert_dir}", num_classes=2).eval()
    words = "a man is eating food the girl carrying baby good bad movie great terrible film and it was".split()
    texts = [" ".join(words[(i * 7 + j) % len(words)] for j in range(1 + 3 * i)) for i in range(12)]
    split = Split(texts, [i % 2 for i in range(12)])
    return model, split, make_indexed_loader(model, split, batch_size=3)


@pytest.fixture(scope="module")
def encoder(bert):
    model, _, loader = bert
    return backend.OnnxBackbone(model, next(iter(loader))[0], threads=1)


@pytest.fixture
def messages():
    """The ``transferkit`` log's messages (the CLI turns its propagation off, so caplog may miss them)."""
    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(record.getMessage())

    keep, logger = Keep(), logging.getLogger("transferkit")
    level = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    yield keep.lines
    logger.removeHandler(keep)
    logger.setLevel(level)


def test_session_options_are_applied(encoder) -> None:
    options = encoder.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert encoder.session.get_providers() == ["CPUExecutionProvider"]


def test_threads_default_to_torchs(monkeypatch, bert) -> None:
    seen = {}
    monkeypatch.setattr(backend, "export_onnx", lambda *args, **kwargs: 20)  # the session is what counts
    monkeypatch.setattr(backend, "onnx_session", lambda path, device, threads: seen.setdefault("threads", threads))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)  # a --nproc worker's share of the cores
    model, _, loader = bert
    backend.OnnxBackbone(model, next(iter(loader))[0])
    assert seen == {"threads": 3}


# (0.026, 0.025): ONNX Runtime 1.04x, a near-tie that timing noise decides: torch keeps it
@pytest.mark.parametrize("eager,onnx,keeps", [(0.010, 0.025, False), (0.026, 0.025, False), (0.030, 0.012, True)])
def test_the_faster_engine_encodes_and_the_log_says_which(monkeypatch, messages, bert, eager, onnx, keeps) -> None:
    model, _, loader = bert
    built = object()
    monkeypatch.setattr(backend, "OnnxBackbone", lambda model, inputs, device: built)
    monkeypatch.setattr(backend, "time_engines", lambda *args: (eager, onnx))
    chosen = backend.onnxruntime_backend(model, loader, torch.device("cpu"))
    assert chosen is (built if keeps else None)  # None: extract_features runs torch
    if keeps:
        assert messages == ["--backend onnxruntime: ONNX Runtime encodes a batch of 3 in 12 ms (torch 30 ms, 2.50x)"]
    else:
        assert messages == [f"--backend onnxruntime: ONNX Runtime is not clearly faster for this model here (25 ms "
                            f"against torch's {eager * 1e3:.0f} ms for a batch of 3; it must be 1.1x), so torch "
                            "computes the features"]


@pytest.mark.parametrize("examples, warned", [(30, True), (300_000, False), (None, False)])
def test_an_export_that_costs_more_than_it_saves_is_said(monkeypatch, caplog, bert, examples, warned) -> None:
    """ONNX Runtime at 10 ms a batch of 3 against torch's 30 ms saves 6.7 ms an example: a 2 s
    export pays from 300 examples on, so on 30 the run is slower, and the log says so."""
    model, _, loader = bert
    built = type("Built", (), {"export_seconds": 2.0})()
    monkeypatch.setattr(backend, "OnnxBackbone", lambda model, inputs, device: built)
    monkeypatch.setattr(backend, "time_engines", lambda *args: (0.030, 0.010))
    with caplog.at_level(logging.WARNING, logger="transferkit"):
        assert backend.onnxruntime_backend(model, loader, torch.device("cpu"), examples=examples) is built
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert bool(warnings) == warned, warnings
    if warned:
        assert "took 2.0 s, more than ONNX Runtime saves on the 30 examples this run encodes (about 0.2 s)" in warnings[0]
        assert "below about 300 examples" in warnings[0]


def test_engines_are_timed_for_real(bert, encoder) -> None:
    model, _, loader = bert
    eager, onnx = backend.time_engines(model, encoder, next(iter(loader))[0], torch.device("cpu"))
    assert 0 < eager < 5 and 0 < onnx < 5
    assert backend.faster_engine(model, encoder, next(iter(loader))[0], torch.device("cpu")) in (None, encoder)


def test_features_equal_torchs_on_batches_of_different_lengths(bert, encoder) -> None:
    model, split, loader = bert
    lengths = {batch[0]["input_ids"].shape[1] for batch in loader}
    assert len(lengths) == 4  # one length a batch; the exported graph's sequence axis is symbolic: no padding to max_length
    eager = extract_features(model, loader, len(split), torch.device("cpu"))
    onnx = extract_features(model, loader, len(split), torch.device("cpu"), encode=encoder)
    assert torch.equal(eager.labels, onnx.labels)
    assert float(torch.nn.functional.cosine_similarity(eager.features, onnx.features, dim=1).min()) >= 0.9999
    assert float((eager.features - onnx.features).abs().max()) < 1e-4


def test_hugging_face_attention_is_traced_eager_and_restored(monkeypatch, bert) -> None:
    model, _, loader = bert
    hf = model.backbone.model  # the transformers PreTrainedModel inside HFEncoder
    before = hf.config._attn_implementation
    traced = []
    build = backend.build_graph
    monkeypatch.setattr(backend, "build_graph", lambda *a, **k: traced.append(hf.config._attn_implementation) or build(*a, **k))
    monkeypatch.setattr(backend, "export_onnx", lambda *args, **kwargs: 20)
    monkeypatch.setattr(backend, "onnx_session", lambda path, device, threads: None)
    backend.OnnxBackbone(model, next(iter(loader))[0])
    assert before != "eager" and traced == ["eager"]
    assert hf.config._attn_implementation == before
