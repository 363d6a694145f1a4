"""Document embedding through OpenVINO, for indexing throughput.

The sentence-transformers model's transformer is converted in memory (``ov.convert_model``, no
files, ~2 s for MiniLM) and compiled for the CPU in bfloat16 where the CPU has it (AVX512-BF16 or
AMX; elsewhere OpenVINO runs float32). Tokenising, pooling and normalising stay the model's own
sentence-transformers modules. The converted pipeline must reproduce ``SentenceTransformer.encode``
on probe texts (cosine >= PROBE_MIN_COSINE) or the encoder refuses the model (prompts, truncation
or unusual modules would differ). ``bench/embed_speed.py`` measures speed and nDCG@10 vs torch.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexing.errors import EmbeddingError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PROBE = ["a probe sentence", "another, slightly longer probe sentence about retrieval", ""]
PROBE_MIN_COSINE = 0.999
INFERENCE_THREADS = 0  # 0: OpenVINO uses every core; a Ray embedding actor sets its share (indexing.ray_index)
# An encoder given a share of the cores (INFERENCE_THREADS) does not pin its threads: OpenVINO pins
# each process's threads from the first core, so two 1-thread Ray actors both ran on core 0 (2
# actors at 29 chunks/s each pinned, 52 unpinned; bench/results/ray_index_v3_quiet.log vs _v4).
_CONVERT_LOCK = threading.Lock()  # tracing touches process-wide logging/warning state


class OpenVINOEncoder:
    """Encodes texts like ``SentenceTransformer.encode`` with the transformer run by OpenVINO.
    Safe to call from several threads (one inference request per call)."""

    def __init__(self, model: Any, precision: str = "bf16") -> None:
        self._st = model
        self.dim = 0  # set from the probe
        try:
            with _CONVERT_LOCK:
                self._compiled, self._inputs = _compile(model, precision)
            hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
            self.precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # "bf16" or "f32"
            self._tail = list(model)[1:]  # pooling, normalisation, dense layers: run as they are
            got = self.encode(PROBE, batch_size=len(PROBE))
            self.dim = got.shape[1]
            want = np.asarray(model.encode(PROBE, convert_to_numpy=True, show_progress_bar=False), np.float32)
        except EmbeddingError:
            raise
        except Exception as exc:  # conversion and tracing failures come as many types
            raise EmbeddingError(f"OpenVINO could not convert this model ({exc}); use the torch backend") from exc
        cos = _cosines(got, want) if got.shape == want.shape else np.zeros(1)
        if cos.min() < PROBE_MIN_COSINE:
            raise EmbeddingError(
                f"OpenVINO output differs from sentence-transformers on probe texts (cosine {cos.min():.4f}; "
                "prompts, truncation or custom modules?); use the torch backend"
            )

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """(n, dim) float32 sentence embeddings; batches of similar length (longest first)."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        request = self._compiled.create_infer_request()  # per call: concurrent callers never share one
        try:
            for i0 in range(0, len(texts), batch_size):
                rows = order[i0 : i0 + batch_size]
                features = self._st.preprocess([texts[i] for i in rows])
                hidden = request.infer({k: features[k].numpy() for k in self._inputs})[0]  # (b, tokens, hidden)
                features["token_embeddings"] = torch.from_numpy(np.ascontiguousarray(hidden, np.float32))
                with torch.no_grad():
                    for module in self._tail:
                        features = module(features)
                parts.append((rows, features["sentence_embedding"].float().numpy()))  # (b, dim)
        except Exception as exc:
            raise EmbeddingError(f"OpenVINO embedding failed: {exc}") from exc
        out = np.empty((len(texts), parts[0][1].shape[1]), np.float32)
        for rows, emb in parts:
            out[rows] = emb
        return out


def _compile(model: Any, precision: str) -> tuple[Any, list[str]]:
    """The model's transformer as an OpenVINO compiled model with dynamic (batch, tokens) inputs."""
    import openvino as ov
    import torch
    from transformers.utils import logging as hf_logging

    auto = getattr(model[0], "auto_model", None)
    probe = model.preprocess(PROBE[:2])
    inputs = [k for k in INPUTS if isinstance(probe.get(k), torch.Tensor)]
    if auto is None or "input_ids" not in inputs:
        raise EmbeddingError("OpenVINO backend: the model's first module is not a Hugging Face transformer")
    verbosity = hf_logging.get_verbosity()
    try:
        hf_logging.set_verbosity_error()  # config notes printed while tracing
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
            ov_model = ov.convert_model(
                _last_hidden_state(auto.train(False), inputs),
                example_input={k: probe[k] for k in inputs},
                input=[(k, ov.PartialShape([-1, -1]), ov.Type.i64) for k in inputs],
            )
    finally:
        hf_logging.set_verbosity(verbosity)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if INFERENCE_THREADS:
        config["INFERENCE_NUM_THREADS"] = INFERENCE_THREADS
        config["ENABLE_CPU_PINNING"] = False
    return ov.Core().compile_model(ov_model, "CPU", config), inputs


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of (n, d) arrays; zero rows count as equal to zero rows."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na < 1e-12) & (nb < 1e-12)
    return np.where(both_zero, 1.0, (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12))


def _last_hidden_state(auto: Any, names: list[str]) -> Any:
    """The transformer as a torch module of the token tensors, for tracing."""
    import torch

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.auto = auto

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
        ) -> torch.Tensor:
            given = {"attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.auto(input_ids=input_ids, **{k: v for k, v in given.items() if k in names}).last_hidden_state

    return LastHiddenState()
