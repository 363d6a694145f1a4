"""Token-measured recursive splitting with exact offsets and bounded cost on pathological text.

The algorithm is LangChain's ``RecursiveCharacterTextSplitter`` as ``rag`` configured it
(``from_tiktoken_encoder``, separators ``\\n\\n``, ``\\n``, space, character; separators kept at the
start of the next piece; chunks stripped): on normal text it returns the very same chunk texts
(tests/test_chunk_bounds.py checks this against LangChain). It differs in three ways:

- every chunk comes with its character offset, tracked while splitting (LangChain's
  ``add_start_index`` searches the page for each chunk, which is quadratic on long lines);
- it is a generator: pieces are cut lazily and merged as they come, so memory stays bounded by
  the chunks kept, and a caller can stop after N chunks;
- one line longer than ``LONG_RUN_CHARS`` (a 50 MB single-line file, a base64 blob) is not split
  word by word or character by character (millions of tokenizer calls) but cut into windows of
  ``chunk_tokens`` tokens with ``overlap`` tokens of overlap, encoding ``SLICE_CHARS`` at a time.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator

import numpy as np

SEPARATORS = ("\n\n", "\n", " ", "")
LONG_RUN_CHARS = 100_000  # a line (no newline) longer than this is cut into token windows
SLICE_CHARS = 1 << 18  # characters encoded at a time when cutting token windows (bounds memory)
_WINDOW_MARGIN = 16  # tokens left at a slice end: tokenization may differ near the cut
_CACHE_MAX_CHARS = 32  # token counts of short pieces (words, characters) are cached
_CACHE_SIZE = 1 << 16

Piece = tuple[int, str]  # (character offset in the page, text)


class RecursiveTokenSplitter:
    """Cut text into chunks of at most ``size`` tokens of ``encoding`` with ``overlap`` tokens of overlap."""

    def __init__(self, size: int, overlap: int, encoding) -> None:  # type: ignore[no-untyped-def]
        self.size, self.overlap, self._enc = size, overlap, encoding
        self._cache: dict[str, int] = {}
        self._lengths: np.ndarray | None = None
        self.tokenizer_calls = 0  # how often text was encoded (tests bound it)

    def split(self, text: str) -> Iterator[Piece]:
        """Yield (offset, chunk) in text order; ``text[offset:offset + len(chunk)] == chunk``."""
        yield from self._split(text, 0, SEPARATORS)

    def tokens(self, text: str) -> int:
        if len(text) > _CACHE_MAX_CHARS:
            self.tokenizer_calls += 1
            return len(self._enc.encode(text, disallowed_special=()))
        n = self._cache.get(text)
        if n is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self.tokenizer_calls += 1
            n = self._cache[text] = len(self._enc.encode(text, disallowed_special=()))
        return n

    def _token_bytes(self) -> np.ndarray:
        """(n_vocab,) the byte length of every token id, built once per splitter (~0.1 s)."""
        if self._lengths is None:
            lengths = np.zeros(self._enc.n_vocab, np.int64)
            for i in range(self._enc.n_vocab):
                try:
                    lengths[i] = len(self._enc.decode_single_token_bytes(i))
                except KeyError:  # an unused id between the ordinary and the special tokens
                    pass
            self._lengths = lengths
        return self._lengths

    def _split(self, text: str, at: int, separators: tuple[str, ...]) -> Iterator[Piece]:
        separator, rest = separators[-1], ()
        for i, s in enumerate(separators):
            if not s:
                separator = s
                break
            if s in text:
                separator, rest = s, separators[i + 1 :]
                break
        if separator in (" ", "") and len(text) > LONG_RUN_CHARS:
            yield from self._windows(text, at)
            return
        merger = _Merger(self.size, self.overlap)
        for start, piece in _pieces(text, separator):
            n = self.tokens(piece)
            if n < self.size:
                yield from merger.add(at + start, piece, n)
                continue
            yield from merger.flush()
            if rest:
                yield from self._split(piece, at + start, rest)
            else:
                yield at + start, piece
        yield from merger.flush()

    def _windows(self, text: str, at: int) -> Iterator[Piece]:
        """Windows of ``size`` tokens, ``size - overlap`` apart, over ``text`` (one huge line)."""
        step = self.size - self.overlap
        pos = 0
        while pos < len(text):
            piece = text[pos : pos + SLICE_CHARS]
            tokens = self._enc.encode(piece, disallowed_special=())
            self.tokenizer_calls += 1
            raw = piece.encode("utf-8")
            cont = (np.frombuffer(raw, np.uint8) & 0xC0) == 0x80  # (bytes,) UTF-8 continuation bytes
            first = np.concatenate([[0], np.cumsum(~cont)])  # (bytes + 1,) characters started before each byte
            lengths = self._token_bytes()[np.asarray(tokens, np.int64)]  # (t,) UTF-8 bytes of each token
            byte_at = np.concatenate([[0], np.cumsum(lengths)])  # (t + 1,) byte offset of each token

            def char_at(t: int) -> int:  # character offset of token t, rounded down to a character start
                b = int(byte_at[t])
                return int(first[b]) - int(b < len(raw) and cont[b])

            last = pos + SLICE_CHARS >= len(text) or len(tokens) - _WINDOW_MARGIN < self.size
            t = 0
            while True:
                end = min(t + self.size, len(tokens))
                if not last and end > len(tokens) - _WINDOW_MARGIN:
                    break
                a, b = char_at(t), char_at(end)
                chunk = piece[a:b]
                stripped = chunk.strip()
                if stripped:
                    yield at + pos + a + len(chunk) - len(chunk.lstrip()), stripped
                if end >= len(tokens):
                    break
                t += step
            if last:
                return
            pos += max(1, char_at(t))


class _Merger:
    """LangChain's ``_merge_splits`` as a stream: pieces under the size are joined into chunks of at
    most ``size`` tokens, each starting with up to ``overlap`` tokens of the previous one."""

    def __init__(self, size: int, overlap: int) -> None:
        self.size, self.overlap = size, overlap
        self.current: deque[tuple[int, str, int]] = deque()  # (offset, text, tokens)
        self.total = 0

    def add(self, start: int, piece: str, n: int) -> Iterator[Piece]:
        if self.current and self.total + n > self.size:
            yield from self._join()
            while self.total > self.overlap or (self.total + n > self.size and self.total > 0):
                self.total -= self.current.popleft()[2]
        self.current.append((start, piece, n))
        self.total += n

    def flush(self) -> Iterator[Piece]:
        yield from self._join()
        self.current.clear()
        self.total = 0

    def _join(self) -> Iterator[Piece]:
        if not self.current:
            return
        text = "".join(p for _, p, _ in self.current)
        stripped = text.strip()
        if stripped:
            yield self.current[0][0] + len(text) - len(text.lstrip()), stripped


def _pieces(text: str, separator: str) -> Iterator[Piece]:
    """``text`` cut before each (non-overlapping) ``separator``, which starts the next piece;
    every character for the empty separator. Empty pieces are left out."""
    if not separator:
        yield from enumerate(text)
        return
    start = 0
    for m in re.finditer(re.escape(separator), text):
        if m.start() > start:
            yield start, text[start : m.start()]
        start = m.start()
    if start < len(text):
        yield start, text[start:]
