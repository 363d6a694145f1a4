"""A chat turn: condense the question, retrieve, generate a streamed answer, collect citations."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexing.errors import ConfigError
from rag.answer import Answerer
from rag.prompt import Turn
from rag.fusion import DEFAULT_MODE
from rag.retrieve import DEFAULT_K, DEFAULT_OVERSAMPLE, Hit, Retriever

_CITATION = re.compile(r"\[(\d{1,3})\]")


@dataclass
class Answer:
    """An answer (possibly still streaming) and the sources it was given; [i] is sources[i-1]."""

    question: str
    query: str
    text: str = ""
    sources: list[Hit] = field(default_factory=list)
    answerer: str = ""
    done: bool = False
    mode: str = DEFAULT_MODE  # which search found the sources: hybrid, dense or keyword

    @property
    def cited(self) -> list[int]:
        """Source numbers cited in the text, in order of first use, valid ones only."""
        seen: list[int] = []
        for m in _CITATION.finditer(self.text):
            n = int(m.group(1))
            if 1 <= n <= len(self.sources) and n not in seen:
                seen.append(n)
        return seen

    def to_dict(self) -> dict[str, Any]:
        cited = set(self.cited)
        return {
            "question": self.question,
            "query": self.query,
            "answer": self.text,
            "answerer": self.answerer,
            "mode": self.mode,
            "sources": [
                {"n": i, "cited": i in cited, "source": h.source, "title": h.title, "page": h.page,
                 "start": h.start, "end": h.end, "score": h.score, "text": h.text}
                for i, h in enumerate(self.sources, start=1)
            ],
        }


class RagChat:
    """Retrieval-augmented answers over one store."""

    def __init__(self, retriever: Retriever, answerer: Answerer, k: int = DEFAULT_K, oversample: int = DEFAULT_OVERSAMPLE,
                 mode: str = DEFAULT_MODE) -> None:
        self.retriever, self.answerer, self.k, self.oversample, self.mode = retriever, answerer, k, oversample, mode

    def stream(
        self, question: str, history: Sequence[Turn] = (), k: int | None = None, oversample: int | None = None,
        mode: str | None = None,
    ) -> Iterator[Answer]:
        """Yield the growing answer after each piece of text; the last one has ``done=True``."""
        if not question or not question.strip():
            raise ConfigError("the question is empty: type a question about the documents")
        query = self.answerer.condense(question, history)
        mode = self.retriever.resolve_mode(mode or self.mode)  # what actually answered
        hits = self.retriever.search(query, k=k or self.k, oversample=oversample or self.oversample, mode=mode)
        used, pieces = self.answerer.generate(question, hits, history)
        answer = Answer(question, query, sources=used, answerer=self.answerer.name, mode=mode)
        for piece in pieces:
            answer.text += piece
            yield answer
        answer.done = True
        yield answer

    def ask(self, question: str, history: Sequence[Turn] = (), k: int | None = None, oversample: int | None = None,
            mode: str | None = None) -> Answer:
        """The finished answer (the last one ``stream`` yields)."""
        return deque(self.stream(question, history, k, oversample, mode), maxlen=1)[0]
