"""Document embedding through OpenVINO, for indexing throughput.

The sentence-transformers model's transformer is converted in memory (``ov.convert_model``, no
files, ~2 s for MiniLM) and compiled for the CPU in bfloat16 where the CPU has it (AVX512-BF16 or
AMX; elsewhere OpenVINO runs float32). Tokenising, pooling and normalising stay the model's own
sentence-transformers modules, so the vectors match the torch path (cosine >= 0.999, tested).
``bench/embed_speed.py`` measures the speed-up and nDCG@10 against torch.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexing.errors import EmbeddingError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVINOEncoder:
    """Encodes texts like ``SentenceTransformer.encode`` with the transformer run by OpenVINO."""

    def __init__(self, model: Any, precision: str = "bf16") -> None:
        import openvino as ov
        import torch
        from transformers.utils import logging as hf_logging

        self._st = model
        self._tail = list(model)[1:]  # pooling, normalisation, dense layers: run as they are
        auto = getattr(model[0], "auto_model", None)
        probe = model.preprocess(["a probe sentence", "another, slightly longer probe sentence"])
        self._inputs = [k for k in INPUTS if isinstance(probe.get(k), torch.Tensor)]
        if auto is None or "input_ids" not in self._inputs:
            raise EmbeddingError("OpenVINO backend: the model's first module is not a Hugging Face transformer")
        verbosity = hf_logging.get_verbosity()
        try:
            hf_logging.set_verbosity_error()  # config notes printed while tracing
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
                ov_model = ov.convert_model(
                    _last_hidden_state(auto.eval(), self._inputs),
                    example_input={k: probe[k] for k in self._inputs},
                    input=[(k, ov.PartialShape([-1, -1]), ov.Type.i64) for k in self._inputs],
                )
            self._compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
        except Exception as exc:  # conversion failures come as many types
            raise EmbeddingError(f"OpenVINO could not convert this model ({exc}); use the torch backend") from exc
        finally:
            hf_logging.set_verbosity(verbosity)
        hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # "bf16" or "f32"

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """(n, dim) float32 sentence embeddings; batches of similar length (longest first)."""
        import torch

        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        for i0 in range(0, len(texts), batch_size):
            rows = order[i0 : i0 + batch_size]
            features = self._st.preprocess([texts[i] for i in rows])
            hidden = self._compiled({k: features[k].numpy() for k in self._inputs})[0]  # (b, tokens, hidden)
            features["token_embeddings"] = torch.from_numpy(np.ascontiguousarray(hidden, np.float32))
            with torch.no_grad():
                for module in self._tail:
                    features = module(features)
            emb = features["sentence_embedding"].numpy()  # (b, dim)
            if out is None:
                out = np.empty((len(texts), emb.shape[1]), np.float32)
            out[rows] = emb
        return out if out is not None else np.zeros((0, 0), np.float32)


def _last_hidden_state(auto: Any, names: list[str]) -> Any:
    """The transformer as a torch module of positional token tensors, for tracing."""
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
