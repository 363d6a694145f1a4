"""Answerers: turn a question and retrieved chunks into a streamed, cited answer.

``ExtractiveAnswerer`` works offline with no model: it quotes the sentences that best support
the question. ``OpenAIAnswerer`` calls OpenAI or any OpenAI-compatible server (vLLM, Ollama,
llama.cpp) through the ``openai`` client.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from indexing.embed import Embedder
from indexing.errors import ConfigError, GenerationError
from rag.prompt import Turn, build_messages, condense_messages, looks_like_instruction, uncite
from rag.retrieve import Hit

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n\s*\n|\n(?=[#*\-] )")


class Answerer(Protocol):
    """What the chat needs from an answer generator."""

    name: str

    def condense(self, question: str, history: Sequence[Turn]) -> str:
        """A standalone search query for ``question`` given the conversation so far."""
        ...

    def generate(self, question: str, hits: Sequence[Hit], history: Sequence[Turn]) -> tuple[list[Hit], Iterator[str]]:
        """The hits put before the model (source [i] is hits[i-1]) and a stream of text pieces."""
        ...


def split_sentences(text: str) -> list[str]:
    """Sentences (or list items / paragraphs) of ``text``, whitespace-normalised."""
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text) if s.strip()]


class ExtractiveAnswerer:
    """Offline answers: the sentences of the retrieved chunks closest to the question, each cited."""

    name = "extractive (offline: quotes the best-supporting sentences, no LLM)"

    def __init__(self, embedder: Embedder, max_sentences: int = 3, min_chars: int = 20, max_chars: int = 600) -> None:
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.min_chars, self.max_chars = min_chars, max_chars

    def condense(self, question: str, history: Sequence[Turn]) -> str:
        """Without a model: a short follow-up is searched together with the previous question."""
        previous = [t.content for t in history if t.role == "user"]
        if previous and len(question.split()) <= 8:
            return f"{previous[-1]} {question}"
        return question

    def _quotable(self, sentence: str) -> bool:
        """Prose of a sensible length; not a heading, not a grammar line, not an injected instruction."""
        letters = sum(ch.isalpha() or ch.isspace() for ch in sentence)
        return (
            self.min_chars <= len(sentence) <= self.max_chars
            and not sentence.startswith("#")
            and letters >= 0.8 * len(sentence)
            and not looks_like_instruction(sentence)
        )

    def select(self, question: str, hits: Sequence[Hit]) -> list[tuple[str, int]]:
        """The best (sentence, source number) pairs, best first."""
        candidates: list[tuple[str, int, float]] = []
        for number, hit in enumerate(hits, start=1):
            for sentence in split_sentences(hit.text):
                if self._quotable(sentence):
                    candidates.append((sentence, number, hit.score))
        if not candidates:
            return []
        xq = self.embedder.embed_queries([question])  # (1, d)
        xs = self.embedder.embed_documents([c[0] for c in candidates])  # (m, d)
        scores = xs @ xq[0] + 0.25 * np.asarray([c[2] for c in candidates])  # sentence fit + chunk rank
        picked: list[tuple[str, int]] = []
        for i in np.argsort(-scores, kind="stable"):
            sentence, number, _ = candidates[i]
            if all(sentence != s for s, _ in picked):
                picked.append((sentence, number))
            if len(picked) == self.max_sentences:
                break
        return picked

    def generate(self, question: str, hits: Sequence[Hit], history: Sequence[Turn] = ()) -> tuple[list[Hit], Iterator[str]]:
        hits = list(hits)
        picked = self.select(question, hits)

        def stream() -> Iterator[str]:
            if not picked:
                yield "I could not find an answer to that in the documents."
                return
            for i, (sentence, number) in enumerate(picked):
                for word in uncite(sentence).split(" "):  # the document's own "[2]" is no citation
                    yield word + " "
                yield f"[{number}]" + ("\n\n" if i < len(picked) - 1 else "")

        return hits, stream()


class OpenAIAnswerer:
    """Answers from a chat model behind the OpenAI API (or a compatible server at ``base_url``)."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        context_tokens: int = 8192,
        answer_tokens: int = 512,
        source_tokens: int | None = None,
        temperature: float = 0.1,
        timeout: float = 120.0,
    ) -> None:
        from openai import OpenAI

        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not self.base_url:
            raise ConfigError("the OpenAI answerer needs OPENAI_API_KEY, or --base-url for a compatible server")
        self.client = OpenAI(api_key=key or "not-needed", base_url=self.base_url, timeout=timeout)
        self.context_tokens, self.answer_tokens, self.temperature = context_tokens, answer_tokens, temperature
        self.source_tokens = source_tokens  # cap on the sources' tokens in the prompt (rag.prompt.build_messages)
        self.name = f"{model} via {self.base_url or 'OpenAI'}"
        # Token usage of the last finished call as the server reported it (None when it sent none).
        # ``rag eval`` reads it after each answer; with concurrent chats it is the latest call's.
        self.request_usage = False  # ask for usage in streams (stream_options, OpenAI / vLLM / llama.cpp)
        self.last_usage: dict[str, int] | None = None

    def condense(self, question: str, history: Sequence[Turn]) -> str:
        if not history:
            return question
        text = "".join(self._chat(condense_messages(question, history), stream=False, max_tokens=64)).strip()
        return text.splitlines()[0].strip() if text else question

    def generate(self, question: str, hits: Sequence[Hit], history: Sequence[Turn] = ()) -> tuple[list[Hit], Iterator[str]]:
        messages, used = build_messages(question, hits, history, self.context_tokens, self.answer_tokens, self.source_tokens)
        return used, self._chat(messages, stream=True, max_tokens=self.answer_tokens)

    def _chat(self, messages: list[dict[str, str]], stream: bool, max_tokens: int) -> Iterator[str]:
        from openai import OpenAIError

        self.last_usage = None
        extra = {"stream_options": {"include_usage": True}} if stream and self.request_usage else {}
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, stream=stream, max_tokens=max_tokens, temperature=self.temperature,
                **extra,
            )
            if not stream:
                self.last_usage = _usage(response)
                yield response.choices[0].message.content or ""
                return
            for event in response:
                self.last_usage = _usage(event) or self.last_usage
                if event.choices and event.choices[0].delta.content:
                    yield event.choices[0].delta.content
        except OpenAIError as exc:
            raise GenerationError(f"the answer model {self.model!r} at {self.base_url or 'OpenAI'} failed: {exc}") from exc


