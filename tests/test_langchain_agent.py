"""The README's agent example: the store's retriever as the tool of a ``langchain`` v1 agent
(``create_agent``), with a deterministic fake chat model instead of ChatOpenAI. No network:
LangSmith tracing is off and sockets are blocked for the whole run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import create_retriever_tool

from rag.langchain import CompressedVectorStore

TEXTS = {
    "zebra": "Zebras have black and white stripes that confuse biting flies.",
    "volcano": "Volcanoes erupt molten lava when magma breaks through the crust.",
    "sax": "The saxophone is a woodwind instrument with a single reed.",
    "glacier": "Glaciers carve deep valleys as compacted ice creeps downhill.",
}


class ToolCallingFakeModel(GenericFakeChatModel):
    """First turn: calls the first bound tool with the user's question. After a tool result:
    answers by quoting the first passage the tool returned. Nothing is canned."""

    messages: Iterator[AIMessage | str] = iter(())
    tool_names: list[str] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingFakeModel:  # type: ignore[override]
        self.tool_names = [t.name for t in tools]
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        if isinstance(messages[-1], ToolMessage):
            passage = str(messages[-1].content).split("\n\n")[0]
            reply = AIMessage(content=f"According to the notes: {passage}")
        else:
            question = next(m.content for m in reversed(messages) if isinstance(m, HumanMessage))
            reply = AIMessage(content="", tool_calls=[{"name": self.tool_names[0], "args": {"query": question}, "id": "call-1"}])
        return ChatResult(generations=[ChatGeneration(message=reply)])


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """LangSmith tracing off and every non-Unix socket refused while the agent runs."""
    import pytest_socket

    for var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
        monkeypatch.setenv(var, "false")
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()


def test_store_retriever_is_the_tool_of_a_langchain_agent(tmp_path: Path, fake_embedder, offline) -> None:  # type: ignore[no-untyped-def]
    from langchain.agents import create_agent

    docs = [Document(page_content=t, metadata={"source": f"{k}.txt"}, id=k) for k, t in TEXTS.items()]
    vs = CompressedVectorStore.from_documents(docs, fake_embedder, store_dir=tmp_path / "notes")
    tool = create_retriever_tool(vs.as_retriever(search_kwargs={"k": 2}), "search_notes", "Search the notes; returns passages.")
    model = ToolCallingFakeModel()
    agent = create_agent(model, tools=[tool], system_prompt="Answer from the notes only; search them first.")

    question = "Where does lava come from when magma breaks the crust?"
    messages = agent.invoke({"messages": [{"role": "user", "content": question}]})["messages"]

    assert model.tool_names == ["search_notes"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    assert [(c["name"], c["args"]) for c in calls] == [("search_notes", {"query": question})]
    (result,) = [m for m in messages if isinstance(m, ToolMessage)]
    assert result.content.startswith(TEXTS["volcano"])
    assert messages[-1].content == f"According to the notes: {TEXTS['volcano']}"
