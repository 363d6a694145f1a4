"""Scores of one answer against SQuAD-style references and qrels, and their aggregation.

- Exact match and token F1 use the SQuAD normalisation (lowercase, no punctuation, no articles
  a/an/the, single spaces) on the answer with its ``[n]`` citations removed, best over the references.
- "Contains a reference": a normalised reference appears in the normalised answer as whole words
  (what a quoting answerer such as the extractive one can reach; exact match implies it).
- Declined: the answer is empty, or its first sentence says the sources lack the answer (the
  extractive answerer's "I could not find an answer to that in the documents." and the usual LLM
  phrasings, see ``DECLINE``). A decline later in an answer that first answers does not count.
- Citation precision: cited sources relevant by the qrels / cited sources, over all answers.
  Citation recall: share of questions whose answer cites at least one relevant source.
- Verdict of one answer: ``correct`` (contains a reference), else ``declined`` or ``wrong``, each
  attributed to retrieval (no relevant chunk was retrieved at all) or to the answerer.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CITATION = re.compile(r"\s*\[\d{1,3}\]")
_PUNCTUATION = set(string.punctuation)
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")
_NEG = r"(?:could ?n[o']?t|can ?n[o']?t|cannot|can't|was unable to|am unable to|are unable to|do ?n[o']?t|don't|did ?n[o']?t|didn't)"
_SOURCES = r"(?:sources?|documents?|context|passages?|texts?|information (?:provided|given)|provided (?:sources?|information|text))"
DECLINE = re.compile(
    "|".join([
        rf"\b(?:i|we)\b[^.]{{0,30}}\b{_NEG}\b[^.]{{0,30}}\b(?:find|answer|know|determine|locate|tell)\b",
        rf"\b{_SOURCES}\b[^.]{{0,40}}\b(?:do(?:es)? ?n[o']?t|don't|doesn't|did not|didn't|fails? to|lacks?)\b[^.]{{0,20}}"
        r"\b(?:contain|mention|provide|say|include|specify|state|answer|give|have|address)",
        rf"\b(?:not|no)\b[^.]{{0,12}}\b(?:mentioned|stated|found|provided|specified|given|information|answer)\b[^.]{{0,25}}"
        rf"\b(?:in|within|from)\b[^.]{{0,12}}\b{_SOURCES}\b",
        r"\b(?:not enough|insufficient|no relevant) information\b",
        r"\bunable to (?:answer|determine|find)\b",
        r"\bcannot be (?:determined|answered|found)\b",
    ]),
    re.IGNORECASE,
)
VERDICTS = ("correct", "declined: retrieval miss", "declined: answerer", "wrong: retrieval miss", "wrong: answerer")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def strip_citations(text: str) -> str:
    """The answer without its ``[n]`` markers."""
    return _CITATION.sub("", text).strip()


def exact_match(prediction: str, references: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token F1, the max over references."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for ref in references:
        gold = normalize_answer(ref).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def contains_reference(prediction: str, references: Sequence[str]) -> float:
    """1.0 when a normalised reference occurs in the normalised prediction as whole words."""
    padded = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(r) and f" {normalize_answer(r)} " in padded for r in references))


def is_declined(answer: str) -> bool:
    """Empty, or the first sentence says the answer is not in the sources (see module docstring)."""
    text = strip_citations(answer)
    if not text:
        return True
    first = _FIRST_SENTENCE.split(text, maxsplit=1)[0]
    return DECLINE.search(first) is not None


def verdict(correct: bool, declined: bool, retrieved: bool) -> str:
    """One of ``VERDICTS``: a miss is the retriever's when no relevant chunk was retrieved at all."""
    if correct:
        return "correct"
    return f"{'declined' if declined else 'wrong'}: {'answerer' if retrieved else 'retrieval miss'}"


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-answer scores (dicts made by ``rag.eval_answers``) of one answerer."""
    n = len(rows)
    cited = sum(r["n_cited"] for r in rows)
    miss = [r for r in rows if not r["retrieved"]]
    hit = [r for r in rows if r["retrieved"]]
    verdicts = Counter(r["verdict"] for r in rows)
    latency = [r["latency_s"] for r in rows]
    prompt = [r["prompt_tokens"] for r in rows if r["prompt_tokens"] is not None]
    completion = [r["completion_tokens"] for r in rows if r["completion_tokens"] is not None]
    return {
        "n": n,
        "exact_match": _mean([r["exact_match"] for r in rows]),
        "f1": _mean([r["f1"] for r in rows]),
        "contains_reference": _mean([r["contains_reference"] for r in rows]),
        "citation_precision": sum(r["n_cited_relevant"] for r in rows) / cited if cited else None,
        "citation_recall": _mean([float(r["n_cited_relevant"] > 0) for r in rows]),
        "answered": _mean([float(not r["declined"]) for r in rows]),
        "declined": _mean([float(r["declined"]) for r in rows]),
        "declined_when_retrieval_missed": _mean([float(r["declined"]) for r in miss]),
        "declined_when_retrieved": _mean([float(r["declined"]) for r in hit]),
        "correct": verdicts["correct"] / n if n else None,
        "retrieval_failure": sum(v for k, v in verdicts.items() if k.endswith("retrieval miss")) / n if n else None,
        "answerer_failure": sum(v for k, v in verdicts.items() if k.endswith("answerer")) / n if n else None,
        "verdicts": {v: verdicts[v] for v in VERDICTS},
        "latency_s_p50": percentile(latency, 50),
        "latency_s_p95": percentile(latency, 95),
        "first_token_s_p50": percentile([r["first_token_s"] for r in rows if r["first_token_s"] is not None], 50),
        "prompt_tokens_mean": _mean(prompt),
        "completion_tokens_mean": _mean(completion),
        "prompt_tokens_total": int(sum(prompt)),
        "completion_tokens_total": int(sum(completion)),
        "token_counts_from": sorted({r["tokens_from"] for r in rows}),
    }