def _usage(response: object) -> dict[str, int] | None:
    """``{"prompt_tokens", "completion_tokens"}`` from a response or stream event carrying usage."""
    usage = getattr(response, "usage", None)
    if usage is None or getattr(usage, "prompt_tokens", None) is None:
        return None
    return {"prompt_tokens": int(usage.prompt_tokens), "completion_tokens": int(usage.completion_tokens or 0)}


def make_answerer(
    embedder: Embedder, llm: str | None = None, base_url: str | None = None, api_key: str | None = None
) -> Answerer:
    """``llm="extractive"`` (or no key and no server configured) gives the offline answerer.

    A model's prompt budget comes from ``RAG_CONTEXT_TOKENS`` (its context window, default 8192)
    and ``RAG_SOURCE_TOKENS`` (cap on the sources' tokens, default none), so ``rag ask``/``rag
    chat`` users of a small local model can get ``rag eval --source-tokens``'s speed too.
    """
    llm = llm or os.environ.get("RAG_LLM_MODEL")
    configured = base_url or os.environ.get("OPENAI_BASE_URL") or api_key or os.environ.get("OPENAI_API_KEY")
    if llm == "extractive" or not configured:
        return ExtractiveAnswerer(embedder)
    return OpenAIAnswerer(llm or "gpt-4o-mini", base_url=base_url, api_key=api_key,
                          context_tokens=_env_tokens("RAG_CONTEXT_TOKENS") or 8192,
                          source_tokens=_env_tokens("RAG_SOURCE_TOKENS"))


def _env_tokens(name: str) -> int | None:
    """A positive token count from the environment variable ``name``, None when unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name}={value!r} must be a positive number of tokens, e.g. {name}=600; or unset it")
    return int(value)
