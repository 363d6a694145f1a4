"""New per-query signals for the hybrid fusion, measured against the current rule on the same
extracted candidates: the dense leg's own confidence, the agreement of both legs' top lists, an
IDF-weighted coverage, and a dense-anchored ranking for weak keyword evidence.

Candidates and both legs' scores come from the product's ``Retriever.hybrid_candidates`` at one
postings budget (``bench.fusion_rules.extract``); every rule below maps them to a top 10. The
selection rule, stated before any result was read (``choose``): a rule is eligible when it is
>= the better single leg on SciFact and SQuAD and >= 1.05x dense on SciFact (the issue's targets);
among the eligible, the best worst-case ratio to the better leg over the *selection* sets (SciFact,
SciFact in other words, SQuAD) wins, ties to the rule with fewer parameters. Sets named with
``--check`` (e.g. SQuAD in other words) are reported beside the choice and never selected on.

    python -m bench.fusion_signals --budget 2000 --features /tmp/fusion_signals.pkl \\
        --set scifact=../shared/datasets/scifact \\
        --set scifact-otherwords=bench/data/scifact-otherwords:../shared/datasets/scifact \\
        --set squad=../shared/datasets/squad-v1.1 \\
        --check squad-otherwords=bench/data/squad-otherwords:../shared/datasets/squad-v1.1 \\
        --json bench/results/fusion_signals.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.fusion_rules import K, QueryFeatures, cov_terms, extract, ndcg, strength
from rag import fusion

# the current default (rag/fusion.py before this study): coverage of the searched terms x strength,
# x support ** 0.5, floor 0.3, full 0.6, power 2, w0 0.3
CURRENT = dict(w0=0.3, floor=0.3, full=0.6, power=2.0, support=0.5)


def agreement(f: QueryFeatures, k: int = K) -> float:
    """Share of the keyword leg's top k that is also in the dense leg's top k (over the union)."""
    n = int((f.kw > 0).sum())
    if n == 0:
        return 0.0
    td = set(np.argsort(-f.dense, kind="stable")[:k].tolist())
    tk = set(np.argsort(-f.kw, kind="stable")[: min(k, n)].tolist())
    return len(td & tk) / min(k, n)


def peak(x: np.ndarray) -> float:
    """How far a leg's best (m,) score stands out: (top1 - top2) / (top1 - top10); 0 below 10 scores."""
    d = np.sort(x)[::-1]
    if len(d) < K or d[0] - d[K - 1] <= 1e-9:
        return 0.0
    return float((d[0] - d[1]) / (d[0] - d[K - 1]))


def dense_peak(f: QueryFeatures) -> float:
    """The dense leg's confidence: ``peak`` of its scores over the union."""
    return peak(f.dense)


EVIDENCE: dict[str, Callable[[QueryFeatures], float]] = {
    # the product's evidence as the code under test computes it (since this study: the share of the
    # searched terms' IDF mass, a term absent from the store at the highest IDF, x strength)
    "product": lambda f: f.evidence,
    # the evidence before this study: term share of the searched terms x strength (absent terms left
    # out of the ideal score); equal to the old product's on all but 0.3-0.8 % of the queries (which
    # of the keyword leg's tied top chunks are looked at)
    "searched": lambda f: cov_terms(f, f.searched) * strength(f),
    # share of the searched terms' IDF mass, an absent term counting 0 (the first grid's IDF coverage)
    "idf": lambda f: cov_terms(f, f.searched, f.idf) * strength(f),
}


def weight(f: QueryFeatures, ev: str, w0: float, floor: float, full: float, power: float, support: float,
           agree: float = 0.0, peak: float = 0.0, relative: bool = False) -> float:
    """Dense weight of one query: the current rule's, with the evidence optionally also times
    agreement ** ``agree`` and (1 - dense_peak) ** ``peak`` (``relative``: the dense leg's peak
    counts only as far as the keyword leg's own scores are not peaked too)."""
    if float(f.kw.max(initial=0.0)) <= 0.0:
        return 1.0
    e = EVIDENCE[ev](f)
    if support > 0:
        e *= fusion.keyword_support(f.dense, f.kw) ** support
    if agree > 0:
        e *= agreement(f) ** agree
    if peak > 0:
        e *= (1.0 - dense_peak(f) * ((1.0 - globals()["peak"](f.kw)) if relative else 1.0)) ** peak
    return fusion.coverage_weight(e, w0, full, power, floor)


def top(f: QueryFeatures, w: float, anchor: int = 0) -> np.ndarray:
    """Top K rows of the union for dense weight ``w``; ``anchor`` > 0: when the keyword leg's
    trust is not full (w above the prior), only the dense leg's best ``anchor`` candidates may rank."""
    s = w * fusion.minmax(f.dense) + (1 - w) * fusion.minmax(f.kw)
    if anchor:
        allowed = np.zeros(len(s), bool)
        allowed[np.argsort(-f.dense, kind="stable")[:anchor]] = True
        s = np.where(allowed, s, -np.inf)
    return f.union[np.argsort(-s, kind="stable")[:K]]


