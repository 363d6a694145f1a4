"""Build a BEIR-layout set where dense retrieval beats keywords: queries that avoid the words
of their relevant documents.

Both shared sets (SciFact claims, SQuAD questions) are written in their documents' words, so
BM25 beats MiniLM on both. Real users also ask in their own words. This script rewrites each
query of a BEIR set: every query word that also occurs in one of its relevant documents (same
first 5 letters, a crude stem) is replaced by its nearest *other* word in the embedding model's
input (WordPiece) embedding table -- a word that does not share its first 4 letters, is not a
stop word and does not occur in the relevant documents either. Words absent from the relevant
documents are kept. The result ("claims in other words") shares almost no terms with its
relevant documents, which is what defeats BM25; the substitutes are near-synonyms, related
words or sometimes antonyms, which a dense model partly bridges. Deterministic: no sampling.

    python -m bench.dense_favoured --dataset ../shared/datasets/scifact --out bench/data/scifact-otherwords

The corpus and qrels are copied unchanged; ``rag eval --dataset OUT`` then measures it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np

from indexing.keyword import STOP_WORDS

WORD = re.compile(r"[A-Za-z]+|[^A-Za-z]+")


def _stem(w: str) -> str:
    return w.lower()[:5]


def neighbour_table(model_id: str) -> tuple[list[str], np.ndarray]:
    """Whole-word entries of the model's vocabulary and their unit input embeddings (V, h)."""
    from indexing.embed import load_embedder

    st = load_embedder(model_id)._model  # sentence-transformers model
    tok = st.tokenizer
    emb = st[0].auto_model.get_input_embeddings().weight.detach().numpy()  # (vocab, h)
    words = [(w, i) for w, i in tok.get_vocab().items() if w.isalpha() and w.islower() and len(w) >= 3 and w not in STOP_WORDS]
    words.sort(key=lambda t: t[1])
    x = emb[[i for _, i in words]]
    return [w for w, _ in words], x / np.linalg.norm(x, axis=1, keepdims=True)


def word_vector(word: str, st_tok, emb: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    ids = st_tok(word.lower(), add_special_tokens=False)["input_ids"]
    v = emb[ids].mean(0)
    return v / max(1e-12, float(np.linalg.norm(v)))


def rewrite(dataset: Path, out: Path, model_id: str) -> dict[str, int]:
    from indexing.embed import load_embedder

    st = load_embedder(model_id)._model
    emb = st[0].auto_model.get_input_embeddings().weight.detach().numpy()
    vocab, table = neighbour_table(model_id)
    stems = np.array([_stem(w)[:4] for w in vocab])
    stems5 = np.array([_stem(w) for w in vocab])
    docs = {}
    with open(dataset / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs[str(d["_id"])] = f"{d.get('title', '')} {d.get('text', '')}"
    qrels: dict[str, list[str]] = {}
    for line in (dataset / "qrels/test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        q, d, g = line.split("\t")[:3]
        if int(g) > 0:
            qrels.setdefault(q, []).append(d)
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    shutil.copyfile(dataset / "corpus.jsonl", out / "corpus.jsonl")
    shutil.copyfile(dataset / "qrels/test.tsv", out / "qrels/test.tsv")
    counts = {"queries": 0, "words": 0, "replaced": 0}
    cache: dict[tuple[str, frozenset], str] = {}
    with open(dataset / "queries.jsonl", encoding="utf-8") as f, open(out / "queries.jsonl", "w", encoding="utf-8") as g:
        for line in f:
            q = json.loads(line)
            rel = [docs[d] for d in qrels.get(str(q["_id"]), []) if d in docs]
            if not rel:  # not judged: never evaluated, copied as is
                g.write(line)
                continue
            rel_stems = frozenset(_stem(w) for text in rel for w in re.findall(r"[A-Za-z]+", text))
            parts = []
            for piece in WORD.findall(q["text"]):
                if piece[0].isalpha():
                    counts["words"] += 1
                    if _stem(piece) in rel_stems and piece.lower() not in STOP_WORDS:
                        key = (piece.lower(), rel_stems)
                        if key not in cache:
                            sims = table @ word_vector(piece, st.tokenizer, emb)  # (V,)
                            bad = (stems == _stem(piece)[:4]) | np.isin(stems5, list(rel_stems))
                            sims[bad] = -np.inf
                            cache[key] = vocab[int(np.argmax(sims))]
                        piece = cache[key]
                        counts["replaced"] += 1
                parts.append(piece)
            g.write(json.dumps({"_id": q["_id"], "text": "".join(parts)}, ensure_ascii=False) + "\n")
            counts["queries"] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    args = ap.parse_args()
    print(json.dumps(rewrite(Path(args.dataset), Path(args.out), args.model)))


if __name__ == "__main__":
    main()
