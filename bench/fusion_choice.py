"""The fusion default chosen with SQuAD's full question set: ``bench.fusion_rules``'s ``choose`` rule
(>= the better leg on SciFact and SQuAD, >= 1.05x dense on SciFact, then the best worst-case ratio
to the better leg over every set) at one postings budget, over results of several runs of
``bench.fusion_rules`` (e.g. SciFact and the dense-favoured set from one, all 10,570 SQuAD
questions from another; each run holds its own baselines).

    python -m bench.fusion_choice --budget 2000 --json bench/results/fusion_choice.json \\
        bench/results/fusion_rules.json:scifact,scifact-otherwords bench/results/fusion_rules_squad_full.json:squad
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", metavar="JSON:SET[,SET]")
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    rows: dict[str, dict] = {}
    for spec in args.runs:
        path, sets = spec.split(":")
        table = json.loads(Path(path).read_text())["ndcg@10"]
        for s in sets.split(","):
            rows[s] = table[f"{s} budget={args.budget}"]
    out = []
    for name in rows["scifact"]:
        if name in ("dense", "keyword"):
            continue
        ratio = {s: r[name] / max(r["dense"], r["keyword"]) for s, r in rows.items()}
        ok = ratio["scifact"] >= 1.0 and ratio["squad"] >= 1.0 and rows["scifact"][name] >= 1.05 * rows["scifact"]["dense"]
        out.append({"fusion": name, "eligible": ok, "worst_ratio_to_better_leg": round(min(ratio.values()), 4),
                    "ratio_to_better_leg": {s: round(v, 4) for s, v in ratio.items()},
                    "ndcg@10": {s: r[name] for s, r in rows.items()}})
    out.sort(key=lambda t: (t["eligible"], t["worst_ratio_to_better_leg"]), reverse=True)
    legs = {s: {"dense": r["dense"], "keyword": r["keyword"]} for s, r in rows.items()}
    result = {"budget": args.budget, "legs": legs, "ranked": out}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"legs": legs, "top": out[:5]}, indent=1))


if __name__ == "__main__":
    main()