def rules() -> dict[str, tuple[int, Callable[[QueryFeatures], np.ndarray]]]:
    """name -> (number of free parameters, QueryFeatures -> top K rows)."""
    out: dict = {}
    c = CURRENT
    out["dense"] = (0, lambda f: top(f, 1.0))
    out["keyword"] = (0, lambda f: top(f, 0.0))
    out["current"] = (5, lambda f: top(f, weight(f, "product", **c)))  # the default at extraction time
    out["previous"] = (5, lambda f: top(f, weight(f, "searched", **c)))  # the default before this study
    # IDF-weighted coverage in place of the term share, on the current grid's neighbourhood
    for full, power, support in itertools.product((0.5, 0.6, 0.7), (2.0, 3.0), (0.0, 0.5)):
        p = dict(c, full=full, power=power, support=support)
        out[f"idf full={full} power={power} support={support}"] = (5, lambda f, p=p: top(f, weight(f, "idf", **p)))
    # agreement of the legs' top 10s, and the dense leg's own confidence, times the evidence
    for ev, a in itertools.product(("searched", "idf"), (0.5, 1.0)):
        out[f"{ev} agree={a}"] = (6, lambda f, ev=ev, a=a: top(f, weight(f, ev, **c, agree=a)))
    for ev, b in itertools.product(("searched", "idf"), (0.5, 1.0, 2.0)):
        out[f"{ev} peak={b}"] = (6, lambda f, ev=ev, b=b: top(f, weight(f, ev, **c, peak=b)))
    # dense-anchored: weak keyword evidence (trust < 1) only re-orders the dense leg's best N
    for ev, n in itertools.product(("searched", "idf"), (10, 20, 30)):
        def anchored(f: QueryFeatures, ev: str = ev, n: int = n) -> np.ndarray:
            w = weight(f, ev, **c)
            return top(f, w, n if w > c["w0"] + 1e-9 else 0)
        out[f"{ev} anchor={n}"] = (6, anchored)
        for a in (0.5, 1.0):
            def anchored_agree(f: QueryFeatures, ev: str = ev, n: int = n, a: float = a) -> np.ndarray:
                w = weight(f, ev, **c, agree=a)
                return top(f, w, n if w > c["w0"] + 1e-9 else 0)
            out[f"{ev} agree={a} anchor={n}"] = (7, anchored_agree)
    # second grid, added after the first one's results were read (none of it eligible and better
    # than the current rule): the current rule with a higher floor / wider ramp, and the dense peak
    # relative to the keyword leg's peak with a more trusting ramp. Reported, same selection rule.
    for w0, floor, full, power in itertools.product((0.2, 0.3), (0.35, 0.4, 0.45), (0.6, 0.7, 0.8), (1.0, 2.0)):
        p = dict(c, w0=w0, floor=floor, full=full, power=power)
        out[f"2nd searched w0={w0} floor={floor} full={full} power={power}"] = (5, lambda f, p=p: top(f, weight(f, "searched", **p)))
    for full, b in itertools.product((0.45, 0.5, 0.6), (0.5, 1.0, 2.0)):
        p = dict(c, full=full)
        out[f"2nd searched relpeak={b} full={full}"] = (6, lambda f, p=p, b=b: top(f, weight(f, "searched", **p, peak=b, relative=True)))
    return out


def evaluate(ex: dict, budget: int) -> dict:
    """nDCG@10 of every rule on every set: {set: {rule: ndcg}}."""
    table: dict = {}
    R = rules()
    for (name, b), (ids, feats, _) in ex.items():
        if b != budget:
            continue
        res = {}
        for rname, (_, fn) in R.items():
            I = np.full((len(feats), K), -1, np.int64)
            for i, f in enumerate(feats):
                t = fn(f)
                I[i, : len(t)] = t
            res[rname] = ndcg(ids, I)
        table[name] = res
        print(f"{name}: dense {res['dense']} keyword {res['keyword']} current {res['current']}", flush=True)
    return table


