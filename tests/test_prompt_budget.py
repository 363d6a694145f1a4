"""The prompt's source budget (``source_tokens``, ``--source-tokens``) and its fixed-prefix layout:
hand-checkable token counts from tiktoken, no model, no network."""

from __future__ import annotations

import pytest

from indexing.chunk import count_tokens
from rag.eval_answers import make_answerers
from rag.prompt import SOURCES_HEADER, SYSTEM, build_messages, format_source
from rag.retrieve import Hit


def hit(rank: int, words: int) -> Hit:
    return Hit(rank, 1.0 - rank / 10, rank, " ".join(["zebra"] * words), f"doc{rank}.txt", "", None, 0, 1, "")


def test_the_source_cap_keeps_the_top_sources_in_rank_order() -> None:
    hits = [hit(1, 100), hit(2, 100), hit(3, 10), hit(4, 100)]
    cost = [count_tokens(format_source(i, h)) for i, h in enumerate(hits, start=1)]  # what the cap counts
    _, uncapped = build_messages("what do zebras eat", hits)
    assert uncapped == hits
    _, used = build_messages("what do zebras eat", hits, source_tokens=cost[0] + cost[1])
    assert used == hits[:2]
    # source 3 is small enough for what is left, but the cap stops at the first source over it:
    # a less relevant chunk never takes the place of a more relevant one
    _, used = build_messages("what do zebras eat", hits, source_tokens=cost[0] + cost[1] - 1)
    assert used == hits[:1]


def test_the_top_source_is_kept_even_over_the_cap_but_never_over_the_context() -> None:
    hits = [hit(1, 300), hit(2, 5)]
    _, used = build_messages("q?", hits, source_tokens=10)
    assert used == hits[:1]  # an answer always has its best source when the context allows
    _, used = build_messages("q?", hits, context_tokens=600, answer_tokens=200, source_tokens=10)
    # 300 words do not fit 600 - 200 - system - question - 64: the context wins, and the next source
    # that fits becomes the first one kept
    assert used == hits[1:]


def test_the_fixed_part_comes_first_so_a_server_can_reuse_it() -> None:
    a, _ = build_messages("what do zebras eat", [hit(1, 20)])
    b, _ = build_messages("who invented the saxophone", [hit(2, 30), hit(3, 5)])
    assert a[0] == b[0] == {"role": "system", "content": SYSTEM}
    assert a[-1]["content"].startswith(SOURCES_HEADER) and b[-1]["content"].startswith(SOURCES_HEADER)
    assert a[-1]["content"].endswith("Question: what do zebras eat")  # the question, which varies, comes last


def test_eval_flags_reach_the_model_answerers_only(monkeypatch, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RAG_SOURCE_TOKENS", raising=False)
    monkeypatch.delenv("RAG_CONTEXT_TOKENS", raising=False)
    answerers = make_answerers(fake_embedder, ["extractive", "smollm2"], "http://127.0.0.1:9/v1",
                               context_tokens=2048, source_tokens=600)
    llm = answerers["smollm2"]
    assert (llm.context_tokens, llm.source_tokens) == (2048, 600)  # type: ignore[attr-defined]
    assert not hasattr(answerers["extractive"], "source_tokens")  # the extractive answerer reads every hit
    default = make_answerers(fake_embedder, ["smollm2"], "http://127.0.0.1:9/v1")["smollm2"]
    assert (default.context_tokens, default.source_tokens) == (8192, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("flag", ["--source-tokens", "--context-tokens"])
def test_budget_flags_must_be_positive(flag: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from rag.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dataset", "x", "--answers", "1", flag, "0"])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_rag_eval_passes_the_budget_flags_to_the_answerers(tmp_path, monkeypatch, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    import rag.eval_answers
    from rag.cli import main
    from tests.test_eval_answers import write_beir

    monkeypatch.setattr("indexing.embed.load_embedder", lambda model="", base_url=None, backend="auto": fake_embedder)
    seen: list[tuple] = []
    real = rag.eval_answers.make_answerers

    def recording(embedder, llms, base_url=None, context_tokens=None, source_tokens=None):  # type: ignore[no-untyped-def]
        seen.append((list(llms), context_tokens, source_tokens))
        return real(embedder, ["extractive"], base_url)  # no server in a unit test: the model's turn is left out

    monkeypatch.setattr(rag.eval_answers, "make_answerers", recording)
    argv = ["eval", "--dataset", str(write_beir(tmp_path / "ds")), "--model", fake_embedder.model_id,
            "--cache-dir", str(tmp_path / "c"), "--answers", "1", "--llm", "extractive,smollm2",
            "--base-url", "http://127.0.0.1:9/v1", "--context-tokens", "2048", "--source-tokens", "600"]
    assert main(argv) == 0
    assert seen == [(["extractive", "smollm2"], 2048, 600)]


def test_ask_and_chat_users_set_the_budget_in_the_environment(monkeypatch, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    from indexing.errors import ConfigError
    from rag.answer import make_answerer

    monkeypatch.setenv("RAG_SOURCE_TOKENS", "600")
    monkeypatch.setenv("RAG_CONTEXT_TOKENS", "2048")
    llm = make_answerer(fake_embedder, "smollm2", "http://127.0.0.1:9/v1")
    assert (llm.context_tokens, llm.source_tokens) == (2048, 600)  # type: ignore[attr-defined]
    monkeypatch.setenv("RAG_SOURCE_TOKENS", "six hundred")
    with pytest.raises(ConfigError, match="RAG_SOURCE_TOKENS='six hundred' must be a positive number"):
        make_answerer(fake_embedder, "smollm2", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("RAG_SOURCE_TOKENS")
    monkeypatch.delenv("RAG_CONTEXT_TOKENS")
    llm = make_answerer(fake_embedder, "smollm2", "http://127.0.0.1:9/v1")
    assert (llm.context_tokens, llm.source_tokens) == (8192, None)  # type: ignore[attr-defined]
