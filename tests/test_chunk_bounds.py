"""indexing.split / indexing.chunk: the same chunks as LangChain's RecursiveCharacterTextSplitter on
normal text, exact offsets, and bounded cost on pathological text (issue 10, item 7): a
multi-megabyte single line chunks about as fast as normal text of the same size, a per-file chunk
limit skips a file with its reason."""

from __future__ import annotations

import base64
import random
import signal
import time
import tracemalloc
from pathlib import Path

import pytest

import indexing.chunk
from indexing.chunk import ChunkSettings, _splitter, chunk_document
from indexing.errors import LoadError
from indexing.load import Document, Page
from indexing.split import LONG_RUN_CHARS, RecursiveTokenSplitter

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ChunkSettings()
VOCAB = ("the of and to in is was for on that with as by at from stripes zebra savanna volcano basalt glacier "
         "fjord reed saxophone comet coral polyp magma crust herd dawn plains telemetry gradient tokenizer "
         "überprüfung café naïve 東京 données").split()


def words(n: int, seed: int, paragraph: int | None = None) -> str:
    """n seeded words; a blank line after every ``paragraph`` words (None: one single line)."""
    picked = random.Random(seed).choices(VOCAB, k=n)
    if not paragraph:
        return " ".join(picked)
    return "\n\n".join(" ".join(picked[i : i + paragraph]) for i in range(0, n, paragraph))


def langchain_chunks(text: str, settings: ChunkSettings = SETTINGS) -> list[str]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    return RecursiveCharacterTextSplitter.from_tiktoken_encoder(
        encoding_name=settings.encoding, chunk_size=settings.chunk_tokens, chunk_overlap=settings.overlap,
        strip_whitespace=True,
    ).split_text(text)


def normal_texts() -> list[str]:
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpora/python-reference").glob("*.md"))]
    rng = random.Random(3)
    texts += [
        words(3000, 1, paragraph=40),  # short paragraphs, merged
        words(3000, 2, paragraph=700),  # paragraphs over the chunk size: split at spaces, with overlap
        words(2000, 3).replace(" ", "\n", 300),  # single newlines, then one long line
        "".join(rng.choice("東京都の天気は晴れです。") for _ in range(3000)),  # no spaces: character level
        "x" * 5000 + "\n\n" + "short tail",  # a separator-free run under LONG_RUN_CHARS
        "\n\n\n\n  lead\n\n\n\n\n" + words(500, 4, paragraph=3) + "\n \n\t\n",
    ]
    return texts


def test_same_chunks_as_langchain_on_normal_text():
    splitter = _splitter(SETTINGS)
    for text in normal_texts():
        pieces = list(splitter.split(text))
        assert [t for _, t in pieces] == langchain_chunks(text)
        starts = [s for s, _ in pieces]
        assert starts == sorted(starts) and all(text[s : s + len(t)] == t for s, t in pieces)


def test_same_chunks_as_langchain_with_other_sizes():
    for chunk_tokens, overlap in ((8, 0), (64, 16), (512, 100)):
        settings = ChunkSettings(chunk_tokens, overlap)
        splitter = RecursiveTokenSplitter(chunk_tokens, overlap, indexing.chunk._encoding(settings.encoding))
        text = words(4000, 5, paragraph=90)
        assert [t for _, t in splitter.split(text)] == langchain_chunks(text, settings)


def test_special_token_text_is_plain_text():
    """LangChain's tiktoken length refuses "<|endoftext|>" (ValueError); a document may contain it."""
    doc = Document("/d.txt", "d.txt", "d", "0", [Page(None, "Before <|endoftext|> after. " * 50)])
    chunks = chunk_document(doc)
    assert chunks and "<|endoftext|>" in chunks[0].text