def queries_moved(ex: dict, budget: int, name: str = "current") -> dict:
    """Per set: on how many queries rule ``name`` scores a higher / lower nDCG@10 than dense, and by
    how much in total (how many queries a set's ratio rests on)."""
    import pytrec_eval

    R = rules()
    out = {}
    for (set_name, b), ((query_ids, doc_ids, qrels), feats, _) in ex.items():
        if b != budget:
            continue
        judged = {q: {d: int(g) for d, g in v.items()} for q, v in qrels.items()}
        ev = pytrec_eval.RelevanceEvaluator(judged, {f"ndcg_cut.{K}"})
        per = []
        for fn in (R["dense"][1], R[name][1]):
            run = {query_ids[i]: {doc_ids[r]: float(K - j) for j, r in enumerate(fn(f))} for i, f in enumerate(feats)}
            res = ev.evaluate(run)
            per.append(np.array([res[q][f"ndcg_cut_{K}"] for q in query_ids if q in res]))
        diff = per[1] - per[0]
        out[set_name] = {"queries": len(diff), "better": int((diff > 1e-9).sum()), "worse": int((diff < -1e-9).sum()),
                         "sum_better": round(float(diff[diff > 0].sum()), 2), "sum_worse": round(float(diff[diff < 0].sum()), 2)}
        if out[set_name]["worse"] <= 10:  # few enough to read: each with the searched terms no chunk holds
            judged_ids = [i for i, q in enumerate(query_ids) if q in judged]
            out[set_name]["worse_queries"] = {
                query_ids[judged_ids[j]]: sorted(t for t, v in feats[judged_ids[j]].idf.items() if v == 0.0)
                for j in np.flatnonzero(diff < -1e-9).tolist()}
    return out


def choose(table: dict, selection: list[str], checks: list[str]) -> dict:
    """The stated rule (module docstring): eligible on the shared targets, then best worst-case
    ratio to the better leg over the selection sets, ties to fewer parameters."""
    R = rules()
    ranked = []
    for name in table[selection[0]]:
        if name in ("dense", "keyword"):
            continue
        ratio = {s: table[s][name] / max(table[s]["dense"], table[s]["keyword"]) for s in selection + checks}
        ok = all(ratio[s] >= 1.0 for s in ("scifact", "squad") if s in ratio) and (
            "scifact" not in table or table["scifact"][name] >= 1.05 * table["scifact"]["dense"])
        worst = min(ratio[s] for s in selection)
        ranked.append({"fusion": name, "eligible": ok, "worst_ratio_to_better_leg": round(worst, 4),
                       "parameters": R[name][0], "ratio_to_better_leg": {s: round(v, 4) for s, v in ratio.items()},
                       "ratio_to_dense": {s: round(table[s][name] / table[s]["dense"], 4) for s in selection + checks},
                       "ndcg@10": {s: table[s][name] for s in selection + checks}})
    ranked.sort(key=lambda t: (t["eligible"], t["worst_ratio_to_better_leg"], -t["parameters"]), reverse=True)
    return {"chosen": ranked[0]["fusion"] if ranked and ranked[0]["eligible"] else None, "ranked": ranked}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", action="append", required=True, metavar="NAME=PATH[:DOCS_FROM]", help="selection set")
    ap.add_argument("--check", action="append", default=[], metavar="NAME=PATH[:DOCS_FROM]", help="reported, not selected on")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--features", action="append", default=[],
                    help="pickle of extracted features: every one present is read; sets found in none are extracted "
                         "and written to the first one absent")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    def parse(spec: str) -> tuple[str, str, str | None]:
        name, rest = spec.split("=", 1)
        path, _, docs_from = rest.partition(":")
        return name, path, docs_from or None

    sel, chk = [parse(s) for s in args.set], [parse(s) for s in args.check]
    ex: dict = {}
    for path in args.features:
        if Path(path).exists():
            with open(path, "rb") as fh:
                ex.update(pickle.load(fh))
    todo = [s for s in sel + chk if (s[0], args.budget) not in ex]
    if todo:
        new = extract(todo, [args.budget], None, args.cache_dir)
        new = {k: ((v[0].query_ids, v[0].doc_ids, v[0].qrels), v[1], v[2]) for k, v in new.items()}
        absent = [p for p in args.features if not Path(p).exists()]
        if absent:
            with open(absent[0], "wb") as fh:
                pickle.dump(new, fh)
        ex.update(new)
    table = evaluate(ex, args.budget)
    choice = choose(table, [s[0] for s in sel], [s[0] for s in chk])
    legs = {s: {"dense": t["dense"], "keyword": t["keyword"]} for s, t in table.items()}
    out = {"budget": args.budget, "selection_sets": [s[0] for s in sel], "check_sets": [s[0] for s in chk],
           "queries": {k[0]: len(v[1]) for k, v in ex.items()}, "legs": legs, "chosen": choice["chosen"],
           "current_vs_dense_per_query": queries_moved(ex, args.budget),
           "previous_vs_dense_per_query": queries_moved(ex, args.budget, "previous"), "ranked": choice["ranked"], "ndcg@10": table}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"legs": legs, "chosen": choice["chosen"], "top": choice["ranked"][:8]}, indent=1))


if __name__ == "__main__":
    main()
