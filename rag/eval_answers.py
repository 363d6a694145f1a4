"""Answer quality of the answers users get: ``rag ask``'s code path over the default store.

Each seeded question of a BEIR folder with ``answers.jsonl`` goes through ``RagChat`` with every
answerer given (``make_answerer``: the extractive one, or a model behind an OpenAI-compatible
server), answerers interleaved question by question so load affects them alike. The retriever is
anything with ``search(query, k=, oversample=) -> list[Hit]`` (a ``Retriever``, or a wrapper that
picks a retrieval mode). The scores and their definitions are in ``rag.answer_metrics``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from indexing.embed import Embedder
from indexing.errors import ConfigError, GenerationError
from rag.answer import Answerer, OpenAIAnswerer, make_answerer
from rag.answer_metrics import (  # re-exported: the metrics lived here first
    contains_reference, exact_match, is_declined, normalize_answer, strip_citations, summarize, token_f1, verdict,
)
from rag.chat import Answer, RagChat
from rag.eval_judge import Judge, judge_summary
from rag.fusion import DEFAULT_MODE
from rag.retrieve import DEFAULT_K, DEFAULT_OVERSAMPLE, Hit

if TYPE_CHECKING:
    from rag.eval_data import BeirData

__all__ = ["answer_quality", "check_llms", "exact_match", "make_answerers", "normalize_answer", "parse_llms", "token_f1"]
Checkpoint = Callable[[dict[str, Any]], None]
PASSAGE_CHARS = 2000  # cited passage text kept per row of the report


class TextRetriever(Protocol):
    """What ``RagChat`` searches: the store's ``Retriever`` (or a stand-in with its ``search``)."""

    def resolve_mode(self, mode: str) -> str: ...

    def search(self, query: str, k: int = DEFAULT_K, oversample: int = DEFAULT_OVERSAMPLE, mode: str = DEFAULT_MODE) -> list[Hit]: ...


def parse_llms(spec: str | None) -> list[str]:
    """``"extractive,smollm2"`` -> ``["extractive", "smollm2"]``; none given -> the extractive answerer."""
    names = [s.strip() for s in (spec or "extractive").split(",") if s.strip()]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"--llm {spec!r}: give distinct comma-separated names, e.g. extractive,smollm2")
    return names


def check_llms(llms: Sequence[str], base_url: str | None = None) -> None:
    """Fail before any work when a model is named but no server or key is configured."""
    configured = base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY")
    for name in llms:
        if name != "extractive" and not configured:
            raise ConfigError(f"--llm {name} needs --base-url URL (an OpenAI-compatible server) or OPENAI_API_KEY")


def make_answerers(
    embedder: Embedder, llms: Sequence[str], base_url: str | None = None, context_tokens: int | None = None,
    source_tokens: int | None = None,
) -> dict[str, Answerer]:
    """One answerer per name, built as ``rag ask --llm NAME --base-url URL`` builds it; the models get
    ``context_tokens`` (their context window) and ``source_tokens`` (cap on sources) when given."""
    check_llms(llms, base_url)
    out: dict[str, Answerer] = {}
    for name in llms:
        answerer = make_answerer(embedder, name, base_url)
        if isinstance(answerer, OpenAIAnswerer):
            answerer.request_usage = True  # token counts from the server when it sends them
            answerer.context_tokens = context_tokens or answerer.context_tokens  # flags over RAG_*_TOKENS
            answerer.source_tokens = source_tokens or answerer.source_tokens
        out[name] = answerer
    return out


def pick_questions(data: BeirData, n: int, seed: int = 0) -> list[int]:
    """Indices of ``n`` seeded queries that have reference answers, in dataset order."""
    if n < 1:
        raise ConfigError(f"--answers {n} must be >= 1")
    pool = [i for i, q in enumerate(data.query_ids) if data.answers.get(q)]
    if not pool:
        raise ConfigError(f"--answers needs {data.path / 'answers.jsonl'} with answers for the kept queries; drop --answers")
    rng = np.random.default_rng(seed)
    return [pool[i] for i in sorted(rng.choice(len(pool), min(n, len(pool)), replace=False).tolist())]


def _tokens(answerer: Answerer, answer: Answer) -> tuple[int | None, int | None, str]:
    """(prompt, completion, where from): the server's usage fields, else tiktoken counts."""
    from indexing.chunk import count_tokens
    from rag.prompt import build_messages

    usage = getattr(answerer, "last_usage", None)
    if usage:
        return usage["prompt_tokens"], usage["completion_tokens"], "server"
    completion = count_tokens(answer.text)
    if isinstance(answerer, OpenAIAnswerer):
        messages, _ = build_messages(answer.question, answer.sources, (), answerer.context_tokens, answerer.answer_tokens,
                                     answerer.source_tokens)
        return sum(count_tokens(m["content"]) + 4 for m in messages), completion, "tiktoken"
    return None, completion, "tiktoken (no prompt)"