def line_cases(size: int) -> dict[str, str]:
    """Text of about ``size`` characters: normal paragraphs, one line of words, one run without separators."""
    normal = words(size // 6, 11, paragraph=60)
    return {"normal": normal, "one line": normal.replace("\n\n", " "),
            "no separators": base64.b64encode(random.Random(5).randbytes(size * 3 // 4)).decode("ascii")}


def timed_chunks(text: str) -> tuple[float, int, int]:
    """(seconds, chunks, tokenizer calls) of ``chunk_document`` on one page of ``text``."""
    doc = Document("/d.txt", "d.txt", "d", "0", [Page(None, text)])
    splitter = _splitter(SETTINGS)
    calls = getattr(splitter, "tokenizer_calls", 0)
    t0 = time.perf_counter()
    n = len(chunk_document(doc, SETTINGS))
    return time.perf_counter() - t0, n, getattr(splitter, "tokenizer_calls", 0) - calls


def test_a_huge_single_line_chunks_as_fast_as_normal_text():
    """5 MB: the single line and the separator-free run cost about what normal text of the same
    size costs (measured in this test, best of 2), with no more tokenizer calls. Before, the single
    line took minutes (a quadratic offset search), so an alarm ends the test instead of a hang."""
    cases = line_cases(5_000_000)
    timings = {}

    def too_slow(signum, frame):  # type: ignore[no-untyped-def]
        raise TimeoutError("chunking did not finish: not linear")

    old = signal.signal(signal.SIGALRM, too_slow)
    try:
        for name, text in cases.items():
            signal.alarm(120)
            timings[name] = min((timed_chunks(text) for _ in range(2)), key=lambda r: r[0])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    base_s, base_n, base_calls = timings["normal"]
    for name in ("one line", "no separators"):
        seconds, n, calls = timings[name]
        assert seconds < 6 * base_s + 1.0, f"{name}: {seconds:.2f}s against {base_s:.2f}s for normal text"
        assert calls <= base_calls, f"{name}: {calls} tokenizer calls, normal text {base_calls}"
        assert n > 0.5 * base_n or name == "no separators"


def test_huge_single_line_memory_is_bounded():
    """Streaming: peak Python memory while chunking a line does not grow with the line (1 MB vs 3 MB)."""
    text = words(500_000, 11)  # about 3 MB on one line
    peaks = []
    for part in (text[: len(text) // 3], text):
        assert len(part) > LONG_RUN_CHARS
        splitter = RecursiveTokenSplitter(SETTINGS.chunk_tokens, SETTINGS.overlap, indexing.chunk._encoding(SETTINGS.encoding))
        tracemalloc.start()
        try:
            kept = sum(len(t) for _, t in splitter.split(part))  # chunks are not kept
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert kept > len(part)  # overlapping windows cover the whole line
    assert peaks[1] < 1.3 * peaks[0] and peaks[1] < 32e6, f"peaks {peaks[0] / 1e6:.1f} and {peaks[1] / 1e6:.1f} MB"


def test_windows_cover_the_line_with_exact_offsets():
    text = words(60_000, 7)  # about 400 kB on one line
    splitter = _splitter(SETTINGS)
    pieces = list(splitter.split(text))
    enc = indexing.chunk._encoding(SETTINGS.encoding)
    assert all(text[s : s + len(t)] == t for s, t in pieces)
    assert all(len(enc.encode(t)) <= SETTINGS.chunk_tokens + 2 for _, t in pieces)
    assert pieces[0][0] == 0 and pieces[-1][0] + len(pieces[-1][1]) == len(text.rstrip())
    assert all(b[0] < a[0] + len(a[1]) for a, b in zip(pieces, pieces[1:]))  # consecutive windows overlap


def test_per_file_chunk_limit_is_a_load_error(monkeypatch):
    doc = Document("/d.txt", "d.txt", "d", "0", [Page(None, words(5000, 9, paragraph=50))])
    assert len(chunk_document(doc)) > 3
    with pytest.raises(LoadError, match="more than 3 chunks of 256 tokens, over the per-file chunk limit"):
        chunk_document(doc, max_chunks=3)
    monkeypatch.setattr(indexing.chunk, "MAX_CHUNKS_PER_FILE", 3)
    with pytest.raises(LoadError, match="per-file chunk limit"):
        chunk_document(doc)


def test_rag_index_skips_a_file_over_the_chunk_limit(tmp_path, monkeypatch, fake_embedder, capsys):
    import indexing.build
    from rag.cli import EXIT_SKIPPED, main

    monkeypatch.setattr(indexing.build, "load_embedder", lambda model=None, base_url=None, backend="auto": fake_embedder)
    monkeypatch.setattr(indexing.chunk, "MAX_CHUNKS_PER_FILE", 4)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "small.txt").write_text("Zebras graze on the savanna.", encoding="utf-8")
    (docs / "big.txt").write_text(words(20_000, 9), encoding="utf-8")
    assert main(["index", str(docs), "--store", str(tmp_path / "s"), "--model", "fake/hash-64"]) == EXIT_SKIPPED
    err = capsys.readouterr().err
    assert f"skipped {docs / 'big.txt'}: more than 4 chunks of 256 tokens, over the per-file chunk limit" in err
