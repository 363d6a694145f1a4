"""BEIR-layout data sets and retrieval metrics: loading, cached embeddings, pytrec_eval scores.

A dataset is a folder with ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``), ``qrels/test.tsv`` (``query-id``, ``corpus-id``, ``score``) and, for
answer quality, ``answers.jsonl`` (``_id``, ``answers``). Used by every ``rag eval`` module
(``rag.evaluate``, ``rag.eval_modes``, ``rag.eval_answers``), which import it, never each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexing.embed import Embedder
from indexing.errors import ConfigError

Log = Callable[[str], None]
DEFAULT_CACHE = Path("~/.cache/compressed-rag/embeddings")
CACHE_VERSION = 1
RECALL_DEPTH = 100


@dataclass
class BeirData:
    """The kept part of a BEIR dataset; ``qrels[qid][doc_id] = grade`` covers kept docs only."""

    path: Path
    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    query_ids: list[str]
    queries: list[str]
    qrels: dict[str, dict[str, int]]
    answers: dict[str, list[str]] = field(default_factory=dict)  # only when answers.jsonl exists

    def doc_inputs(self) -> list[str]:
        """What gets embedded: BEIR's ``(title + " " + text).strip()``."""
        return [f"{t} {x}".strip() for t, x in zip(self.titles, self.texts)]


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    rows = []
    with open(file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{file}:{line_no} is not valid JSON ({exc}); fix or re-download the dataset") from exc
                if not isinstance(rows[-1], dict):
                    raise ConfigError(f"{file}:{line_no} is not a JSON object (got {line.strip()[:40]!r}); fix or re-download the dataset")
    return rows


def _read_qrels(file: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(file, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or (line_no == 1 and not parts[2].lstrip("-").isdigit()):
                continue  # header or blank line
            try:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
            except ValueError as exc:
                raise ConfigError(f"{file}:{line_no}: score {parts[2]!r} is not an integer relevance grade") from exc
    return qrels


def load_beir(dataset: str | Path, max_docs: int | None = None, max_queries: int | None = None, seed: int = 0) -> BeirData:
    """Queries with a relevant document in ``qrels/test.tsv`` (a seeded sample of ``max_queries``),
    and the corpus: every document relevant to a kept query, filled up to ``max_docs`` by a seeded sample."""
    path = Path(dataset).expanduser()
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        if not (path / name).is_file():
            raise ConfigError(
                f"{path} has no {name}: pass a BEIR-layout folder holding corpus.jsonl, queries.jsonl and qrels/test.tsv"
            )
    for flag, value in (("--max-docs", max_docs), ("--max-queries", max_queries)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value} must be >= 1 (or left out for all)")
    corpus = _read_jsonl(path / "corpus.jsonl")
    if any("_id" not in d or "text" not in d for d in corpus):
        raise ConfigError(f"every line of {path / 'corpus.jsonl'} needs '_id' and 'text' (BEIR layout)")
    in_corpus = {str(d["_id"]) for d in corpus}
    qrels_all = _read_qrels(path / "qrels/test.tsv")
    qrels = {q: {d: g for d, g in rel.items() if d in in_corpus} for q, rel in qrels_all.items()}
    queries = _read_jsonl(path / "queries.jsonl")
    if any("_id" not in q or "text" not in q for q in queries):
        raise ConfigError(f"every line of {path / 'queries.jsonl'} needs '_id' and 'text' (BEIR layout)")
    queries = [q for q in queries if any(g > 0 for g in qrels.get(str(q["_id"]), {}).values())]
    if not queries:
        raise ConfigError(f"no query of {path / 'queries.jsonl'} has a relevant document in qrels/test.tsv and corpus.jsonl")
    rng = np.random.default_rng(seed)
    if max_queries is not None and max_queries < len(queries):
        queries = [queries[i] for i in sorted(rng.choice(len(queries), max_queries, replace=False))]
    query_ids = [str(q["_id"]) for q in queries]
    needed = {d for q in query_ids for d in qrels[q]}
    if max_docs is not None and max_docs < len(corpus):
        if len(needed) > max_docs:
            raise ConfigError(
                f"--max-docs {max_docs} is below the {len(needed)} documents judged for the {len(query_ids)} kept queries; "
                "raise --max-docs or lower --max-queries"
            )
        others = [i for i, d in enumerate(corpus) if str(d["_id"]) not in needed]
        fill = set(rng.choice(len(others), max_docs - len(needed), replace=False).tolist()) if others else set()
        keep = needed | {str(corpus[others[i]]["_id"]) for i in fill}
        corpus = [d for d in corpus if str(d["_id"]) in keep]
    answers = {}
    if (path / "answers.jsonl").is_file():
        rows = _read_jsonl(path / "answers.jsonl")
        if any("_id" not in a or not isinstance(a.get("answers", []), list) for a in rows):
            raise ConfigError(f"every line of {path / 'answers.jsonl'} needs '_id' and a list 'answers' (SQuAD style)")
        answers = {str(a["_id"]): [str(x) for x in a.get("answers", [])] for a in rows}
    return BeirData(
        path=path, doc_ids=[str(d["_id"]) for d in corpus], titles=[str(d.get("title") or "") for d in corpus],
        texts=[str(d.get("text") or "") for d in corpus], query_ids=query_ids, queries=[str(q["text"]) for q in queries],
        qrels={q: qrels[q] for q in query_ids}, answers=answers,
    )


# -- embeddings, cached --------------------------------------------------------------------------
def _cache_file(cache_dir: Path, data: BeirData, model: str, part: str, ids: Sequence[str], max_docs: int | None) -> Path:
    source = data.path / ("corpus.jsonl" if part == "docs" else "queries.jsonl")
    st = source.stat()
    key = json.dumps({
        "v": CACHE_VERSION, "dataset": str(data.path.resolve()), "file": source.name, "bytes": st.st_size,
        "mtime_ns": st.st_mtime_ns, "model": model, "max_docs": max_docs,
        "ids": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
    }, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir / f"{data.path.name}-{part}-{digest}.npy"


def embed_cached(
    data: BeirData, model: str, get_embedder: Callable[[], Embedder], cache_dir: str | Path | None = None,
    max_docs: int | None = None, log: Log | None = None, batch: int = 512,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """xb (n, d) document and xq (nq, d) query embeddings, from ``cache_dir`` when present."""
    cache = Path(cache_dir or DEFAULT_CACHE).expanduser()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use {cache} as the embedding cache ({exc.strerror or exc}); pass another --cache-dir") from exc
    out: list[np.ndarray] = []
    info: dict[str, Any] = {"cache_dir": str(cache)}
    for part, ids, texts, method in (("docs", data.doc_ids, data.doc_inputs(), "embed_documents"),
                                     ("queries", data.query_ids, data.queries, "embed_queries")):
        file = _cache_file(cache, data, model, part, ids, max_docs)
        x = _load_cached(file, len(ids))
        info[f"{part}_cache_hit"] = x is not None
        if x is None:
            t0 = time.perf_counter()
            embed = getattr(get_embedder(), method)
            rows = []
            for i in range(0, len(texts), batch):
                rows.append(np.asarray(embed(texts[i : i + batch]), np.float32))
                if log:
                    log(f"embedded {min(i + batch, len(texts))}/{len(texts)} {part}")
            x = np.concatenate(rows)
            tmp = file.with_suffix(f".tmp-{os.getpid()}.npy")
            np.save(tmp, x, allow_pickle=False)
            os.replace(tmp, file)
            info[f"{part}_embed_seconds"] = round(time.perf_counter() - t0, 2)
        info[f"{part}_cache_file"] = str(file)
        out.append(x)
    if out[0].shape[1] != out[1].shape[1]:
        raise ConfigError(f"cached documents have dim {out[0].shape[1]} but queries {out[1].shape[1]}; clear {cache}")
    return out[0], out[1], info


def _load_cached(file: Path, n: int) -> np.ndarray | None:
    try:
        x = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    ok = x.ndim == 2 and len(x) == n and x.dtype == np.float32 and bool(np.all(np.isfinite(x)))
    return x if ok else None


# -- metrics ---------------------------------------------------------------------------------------
def run_from_ids(I: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """A TREC run from ranked rows I (nq, k); scores fall with rank so ties keep the search order."""
    run: dict[str, dict[str, float]] = {}
    for qid, row in zip(query_ids, I):
        ranked = [doc_ids[int(i)] for i in row if i >= 0]
        run[qid] = {d: float(len(ranked) - r) for r, d in enumerate(ranked)}
    return run


def retrieval_metrics(
    qrels: dict[str, dict[str, int]], run_k: dict[str, dict[str, float]], run_deep: dict[str, dict[str, float]],
    k: int = 10, depth: int = RECALL_DEPTH,
) -> dict[str, float]:
    """nDCG@k, recall@k, MRR@k from the top-k run and recall@depth from the deep run, by pytrec_eval,
    averaged over every query in ``qrels`` (a query with no results counts as 0)."""
    import pytrec_eval

    at_k = pytrec_eval.RelevanceEvaluator(qrels, {f"ndcg_cut.{k}", f"recall.{k}", "recip_rank"}).evaluate(run_k)
    deep = pytrec_eval.RelevanceEvaluator(qrels, {f"recall.{depth}"}).evaluate(run_deep)

    def mean(res: dict[str, dict[str, float]], measure: str) -> float:
        return float(np.mean([res.get(q, {}).get(measure, 0.0) for q in qrels])) if qrels else 0.0

    return {
        f"ndcg@{k}": mean(at_k, f"ndcg_cut_{k}"), f"recall@{k}": mean(at_k, f"recall_{k}"),
        f"recall@{depth}": mean(deep, f"recall_{depth}"), f"mrr@{k}": mean(at_k, "recip_rank"),
    }


def overlap_at_k(I: np.ndarray, I_ref: np.ndarray) -> float:
    """Mean share of each reference top-k (nq, k) that I (nq, k) also returns, order ignored."""
    shares = [len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist())) / max(1, int((b >= 0).sum())) for a, b in zip(I, I_ref)]
    return float(np.mean(shares)) if shares else 0.0
