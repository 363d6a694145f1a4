"""A tiny BEIR folder with ``answers.jsonl`` for the answer-evaluation tests (unit and e2e)."""

from __future__ import annotations

import json
from pathlib import Path

Questions = dict[str, tuple[str, str, str]]  # id -> (question, relevant doc id, reference answer)


def write_answer_set(folder: Path, docs: dict[str, str], questions: Questions, fillers: list[str]) -> Path:
    """corpus.jsonl (``docs`` titled by their ids, then untitled ``fillers``), queries.jsonl,
    qrels/test.tsv (one relevant document a question) and answers.jsonl in ``folder``."""
    (folder / "qrels").mkdir(parents=True)
    rows = [{"_id": d, "title": d, "text": t} for d, t in docs.items()]
    rows += [{"_id": f"filler{i}", "title": "", "text": text} for i, text in enumerate(fillers)]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _, _) in questions.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q, (_, d, _) in questions.items()))
    (folder / "answers.jsonl").write_text("".join(json.dumps({"_id": q, "answers": [a]}) + "\n" for q, (_, _, a) in questions.items()))
    return folder
