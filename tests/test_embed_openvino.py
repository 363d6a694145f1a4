"""The OpenVINO document-embedding backend against the torch path, with the real bundled model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import indexing.embed
import indexing.embed_openvino
from indexing.embed import SentenceTransformerEmbedder, load_embedder
from indexing.errors import ConfigError, EmbeddingError

TEXTS = [
    "Aspirin reduces the risk of heart attack in adults over fifty.",
    "",
    "word " * 700,  # longer than the model's 256-token window: truncated alike
    "Le café naïf: ünïcode and punctuation!?",
    "short",
    "The mitochondria is the powerhouse of the cell, producing ATP through oxidative phosphorylation.",
    "Gradient descent minimises a loss by stepping against its gradient.",
]


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(backend="torch", batch_size=3)


@pytest.fixture(scope="module")
def openvino_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(backend="openvino", batch_size=3)


def test_openvino_matches_torch_row_by_row(torch_embedder, openvino_embedder) -> None:
    reference = torch_embedder.embed_documents(TEXTS)  # (n, 384)
    got = openvino_embedder.embed_documents(TEXTS)
    assert openvino_embedder.last_backend.startswith("openvino-") and torch_embedder.last_backend == "torch"
    assert got.shape == reference.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * reference).sum(axis=1)
    assert cos.min() > 0.999, cos  # rows come back in input order despite length sorting
    assert np.argmax(got @ reference.T, axis=1).tolist() == list(range(len(TEXTS)))  # each text's own row is nearest


def test_empty_input_keeps_the_width(openvino_embedder) -> None:
    assert openvino_embedder.embed_documents([]).shape == (0, 384)


def test_concurrent_calls_share_one_compiled_model(torch_embedder, openvino_embedder) -> None:
    reference = torch_embedder.embed_documents(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: openvino_embedder.embed_documents(TEXTS[i:] + TEXTS[:i]), range(8)))
    for i, got in enumerate(results):
        assert (got * np.roll(reference, -i, axis=0)).sum(axis=1).min() > 0.999


def test_queries_use_torch(torch_embedder, openvino_embedder) -> None:
    np.testing.assert_array_equal(openvino_embedder.embed_queries(TEXTS[:2]), torch_embedder.embed_queries(TEXTS[:2]))


def test_auto_converts_only_for_large_calls(torch_embedder, monkeypatch) -> None:
    auto = SentenceTransformerEmbedder(backend="auto")
    auto.embed_documents(TEXTS)
    assert auto.last_backend == "torch"  # 7 texts: conversion (~3 s) not worth it
    monkeypatch.setattr(indexing.embed, "OPENVINO_MIN_TEXTS", 5)
    got = auto.embed_documents(TEXTS)
    assert auto.last_backend.startswith("openvino-")
    assert (got * torch_embedder.embed_documents(TEXTS)).sum(axis=1).min() > 0.999


def test_unfaithful_conversion_is_refused_and_auto_stays_on_torch(monkeypatch) -> None:
    monkeypatch.setattr(indexing.embed_openvino, "PROBE_MIN_COSINE", 1.5)  # no conversion can pass
    with pytest.raises(EmbeddingError, match="differs from sentence-transformers"):
        SentenceTransformerEmbedder(backend="openvino")
    monkeypatch.setattr(indexing.embed, "OPENVINO_MIN_TEXTS", 1)
    auto = SentenceTransformerEmbedder(backend="auto")
    assert auto.embed_documents(TEXTS[:2]).shape == (2, 384)
    assert auto.last_backend == "torch" and auto.backend == "torch"


def test_bad_backend_choices_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="auto, torch, openvino"):
        SentenceTransformerEmbedder(backend="onnx")
    with pytest.raises(ConfigError, match="local models only"):
        load_embedder("openai/text-embedding-3-small", backend="openvino")


def test_a_share_of_the_cores_is_not_pinned(monkeypatch) -> None:
    """A Ray embedding actor's encoder (INFERENCE_THREADS set) leaves its threads unpinned: OpenVINO
    pinned every process's threads from core 0, so two 1-thread actors shared one core."""
    monkeypatch.setattr(indexing.embed_openvino, "INFERENCE_THREADS", 1)
    embedder = SentenceTransformerEmbedder(backend="openvino")
    embedder.embed_documents(["a text"])  # converts
    encoder = embedder._openvino
    assert encoder._compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert encoder._compiled.get_property("ENABLE_CPU_PINNING") is False
