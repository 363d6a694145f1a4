"""Answer quality on SQuAD-style datasets: the offline extractive answerer over the default store.

Exact match and token F1 use the SQuAD normalisation (lowercase, no punctuation, no articles
a/an/the, single spaces) and take the best over the reference answers. The citation hit rate is
the share of answers that cite at least one source from a document the qrels mark relevant.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from indexing.embed import Embedder
from indexing.errors import ConfigError
from rag.retrieve import DEFAULT_K

if TYPE_CHECKING:
    from rag.eval_configs import StoreSearcher
    from rag.evaluate import BeirData
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CITATION = re.compile(r"\s*\[\d{1,3}\]")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


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


def answer_quality(
    data: BeirData, xq: np.ndarray, searcher: StoreSearcher, embedder: Embedder, n: int, k: int = DEFAULT_K, seed: int = 0
) -> dict[str, Any]:
    """Extractive answers to ``n`` seeded questions over the default store's top ``k`` hits."""
    from rag.answer import ExtractiveAnswerer
    from rag.chat import Answer
    from rag.retrieve import Hit

    pool = [i for i, q in enumerate(data.query_ids) if data.answers.get(q)]
    if not pool:
        raise ConfigError(f"--answers needs {data.path / 'answers.jsonl'} with answers for the kept queries; drop --answers")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(pool), min(n, len(pool)), replace=False).tolist())
    sel = [pool[i] for i in picked]
    D, I = searcher.search(xq[sel], k)  # (m, k)
    answerer = ExtractiveAnswerer(embedder)
    em, f1, contains, cited_ok, retrieved_ok, examples = [], [], [], [], [], []
    for qi, d_row, i_row in zip(sel, D, I):
        qid, question, refs = data.query_ids[qi], data.queries[qi], data.answers[data.query_ids[qi]]
        rows = [int(r) for r in i_row if r >= 0]
        hits = [Hit(rank + 1, float(d_row[rank]), r, data.texts[r], data.doc_ids[r], data.titles[r], None, 0,
                    len(data.texts[r]), data.doc_ids[r]) for rank, r in enumerate(rows)]
        used, pieces = answerer.generate(question, hits)
        answer = Answer(question, question, "".join(pieces), sources=used)
        prediction = _CITATION.sub("", answer.text).strip()
        relevant = {d for d, g in data.qrels[qid].items() if g > 0}
        em.append(exact_match(prediction, refs))
        f1.append(token_f1(prediction, refs))
        contains.append(float(any(f" {normalize_answer(r)} " in f" {normalize_answer(prediction)} " for r in refs)))
        cited_ok.append(float(any(used[c - 1].source in relevant for c in answer.cited)))
        retrieved_ok.append(float(any(h.source in relevant for h in hits)))
        if len(examples) < 3:
            examples.append({"question": question, "answers": refs, "prediction": answer.text})
    return {
        "n": len(sel), "k": k, "answerer": answerer.name, "exact_match": float(np.mean(em)), "f1": float(np.mean(f1)),
        "answer_contains_reference": float(np.mean(contains)), "citation_hit_rate": float(np.mean(cited_ok)),
        f"retrieval_hit@{k}": float(np.mean(retrieved_ok)), "examples": examples,
    }