def score_answer(answer: Answer, references: Sequence[str], relevant: set[str], retrieved: bool) -> dict[str, Any]:
    """The per-answer scores (``rag.answer_metrics``) and the cited passages."""
    prediction = strip_citations(answer.text)
    cited = [answer.sources[c - 1] for c in answer.cited]
    correct = contains_reference(prediction, references)
    declined = is_declined(answer.text)
    return {
        "answer": answer.text,
        "cited": [{"n": c, "source": h.source, "title": h.title, "relevant": h.source in relevant,
                   "text": h.text[:PASSAGE_CHARS]} for c, h in zip(answer.cited, cited)],
        "exact_match": exact_match(prediction, references), "f1": token_f1(prediction, references),
        "contains_reference": correct, "declined": declined, "retrieved": retrieved,
        "verdict": verdict(bool(correct), declined, retrieved),
        "n_cited": len(cited), "n_cited_relevant": sum(h.source in relevant for h in cited),
    }


def _summary(name: str, rows: list[dict[str, Any]], judge: Judge | None) -> dict[str, Any]:
    return {"name": name, **summarize(rows), **(judge_summary(rows) if judge is not None else {})}


def _ask(chat: RagChat, question: str) -> tuple[Answer, float, float | None]:
    """The finished answer, seconds to the end of the stream and to its first text."""
    t0 = time.perf_counter()
    first, answer = None, None
    for answer in chat.stream(question):
        if first is None and answer.text.strip():
            first = time.perf_counter() - t0
    assert answer is not None  # stream always yields at least the finished answer
    return answer, time.perf_counter() - t0, first


def answer_quality(
    data: BeirData, retriever: TextRetriever, answerers: dict[str, Answerer], n: int, k: int = DEFAULT_K,
    oversample: int = DEFAULT_OVERSAMPLE, seed: int = 0, checkpoint: Checkpoint | None = None,
    log: Callable[[str], None] | None = None, judge: Judge | None = None, mode: str = DEFAULT_MODE,
) -> dict[str, Any]:
    """Answer ``n`` seeded questions with every answerer through ``RagChat`` over the top ``k`` chunks.

    ``checkpoint`` gets the results so far after each question. On a ``GenerationError`` it gets
    the partial results (``complete`` false, ``error`` set) and the error is raised again.
    ``judge`` (optional) rates every answer; its rates and agreement join each answerer's summary.
    """
    if k < 1:
        raise ConfigError(f"--answer-k {k} must be >= 1")
    picked = pick_questions(data, n, seed)
    t0 = time.perf_counter()
    chats = {label: RagChat(retriever, a, k, oversample, mode) for label, a in answerers.items()}
    questions: list[dict[str, Any]] = []

    def result(error: str | None = None) -> dict[str, Any]:
        return {
            "n": len(questions), "n_requested": len(picked), "k": k, "oversample": oversample, "mode": mode, "seed": seed,
            "complete": error is None and len(questions) == len(picked), "error": error,
            "seconds": round(time.perf_counter() - t0, 1),
            f"retrieval_hit@{k}": float(np.mean([q["retrieved"] for q in questions])) if questions else None,
            "answerers": {label: _summary(answerers[label].name, [q["answers"][label] for q in questions], judge)
                          for label in answerers},
            "questions": questions,
        }

    for done, qi in enumerate(picked, start=1):
        qid, question = data.query_ids[qi], data.queries[qi]
        references, relevant = data.answers[qid], {d for d, g in data.qrels[qid].items() if g > 0}
        hits = retriever.search(question, k=k, oversample=oversample, mode=mode)
        retrieved = any(h.source in relevant for h in hits)
        row: dict[str, Any] = {"id": qid, "question": question, "references": references, "relevant": sorted(relevant),
                               "retrieved": retrieved, "retrieved_sources": [h.source for h in hits], "answers": {}}
        for label, chat in chats.items():
            try:
                answer, seconds, first = _ask(chat, question)
                prompt, completion, source = _tokens(chat.answerer, answer)
                scored = score_answer(answer, references, relevant, retrieved) | {
                    "latency_s": seconds, "first_token_s": first, "prompt_tokens": prompt,
                    "completion_tokens": completion, "tokens_from": source,
                }
                if judge is not None:
                    scored["judge"] = judge.rate(question, references, answer.text, scored["cited"])
            except GenerationError as exc:
                if checkpoint:
                    checkpoint(result(f"{label} failed at question {done} of {len(picked)}: {exc}"))
                raise
            row["answers"][label] = scored
        questions.append(row)
        if checkpoint:
            checkpoint(result())
        if log and (done % 10 == 0 or done == len(picked)):
            log(f"answered {done}/{len(picked)} questions with {', '.join(answerers)}")
    return result()
