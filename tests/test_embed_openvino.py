"""The OpenVINO document-embedding backend against the torch path, with the real bundled model."""

from __future__ import annotations

import numpy as np
import pytest

import indexing.embed
import indexing.embed_openvino
from indexing.embed import SentenceTransformerEmbedder
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
    assert openvino_embedder.backend.startswith("openvino-")
    assert got.shape == reference.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * reference).sum(axis=1)
    assert cos.min() > 0.999, cos  # rows come back in input order despite length sorting
    assert np.argmax(got @ reference.T, axis=1).tolist() == list(range(len(TEXTS)))  # each text's own row is nearest


def test_queries_use_torch(torch_embedder, openvino_embedder) -> None:
    np.testing.assert_array_equal(openvino_embedder.embed_queries(TEXTS[:2]), torch_embedder.embed_queries(TEXTS[:2]))


def test_auto_converts_only_for_large_calls(torch_embedder, monkeypatch) -> None:
    auto = SentenceTransformerEmbedder(backend="auto")
    auto.embed_documents(TEXTS)
    assert auto.backend == "auto" and auto._openvino is None  # 7 texts: conversion not worth ~3 s
    monkeypatch.setattr(indexing.embed, "OPENVINO_MIN_TEXTS", 5)
    got = auto.embed_documents(TEXTS)
    assert auto.backend.startswith("openvino-")
    assert (got * torch_embedder.embed_documents(TEXTS)).sum(axis=1).min() > 0.999


def test_failed_conversion_falls_back_in_auto_and_raises_when_asked(monkeypatch) -> None:
    def broken(model):  # type: ignore[no-untyped-def]
        raise EmbeddingError("OpenVINO could not convert this model")

    monkeypatch.setattr(indexing.embed_openvino, "OpenVINOEncoder", broken)
    monkeypatch.setattr(indexing.embed, "OPENVINO_MIN_TEXTS", 1)
    auto = SentenceTransformerEmbedder(backend="auto")
    assert auto.embed_documents(TEXTS[:2]).shape == (2, 384) and auto.backend == "torch"
    with pytest.raises(EmbeddingError, match="could not convert"):
        SentenceTransformerEmbedder(backend="openvino").embed_documents(TEXTS[:2])


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="auto, torch, openvino"):
        SentenceTransformerEmbedder(backend="onnx")
