"""rag.cli in-process: `rag index/search/info` with the fake embedder in place of any model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.cli import EXIT_ERROR, EXIT_SKIPPED, main

MODEL = "fake/hash-64"


@pytest.fixture
def asked(monkeypatch, fake_embedder) -> list[str]:
    """Every embedder load returns the fake; the list records which model names were asked for."""
    import indexing.build
    import indexing.embed
    import rag.retrieve

    names: list[str] = []

    def load_embedder(model: str = MODEL, base_url: str | None = None, backend: str = "auto"):  # type: ignore[no-untyped-def]
        names.append(model)
        fake = type(fake_embedder)()
        fake.last_backend = f"fake-{backend}"  # what `rag index` reports as embedded_with
        return fake

    for module in (indexing.embed, indexing.build, rag.retrieve):
        monkeypatch.setattr(module, "load_embedder", load_embedder)
    return names


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(tmp_path, docs_folder, asked, capsys) -> Path:
    store = tmp_path / "store"
    code, out, _ = run(capsys, "index", str(docs_folder), "--store", str(store), "--model", MODEL, "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary == {
        "store": str(store), "chunks": 5, "added": 4, "updated": 0, "removed": 0, "unchanged": 0,
        "skipped": 0, "skipped_files": [], "embedded_with": "fake-auto",
    }
    return store


def test_index_twice_reports_unchanged(store, docs_folder, asked, capsys):
    code, out, _ = run(capsys, "index", str(docs_folder), "--store", str(store), "--json")
    assert code == 0
    summary = json.loads(out)
    assert (summary["unchanged"], summary["added"], summary["chunks"]) == (4, 0, 5)
    assert asked == [MODEL]  # the second run had nothing to embed: no model loaded


def test_embed_backend_flag_reaches_the_embedder(tmp_path, docs_folder, asked, capsys):
    code, out, _ = run(capsys, "index", str(docs_folder), "--store", str(tmp_path / "s"), "--embed-backend", "torch", "--json")
    assert code == 0 and json.loads(out)["embedded_with"] == "fake-torch"
    with pytest.raises(SystemExit):
        run(capsys, "index", str(docs_folder), "--store", str(tmp_path / "s"), "--embed-backend", "onnx")


def test_index_plain_text_summary(tmp_path, docs_folder, asked, capsys):
    code, out, _ = run(capsys, "index", str(docs_folder), "--store", str(tmp_path / "s"), "--model", MODEL)
    assert code == 0
    assert out.strip() == f"store={tmp_path / 's'} chunks=5 added=4 updated=0 removed=0 unchanged=0 skipped=0 embedded_with=fake-auto"


def test_search_json(store, asked, capsys):
    code, out, _ = run(capsys, "search", "zebras graze on the savanna", "--store", str(store), "-k", "3", "--json")
    assert code == 0
    hits = json.loads(out)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {"rank", "score", "text", "source"} <= set(hits[0])
    assert hits[0]["source"] == "docs/zebra.txt" and "Zebras graze" in hits[0]["text"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert asked == [MODEL, MODEL]  # index, then search: both with the store's model


def test_search_exact_and_plain_text(store, asked, capsys):
    code, out, _ = run(capsys, "search", "icebergs drift on ocean currents", "--store", str(store), "--exact", "--json")
    assert code == 0 and json.loads(out)[0]["source"] == "docs/ice.pdf" and json.loads(out)[0]["page"] == 2
    code, out, _ = run(capsys, "search", "icebergs drift on ocean currents", "--store", str(store), "-k", "1")
    assert code == 0
    assert out.startswith(" 1. ") and "docs/ice.pdf p.2 [" in out and "Icebergs calve" in out


def test_info_json(store, capsys):
    code, out, _ = run(capsys, "info", "--store", str(store), "--json")
    assert code == 0
    info = json.loads(out)
    assert {k: info[k] for k in ("chunks", "model", "dim", "pca_dims", "dtype", "bytes_per_vector")} == {
        "chunks": 5, "model": MODEL, "dim": 64, "pca_dims": 16, "dtype": "float8", "bytes_per_vector": 16,
    }
    gen_dir = store / info["generation"]
    assert info["store_bytes"] == sum(f.stat().st_size for f in gen_dir.iterdir())
    assert info["compression_ratio"] == 16.0  # 64 float32 dims (256 bytes) -> 16 float8 codes


def test_info_plain_text(store, capsys):
    code, out, _ = run(capsys, "info", "--store", str(store))
    assert code == 0 and any(line.split(":", 1)[0].strip() == "model" and MODEL in line for line in out.splitlines())


def test_skipped_files_exit_3(tmp_path, docs_folder, asked, capsys):
    (docs_folder / "empty.txt").write_bytes(b"")
    code, out, err = run(capsys, "index", str(docs_folder), "--store", str(tmp_path / "s"), "--model", MODEL, "--json")
    assert code == EXIT_SKIPPED == 3
    summary = json.loads(out)
    assert summary["added"] == 4 and summary["skipped"] == 1
    assert summary["skipped_files"] == [{"path": str(docs_folder / "empty.txt"), "reason": "empty file"}]
    assert f"skipped {docs_folder / 'empty.txt'}: empty file" in err


@pytest.mark.parametrize("argv", [["search", "zebras"], ["info"]])
def test_missing_store_is_an_error(tmp_path, asked, capsys, argv):
    missing = tmp_path / "nowhere"
    code, out, err = run(capsys, *argv, "--store", str(missing))
    assert code == EXIT_ERROR == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and str(missing) in line and "rag index" in line


def test_other_model_on_existing_store_is_an_error(store, docs_folder, asked, capsys):
    code, _, err = run(capsys, "index", str(docs_folder), "--store", str(store), "--model", "fake/other")
    assert code == EXIT_ERROR
    assert err.startswith("error: ") and "'fake/hash-64'" in err and "'fake/other'" in err


def test_changed_compression_needs_refit(store, docs_folder, asked, capsys):
    code, _, err = run(capsys, "index", str(docs_folder), "--store", str(store), "--dtype", "float16")
    assert code == EXIT_ERROR and "dtype=float8" in err and "--refit" in err
    code, out, _ = run(capsys, "index", str(docs_folder), "--store", str(store), "--model", MODEL,
                       "--dtype", "float16", "--refit", "--json")
    assert code == 0 and json.loads(out)["added"] == 4
    code, out, _ = run(capsys, "info", "--store", str(store), "--json")
    assert (json.loads(out)["dtype"], json.loads(out)["bytes_per_vector"]) == ("float16", 32)


def test_relative_paths_as_in_the_readme(tmp_path, docs_folder, asked, capsys, monkeypatch):
    """`rag index docs --store stores/x` then `rag search ... --store stores/x`, from the folder."""
    monkeypatch.chdir(docs_folder.parent)
    code, _, _ = run(capsys, "index", docs_folder.name, "--store", "stores/x", "--model", MODEL)
    assert code == 0
    code, out, _ = run(capsys, "search", "zebras stripes", "--store", "stores/x", "-k", "1", "--json")
    assert code == 0 and "Zebras" in json.loads(out)[0]["text"]
    code, out, _ = run(capsys, "info", "--store", "stores/x", "--json")
    assert code == 0 and json.loads(out)["chunks"] == 5
