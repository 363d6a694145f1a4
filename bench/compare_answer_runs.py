"""Answer quality of two ``rag eval --answers`` runs over the questions both answered.

Used to check that faster settings (``--source-tokens``, server flags) do not lower quality: the
seeded questions are the same in both runs, so a run stopped early is compared on its first N.

    python -m bench.compare_answer_runs bench/results/squad_answers_200.json \\
        bench/results/squad_answers_200_fast.json --json bench/results/answer_quality_compare.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("contains_reference", "f1", "exact_match", "citation_recall", "declined")


def _value(row: dict[str, Any], metric: str) -> float:
    if metric == "citation_recall":
        return float(row["n_cited_relevant"] > 0)
    return float(row[metric])


def compare(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Per answerer present in both: each metric's mean over the shared questions, old and new."""
    a_old, a_new = old["answers"], new["answers"]
    by_id = {q["id"]: q for q in a_old["questions"]}
    shared = [(by_id[q["id"]], q) for q in a_new["questions"] if q["id"] in by_id]
    out: dict[str, Any] = {"n_shared_questions": len(shared), "answerers": {}}
    for label in a_old["answerers"]:
        if label not in a_new["answerers"]:
            continue
        rows = [(o["answers"][label], n["answers"][label]) for o, n in shared]
        out["answerers"][label] = {
            metric: {"old": float(np.mean([_value(o, metric) for o, _ in rows])),
                     "new": float(np.mean([_value(n, metric) for _, n in rows]))}
            for metric in METRICS
        } | {"prompt_tokens_mean": {"old": _mean([o["prompt_tokens"] for o, _ in rows]),
                                    "new": _mean([n["prompt_tokens"] for _, n in rows])},
             "same_answer_text": float(np.mean([o["answer"] == n["answer"] for o, n in rows]))}
    return out


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    out = compare(*(json.loads(Path(f).read_text(encoding="utf-8")) for f in (args.old, args.new)))
    out |= {"old": args.old, "new": args.new}
    text = json.dumps(out, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
