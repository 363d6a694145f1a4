"""Known bad cases of the hybrid fusion on the bundled corpus, old rule vs current, one run.

Indexes ``corpora/python-reference`` with the bundled MiniLM (or reuses ``--store``) and, for each
query, prints the top 5 files of dense, keyword, hybrid with the rule before bench/fusion_rules.py
(w0 0.3, full 0.8, power 3, no floor, no support factor) and hybrid with the current defaults,
plus where the expected file ranks in each.

    python -m bench.bad_queries --store /tmp/pyref --json bench/results/bad_queries.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rag import fusion
from rag.retrieve import Retriever

# (query, the file a reader expects first): "with" and "for" are English stop words
CASES = [
    ("how does the with statement work", "with.md"),
    ("what is the for loop", "for.md"),
    ("what does the yield expression do", "yield.md"),
    ("how are exceptions raised", "raise.md"),
    ("how do I import a module from a package", "import.md"),
]
OLD = dict(w0=0.3, full=0.8, power=3.0, floor=0.0, support_power=0.0)


def top_files(r: Retriever, union: np.ndarray, scores: np.ndarray, k: int = 5) -> list[str]:
    rows = union[np.argsort(-scores, kind="stable")][: 4 * k]
    out: list[str] = []
    for c in r.store.chunks([int(x) for x in rows]):
        name = Path(c.source).name
        if name not in out:
            out.append(name)
    return out[:k]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True, help="store of corpora/python-reference (built here if missing)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    if not Path(args.store).exists():
        from indexing.build import index_paths

        index_paths([Path("corpora/python-reference")], Path(args.store))
    r = Retriever.open(args.store)
    xq = r.embedder.embed_queries([q for q, _ in CASES])
    out = []
    for (q, want), x in zip(CASES, xq):
        union, dense, kw, evidence = r.hybrid_candidates(q, x, 5)
        nd, nk = fusion.minmax(dense), fusion.minmax(kw)
        w_old = fusion.query_dense_weight(dense, kw, evidence, OLD["w0"], OLD["full"], OLD["power"], OLD["floor"], OLD["support_power"])
        _, w_new = fusion.fuse(dense, kw, r.fusion, evidence)
        row = {"query": q, "expected": want, "evidence": round(evidence, 3),
               "keyword_support": round(fusion.keyword_support(dense, kw), 3),
               "dense_weight_old": round(w_old, 3), "dense_weight_new": round(w_new, 3)}
        for name, s in (("dense", dense), ("keyword", kw), ("hybrid_old", w_old * nd + (1 - w_old) * nk),
                        ("hybrid_new", w_new * nd + (1 - w_new) * nk)):
            files = top_files(r, union, s)
            row[name] = files
            row[f"{name}_rank"] = files.index(want) + 1 if want in files else None
        out.append(row)
        print(json.dumps(row), flush=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
