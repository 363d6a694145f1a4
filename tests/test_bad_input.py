"""Bad command-line input gets one clear line, never a traceback (issue 10, items 11 and 13):
huge or malformed -k/--oversample/--chunk-tokens, empty queries, terminal escapes in file names
and text, undecodable file names, and a reader that closes the pipe early. In-process with the
fake embedder, plus one real subprocess for the closed pipe."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.cli import EXIT_ERROR, EXIT_SKIPPED, main
from rag.retrieve import Retriever

MODEL = "fake/hash-64"
ROOT = Path(__file__).resolve().parents[1]
ESC = "\x1b"


@pytest.fixture(autouse=True)
def fake_models(monkeypatch, fake_embedder):
    import indexing.build
    import indexing.embed
    import rag.retrieve

    for module in (indexing.embed, indexing.build, rag.retrieve):
        monkeypatch.setattr(module, "load_embedder", lambda model=MODEL, base_url=None, backend="auto": type(fake_embedder)())


def rag(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(tmp_path, docs_folder, capsys) -> Path:
    store = tmp_path / "store"
    assert rag(capsys, "index", str(docs_folder), "--store", str(store), "--model", MODEL)[0] == 0
    return store  # 5 chunks


@pytest.mark.parametrize("flags, note", [
    (["-k", "1000000000"], "note: -k 1000000000 is more than the 5 chunks in the store"),
    (["-k", "9223372036854775807"], "note: -k 9223372036854775807 is more than the 5 chunks"),
    (["--exact", "-k", "1000000000"], "note: -k 1000000000 is more than the 5 chunks"),
    (["--oversample", "1000000000"], "note: -k 5 x --oversample 1000000000 is more than the 5 chunks"),
])
def test_huge_k_and_oversample_are_capped_at_the_store_size(store, capsys, flags, note):
    code, out, err = rag(capsys, "search", "zebras graze", "--store", str(store), *flags, "--json")
    assert code == 0 and len(json.loads(out)) == 5
    assert err.startswith(note) and len(err.strip().splitlines()) == 1


def test_ask_caps_k_too(store, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code, out, err = rag(capsys, "ask", "what confuses biting flies?", "--store", str(store), "-k", "1000000000", "--json")
    assert code == 0 and len(json.loads(out)["sources"]) <= 5
    assert "note: -k 1000000000 is more than the 5 chunks" in err


def test_library_caps_silently(store):
    r = Retriever.open(store)
    xq = r.embedder.embed_queries(["zebras"])  # (1, d)
    for k, oversample, exact in ((10**9, 16, False), (5, 10**9, False), (2**63 - 1, 1, True)):
        D, I = r.search_vectors(xq, k, oversample, exact)
        assert D.shape == I.shape == (1, 5) and sorted(I[0].tolist()) == [0, 1, 2, 3, 4]
    assert len(r.search("zebras", k=10**9)) == 5


@pytest.mark.parametrize("cmd, flag, value", [
    ("search", "-k", "1e9"), ("search", "--oversample", "1e9"), ("search", "-k", "0"), ("search", "-k", "-5"),
    ("ask", "-k", "1e9"), ("index", "--chunk-tokens", "1e12"),
])
def test_non_integer_or_non_positive_numbers_are_usage_errors(store, capsys, cmd, flag, value):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "zebras" if cmd != "index" else str(store), "--store", str(store), flag, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument {flag}" in err and "Traceback" not in err


def test_chunk_tokens_out_of_range_is_one_line(tmp_path, docs_folder, capsys):
    code, _, err = rag(capsys, "index", str(docs_folder), "--store", str(tmp_path / "s"), "--chunk-tokens", "1000000000000")
    assert code == EXIT_ERROR and err.strip() == "error: chunk_tokens=1000000000000 is too large; use at most 8192"
    assert not (tmp_path / "s" / "manifest.json").exists()


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_is_an_error_not_an_answer(store, capsys, query):
    for cmd in ("search", "ask"):
        code, out, err = rag(capsys, cmd, query, "--store", str(store))
        assert (code, out) == (EXIT_ERROR, "") and err.startswith("error: the ") and "is empty" in err
    from indexing.errors import ConfigError

    with pytest.raises(ConfigError, match="empty"):
        Retriever.open(store).search(query)


def test_terminal_escapes_are_shown_not_sent(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / f"evil{ESC}[2J.txt").write_text(f"Zebras graze {ESC}]0;pwned\x07 on the savanna \u202eevil.", encoding="utf-8")
    (docs / f"bad{ESC}[31m.png").write_bytes(b"x")
    store = str(tmp_path / "store")
    code, out, err = rag(capsys, "index", str(docs), "--store", store, "--model", MODEL)
    assert code == EXIT_SKIPPED and ESC not in out + err and "bad\\x1b[31m.png: unsupported type .png" in err
    code, out, err = rag(capsys, "search", "zebras graze", "--store", store)
    assert code == 0 and ESC not in out and "\x07" not in out and "\u202e" not in out
    assert "evil\\x1b[2J.txt" in out and "\\x1b]0;pwned\\x07" in out and "\\u202eevil" in out
    code, out, _ = rag(capsys, "search", "zebras graze", "--store", store, "--json")  # --json stays exact
    hit = json.loads(out)[0]
    assert hit["source"] == f"docs/evil{ESC}[2J.txt" and f"{ESC}]0;pwned\x07" in hit["text"]
    code, out, err = rag(capsys, "ask", "zebras graze", "--store", store)
    assert code == 0 and ESC not in out and "\\x1b" in out


def test_clean_keeps_ordinary_text():
    from rag.cli_util import clean

    text = "naïve café — 東京\n\tindented [1]"
    assert clean(text) == text
    assert clean("a\x00b\x7fc\x9bd") == "a\\x00b\\x7fc\\x9bd"


def test_json_output_survives_undecodable_bytes(capsys):
    from rag.cli_util import print_json

    print_json({"store": "stores/\udcff\udcfe", "n": 1})  # a --store argument that was not UTF-8
    out = capsys.readouterr().out
    assert json.loads(out) == {"store": "stores/\udcff\udcfe", "n": 1} and "\\udcff" in out


def test_undecodable_file_name_is_skipped_not_fatal(tmp_path, docs_folder, capsys):
    fd = os.open(os.fsencode(docs_folder) + b"/\xff\xfe.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"Bytes that are no UTF-8 file name.")
    os.close(fd)
    code, out, err = rag(capsys, "index", str(docs_folder), "--store", str(tmp_path / "s"), "--model", MODEL, "--json")
    assert code == EXIT_SKIPPED
    summary = json.loads(out)
    assert summary["added"] == 4 and summary["skipped_files"] == [
        {"path": f"{docs_folder}/\\xff\\xfe.txt", "reason": "file name is not valid UTF-8; rename the file to index it"}]
    assert f"skipped {docs_folder}/\\xff\\xfe.txt: file name is not valid UTF-8" in err


def test_closed_pipe_ends_quietly_in_process(store, capsys, monkeypatch):
    class ClosedPipe(io.StringIO):
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["search", "zebras", "--store", str(store), "--json"]) == EXIT_ERROR


def test_closed_pipe_ends_quietly_in_a_real_process(store):
    """`rag info --json | grep -q x`: the reader is gone before rag writes; no traceback follows."""
    r, w = os.pipe()
    os.close(r)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run([sys.executable, "-m", "rag.cli", "info", "--store", str(store), "--json"],
                              stdout=w, stderr=subprocess.PIPE, env=env, timeout=120, cwd=ROOT)
    finally:
        os.close(w)
    assert proc.returncode == EXIT_ERROR and proc.stderr == b""


def test_search_vectors_shape_is_unchanged_for_small_k(store):
    r = Retriever.open(store)
    D, I = r.search_vectors(np.asarray(r.embedder.embed_queries(["zebras", "lava"])), 3)
    assert D.shape == I.shape == (2, 3)
