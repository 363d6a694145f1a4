"""rag.answer_metrics, rag.eval_answers and rag.eval_report: each metric on hand-checked cases, a
run through ``RagChat`` with a failing answerer (partial results), and ``rag eval --answers``
end to end on a synthetic BEIR folder with the fake embedder (no model, no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from indexing.errors import ConfigError, GenerationError
from rag.answer_metrics import (
    contains_reference, exact_match, is_declined, percentile, strip_citations, summarize, token_f1, verdict,
)
from rag.cli import main
from tests.answer_sets import write_answer_set
from rag.eval_answers import answer_quality, make_answerers, parse_llms
from rag.evaluate import load_beir
from rag.retrieve import Hit

DOCS = {
    "zebra": "Zebras have black and white stripes. The stripes confuse biting flies.",
    "sax": "The saxophone was invented by Adolphe Sax. He patented it in 1846.",
    "lava": "Volcanoes erupt molten basalt lava. Magma pressure breaks the crust.",
    "fjord": "Glaciers carve deep fjords. Ice creeps slowly down the valley.",
}
QUESTIONS = {  # id -> (question, relevant doc, reference answer)
    "q1": ("what confuses biting flies on zebras", "zebra", "stripes"),
    "q2": ("who invented the saxophone <script>alert(1)</script>", "sax", "Adolphe Sax"),
    "q3": ("what lava do volcanoes erupt", "lava", "molten basalt lava"),
    "q4": ("what do glaciers carve", "fjord", "deep fjords"),
}


def write_beir(folder: Path) -> Path:
    return write_answer_set(folder, DOCS, QUESTIONS, [f"Notes {i} on maps and trips." for i in range(6)])


# -- metrics, by hand -------------------------------------------------------------------------------------
def test_exact_match_and_token_f1_use_squad_normalisation() -> None:
    assert exact_match("The Cat!", ["cat"]) == 1.0 and exact_match("a cat sat", ["cat"]) == 0.0
    # pred {cat, sat} vs gold {cat, sat, down}: p = 1, r = 2/3, F1 = 0.8; best over references
    assert token_f1("the cat sat", ["dog", "a cat sat down"]) == pytest.approx(0.8)
    assert token_f1("nothing shared", ["cat"]) == 0.0
    assert strip_citations("Adolphe Sax [1][2] invented it [3].") == "Adolphe Sax invented it."


def test_contains_reference_needs_whole_words() -> None:
    assert contains_reference("It was patented in 1846 [1].", ["1846"]) == 1.0
    assert contains_reference("It was patented in 18460.", ["1846"]) == 0.0
    assert contains_reference("By the Adolphe   Sax.", ["adolphe sax", "x"]) == 1.0
    assert contains_reference("anything", [""]) == 0.0  # an empty reference never counts


@pytest.mark.parametrize("text, declined", [
    ("I could not find an answer to that in the documents.", True),  # the extractive answerer's wording
    ("I don't know.", True),
    ("The sources do not mention who invented it.", True),
    ("The provided text doesn't specify the year [1].", True),
    ("This information is not mentioned in the documents.", True),
    ("There is not enough information to answer.", True),
    ("", True),
    ("[1]", True),
    ("Zebras do not contain much fat [1].", False),
    ("Adolphe Sax invented it [1]. The sources do not say when.", False),  # answered first
    ("Nobody could find the lost city until 1911 [2].", False),
])
def test_declines_are_read_from_the_first_sentence(text: str, declined: bool) -> None:
    assert is_declined(text) is declined


def test_verdict_attributes_misses_to_retrieval_or_answerer() -> None:
    assert verdict(True, False, False) == "correct"
    assert verdict(False, True, False) == "declined: retrieval miss"
    assert verdict(False, False, True) == "wrong: answerer"
    assert verdict(False, True, True) == "declined: answerer"


def _row(cited: int, relevant: int, retrieved: bool, declined: bool, correct: bool, latency: float) -> dict:
    return {"exact_match": float(correct), "f1": 1.0 if correct else 0.0, "contains_reference": float(correct),
            "n_cited": cited, "n_cited_relevant": relevant, "retrieved": retrieved, "declined": declined,
            "verdict": verdict(correct, declined, retrieved), "latency_s": latency, "first_token_s": None,
            "prompt_tokens": None, "completion_tokens": 10, "tokens_from": "tiktoken (no prompt)"}


def test_summary_of_hand_made_rows() -> None:
    rows = [_row(2, 1, True, False, True, 1.0),   # correct, cites 1 relevant of 2
            _row(1, 0, True, False, False, 2.0),  # wrong with the answer retrieved: the answerer's fault
            _row(0, 0, False, True, False, 3.0),  # declined, nothing relevant retrieved
            _row(0, 0, False, False, False, 4.0)]  # wrong, nothing relevant retrieved
    s = summarize(rows)
    assert s["citation_precision"] == pytest.approx(1 / 3)  # 1 relevant of 3 cited, over all answers
    assert s["citation_recall"] == 0.25 and s["exact_match"] == 0.25 and s["correct"] == 0.25
    assert (s["answered"], s["declined"]) == (0.75, 0.25)
    assert s["declined_when_retrieval_missed"] == 0.5 and s["declined_when_retrieved"] == 0.0
    assert (s["retrieval_failure"], s["answerer_failure"]) == (0.5, 0.25)
    assert s["verdicts"]["wrong: retrieval miss"] == 1 and sum(s["verdicts"].values()) == 4
    assert s["latency_s_p50"] == 2.5 and s["latency_s_p95"] == pytest.approx(3.85)
    assert s["prompt_tokens_mean"] is None and s["completion_tokens_total"] == 40
    assert summarize([])["citation_precision"] is None and percentile([], 50) is None


def test_llm_names_and_missing_server_say_the_fix(monkeypatch, fake_embedder) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert parse_llms(None) == ["extractive"] and parse_llms("extractive, smollm2") == ["extractive", "smollm2"]
    with pytest.raises(ConfigError, match="distinct"):
        parse_llms("a,a")
    with pytest.raises(ConfigError, match="--llm smollm2 needs --base-url"):
        make_answerers(fake_embedder, ["extractive", "smollm2"])
    answerers = make_answerers(fake_embedder, ["extractive", "smollm2"], base_url="http://127.0.0.1:9/v1")
    assert answerers["smollm2"].request_usage and answerers["extractive"].name.startswith("extractive")


# -- a run: partial results when the answerer fails --------------------------------------------------------
class ListRetriever:
    """Collaborator fake: every document as a hit, the relevant one first."""

    def __init__(self, data) -> None:  # type: ignore[no-untyped-def]
        self.data = data

    def resolve_mode(self, mode: str) -> str:
        return mode

    def search(self, query: str, k: int = 5, oversample: int = 16, mode: str = "hybrid") -> list[Hit]:
        order = sorted(range(len(self.data.doc_ids)), key=lambda i: -len(set(query.split()) & set(self.data.texts[i].lower().split())))
        return [Hit(r + 1, 1.0 - r / 10, i, self.data.texts[i], self.data.doc_ids[i], "", None, 0, 1, "")
                for r, i in enumerate(order[:k])]


class FlakyAnswerer:
    """Collaborator fake: answers by quoting source [1], fails from its ``fail_at``-th answer on."""

    name = "flaky"

    def __init__(self, fail_at: int) -> None:
        self.calls, self.fail_at = 0, fail_at

    def condense(self, question: str, history: Sequence) -> str:
        return question

    def generate(self, question: str, hits: Sequence[Hit], history: Sequence = ()) -> tuple[list[Hit], Iterator[str]]:
        self.calls += 1

        def stream() -> Iterator[str]:
            if self.calls >= self.fail_at:
                raise GenerationError("the answer model 'flaky' failed: Connection error.")
            yield hits[0].text
            yield " [1]"

        return list(hits), stream()


def test_a_failing_answerer_leaves_the_questions_done(tmp_path: Path, fake_embedder) -> None:
    data = load_beir(write_beir(tmp_path / "ds"))
    seen: list[dict] = []
    answerers = {"extractive": make_answerers(fake_embedder, ["extractive"])["extractive"], "flaky": FlakyAnswerer(3)}
    with pytest.raises(GenerationError, match="flaky"):
        answer_quality(data, ListRetriever(data), answerers, n=4, k=3, checkpoint=seen.append)
    assert [c["n"] for c in seen] == [1, 2, 2] and [c["complete"] for c in seen] == [False] * 3
    last = seen[-1]
    assert "flaky failed at question 3 of 4" in last["error"]
    q = last["questions"][0]
    flaky = q["answers"]["flaky"]
    assert flaky["n_cited"] == 1 and flaky["cited"][0]["source"] == q["relevant"][0] and flaky["cited"][0]["relevant"]
    assert flaky["contains_reference"] == 1.0 and flaky["verdict"] == "correct" and flaky["latency_s"] > 0
    assert last["answerers"]["flaky"]["citation_precision"] == 1.0 and last["answerers"]["flaky"]["n"] == 2


# -- rag eval --answers end to end (fake embedder, real stores) ----------------------------------------------
def test_rag_eval_answers_writes_json_and_an_escaped_report(tmp_path: Path, monkeypatch, capsys, fake_embedder) -> None:
    monkeypatch.setattr("indexing.embed.load_embedder", lambda model="", base_url=None, backend="auto": fake_embedder)
    folder = write_beir(tmp_path / "ds")
    out, report = tmp_path / "answers.json", tmp_path / "report"
    argv = ["eval", "--dataset", str(folder), "--model", fake_embedder.model_id, "--cache-dir", str(tmp_path / "c"),
            "--answers", "4", "--answer-k", "2",
            "--json", str(out), "--report", str(report)]
    assert main(argv) == 0
    a = json.loads(out.read_text())["answers"]
    assert a["complete"] and a["n"] == 4 and a["k"] == 2 and list(a["answerers"]) == ["extractive"]
    s = a["answerers"]["extractive"]
    assert {"exact_match", "f1", "contains_reference", "citation_precision", "citation_recall", "declined",
            "latency_s_p50", "latency_s_p95", "retrieval_failure", "answerer_failure"} <= set(s)
    assert s["correct"] + s["retrieval_failure"] + s["answerer_failure"] == pytest.approx(1.0)
    assert a["retrieval_hit@2"] == pytest.approx(sum(q["retrieved"] for q in a["questions"]) / 4)
    assert s["prompt_tokens_mean"] is None and s["completion_tokens_mean"] > 0  # extractive: no prompt
    html = (report / "index.html").read_text(encoding="utf-8")
    assert html.count('class="question"') == 4 and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert (report / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    stdout = capsys.readouterr().out
    assert "cite recall" in stdout and "retrieval failure" in stdout and "index.html" in stdout


def test_llm_without_answers_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    folder = write_beir(tmp_path / "ds")
    assert main(["eval", "--dataset", str(folder), "--llm", "smollm2"]) == 1
    assert "add --answers N" in capsys.readouterr().err


# -- the optional LLM judge ------------------------------------------------------------------------------
def test_judge_reply_parsing_and_agreement(monkeypatch) -> None:
    from rag.eval_judge import Judge, judge_messages, judge_summary, parse_verdict

    assert parse_verdict("FAITHFUL: yes\nCORRECT: no") == {"faithful": True, "correct": False}
    assert parse_verdict("Correct - YES. faithful: no. correct: no") == {"faithful": False, "correct": True}  # first wins
    assert parse_verdict("I think it is fine.") == {"faithful": None, "correct": None}
    rows = [{"exact_match": 1.0, "contains_reference": 1.0, "judge": {"correct": True, "faithful": True}},
            {"exact_match": 0.0, "contains_reference": 1.0, "judge": {"correct": True, "faithful": False}},
            {"exact_match": 0.0, "contains_reference": 0.0, "judge": {"correct": None, "faithful": None}}]
    s = judge_summary(rows)
    assert s["judge_rated"] == 2 and s["judge_correct"] == 1.0 and s["judge_faithful"] == 0.5
    assert s["judge_agrees_exact_match"] == 0.5 and s["judge_agrees_contains"] == 1.0
    user = judge_messages("q?", ["a", "b"], "ans [1]", [{"n": 1, "text": "src"}])[1]["content"]
    assert "- a\n- b" in user and "[1] src" in user
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="--judge-base-url"):
        Judge("smollm2")


def test_token_counts_prefer_the_servers_usage_fields(fake_embedder) -> None:
    from types import SimpleNamespace

    from rag.answer import OpenAIAnswerer, _usage
    from rag.chat import Answer
    from rag.eval_answers import _tokens

    assert _usage(SimpleNamespace(usage=SimpleNamespace(prompt_tokens=120, completion_tokens=7))) == {
        "prompt_tokens": 120, "completion_tokens": 7}
    assert _usage(SimpleNamespace(usage=None)) is None and _usage(SimpleNamespace()) is None
    llm = OpenAIAnswerer("m", base_url="http://127.0.0.1:9/v1")
    hit = Hit(1, 1.0, 0, "Zebras have stripes.", "zebra", "", None, 0, 20, "")
    answer = Answer("what do zebras have", "what do zebras have", "Stripes [1].", sources=[hit])
    llm.last_usage = {"prompt_tokens": 120, "completion_tokens": 7}
    assert _tokens(llm, answer) == (120, 7, "server")
    llm.last_usage = None  # a server that sends no usage: tiktoken counts of the same messages
    prompt, completion, source = _tokens(llm, answer)
    assert source == "tiktoken" and completion == 5 and prompt > 50  # "Stripes [1]." is 5 cl100k tokens
    extractive = make_answerers(fake_embedder, ["extractive"])["extractive"]
    assert _tokens(extractive, answer) == (None, 5, "tiktoken (no prompt)")
