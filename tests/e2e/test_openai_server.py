"""The OpenAI path end to end: the ``openai`` client against a real OpenAI-compatible server
(llama-cpp-python serving SmolLM2-135M-Instruct) on loopback, streaming included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from indexing.errors import GenerationError
from rag.answer import OpenAIAnswerer
from rag.chat import RagChat
from rag.prompt import Turn
from rag.retrieve import Retriever


@pytest.fixture(scope="module")
def chat(small_store: Path, llm_server: str) -> RagChat:
    retriever = Retriever.open(small_store)
    return RagChat(retriever, OpenAIAnswerer("smollm2", base_url=llm_server, answer_tokens=96), k=3)


def test_answer_streams_from_the_server(chat: RagChat) -> None:
    updates = [a.text for a in chat.stream("Who invented the saxophone?")]
    assert len(updates) >= 5, "tokens should arrive as a stream, not one block"
    assert updates[-1].strip(), "the model produced no text"
    assert all(later.startswith(earlier) for earlier, later in zip(updates, updates[1:]))


def test_sources_reach_the_model_and_come_back(chat: RagChat) -> None:
    answer = chat.ask("Who invented the saxophone?")
    assert any("Adolphe Sax" in h.text for h in answer.sources)
    assert answer.answerer == f"smollm2 via {chat.answerer.base_url}"


def test_follow_up_is_condensed_by_the_model(chat: RagChat) -> None:
    history = [Turn("user", "Who invented the saxophone?"), Turn("assistant", "Adolphe Sax [1]")]
    query = chat.answerer.condense("When was that?", history)
    assert query.strip() and query != "When was that?"


def test_cli_ask_json_through_the_server(small_store: Path, llm_server: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rag.cli", "ask", "What do glaciers carve?", "--store", str(small_store),
         "--llm", "smollm2", "--base-url", llm_server, "-k", "2", "--json"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    data = json.loads(out.stdout)
    assert data["answer"].strip() and data["answerer"].startswith("smollm2")
    assert any("Glaciers" in s["text"] for s in data["sources"])
    assert {"source", "text", "score"} <= set(data["sources"][0])


def test_unreachable_server_is_a_clear_error(small_store: Path) -> None:
    answerer = OpenAIAnswerer("smollm2", base_url="http://127.0.0.1:9/v1", timeout=5)
    chat = RagChat(Retriever.open(small_store), answerer)
    with pytest.raises(GenerationError, match="smollm2.*127.0.0.1:9"):
        chat.ask("anything?")


def test_openai_embeddings_index_and_search(tmp_path: Path, llm_server: str) -> None:
    """``--model openai/<name>`` embeds through the openai client (here: llama.cpp's /v1/embeddings)."""
    from indexing.build import index_paths
    from indexing.embed import OpenAIEmbedder

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Zebras have black and white stripes.", encoding="utf-8")
    (docs / "b.txt").write_text("Volcanoes erupt molten lava and ash.", encoding="utf-8")
    embedder = OpenAIEmbedder("smollm2", base_url=llm_server)
    report = index_paths([docs], tmp_path / "store", embedder=embedder)
    assert (report.manifest.model, report.manifest.dim) == ("openai/smollm2", embedder.dim)
    hits = Retriever.open(tmp_path / "store", embedder=embedder).search("stripes on zebras", k=2)
    assert len(hits) == 2 and {h.source for h in hits} == {"docs/a.txt", "docs/b.txt"}
