"""indexing.build.index_paths end to end with the fake embedder: file types, incremental runs, damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexing.chunk import ChunkSettings
from indexing.errors import ConfigError, StoreError, StoreMismatchError
from indexing.load import load_file
from indexing.manifest import MANIFEST
from indexing.store import Store
from indexing.writer import StoreWriter
from rag.retrieve import Retriever

SOURCES = ["docs/ice.pdf", "docs/music.html", "docs/volcano.md", "docs/zebra.txt"]


class Counting:
    """Wraps an embedder and records every document text it embeds."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.embedded: list[str] = []

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        self.embedded.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_queries(self, texts):  # type: ignore[no-untyped-def]
        return self.inner.embed_queries(texts)


class OtherModel:
    model_id, dim = "fake/other-32", 32


def index(folder: Path, store: Path, embedder, **kwargs):  # type: ignore[no-untyped-def]
    from indexing.build import index_paths

    return index_paths([folder], store, embedder=embedder, **kwargs)


def all_chunks(store: Path) -> list:  # type: ignore[type-arg]
    with Store.open(store) as s:
        return s.chunks(list(range(s.n)))


def generation_file(store: Path, name: str) -> Path:
    """The file of the store's only segment (or its basis) named ``name``."""
    data = json.loads((store / MANIFEST).read_text())
    return store / (data["basis"]["dir"] if name.endswith(".npy") else data["segments"][-1]["dir"]) / name


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


def test_indexes_every_file_type(docs_folder, store, fake_embedder):
    report = index(docs_folder, store, fake_embedder)
    assert sorted(report.added) == SOURCES and report.skipped == [] and report.changed
    chunks = all_chunks(store)
    assert report.chunks == len(chunks) == 5
    by_source = {s: [c for c in chunks if c.source == s] for s in SOURCES}
    pdf = by_source["docs/ice.pdf"]
    assert [(c.page, c.title) for c in pdf] == [(1, "Glacier Report"), (2, "Glacier Report")]
    assert "fjords" in pdf[0].text and "Icebergs" in pdf[1].text
    (html,) = by_source["docs/music.html"]
    assert html.title == "Saxophone Facts" and "saxophone is a woodwind" in html.text and html.page is None
    assert not any("quokka" in c.text or "beacon" in c.text for c in chunks)  # <script> is dropped
    (md,) = by_source["docs/volcano.md"]
    assert md.title == "Volcano Notes" and "magma pressure" in md.text
    (txt,) = by_source["docs/zebra.txt"]
    assert txt.title == "zebra"
    raw = (docs_folder / "zebra.txt").read_text(encoding="utf-8")
    assert raw[txt.start : txt.end] == txt.text and "black and white stripes" in txt.text
    for c in chunks:  # offsets point into the loaded page text of every file type
        pages = {p.number: p.text for p in load_file(Path(c.doc_path)).pages}
        assert pages[c.page][c.start : c.end] == c.text


def test_offsets_of_overlapping_chunks(tmp_path, store, fake_embedder):
    folder = tmp_path / "long"
    folder.mkdir()
    text = "\n\n".join(f"Paragraph {i} tells of zebra number {i} and volcano number {i * 7}." for i in range(60))
    (folder / "long.txt").write_text(text, encoding="utf-8")
    index(folder, store, fake_embedder, chunk_tokens=32, overlap=8)
    chunks = all_chunks(store)
    assert len(chunks) > 10
    for c in chunks:
        assert text[c.start : c.end] == c.text
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and chunks[-1].end == len(text)


def test_search_finds_the_right_file(docs_folder, store, fake_embedder):
    index(docs_folder, store, fake_embedder)
    with Store.open(store) as s:
        retriever = Retriever(s, fake_embedder)
        (hit,) = retriever.search("zebras graze on the savanna with stripes", k=1)
        assert hit.source == "docs/zebra.txt" and "Zebras graze on the savanna" in hit.text and hit.rank == 1
        hit = retriever.search("icebergs calve and drift on ocean currents", k=1)[0]
        assert (hit.source, hit.page) == ("docs/ice.pdf", 2)
        hits = retriever.search("zebras", k=10)
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]  # only 5 chunks exist


def modify_and_delete(folder: Path) -> None:
    with open(folder / "zebra.txt", "a", encoding="utf-8") as fh:
        fh.write("\nA foal was born under the acacia tree.\n")
    (folder / "volcano.md").unlink()


def test_incremental_run(docs_folder, store, fake_embedder):
    index(docs_folder, store, fake_embedder)
    pca_before = np.load(generation_file(store, "pca.npy"))
    modify_and_delete(docs_folder)
    counting = Counting(fake_embedder)
    report = index(docs_folder, store, counting)
    assert report.added == [] and report.updated == ["docs/zebra.txt"]
    assert sorted(report.unchanged) == ["docs/ice.pdf", "docs/music.html"]
    assert len(report.removed) == 1 and report.removed[0].endswith("volcano.md")
    chunks = all_chunks(store)
    assert {c.source for c in chunks} == {"docs/ice.pdf", "docs/music.html", "docs/zebra.txt"}
    assert not any("magma" in c.text for c in chunks)
    zebra = [c.text for c in chunks if c.source == "docs/zebra.txt"]
    assert counting.embedded == zebra and "acacia" in zebra[-1]  # only the changed file is embedded
    with Store.open(store) as s:
        assert s.manifest.generation > "g000001" and s.manifest.documents == 3
        assert set(s.documents()) == {str((docs_folder / n).resolve()) for n in ("ice.pdf", "music.html", "zebra.txt")}
        np.testing.assert_array_equal(s.pca.components, pca_before)  # basis kept
        hit = Retriever(s, fake_embedder).search("a foal born under the acacia tree", k=1)[0]
        assert hit.source == "docs/zebra.txt"
    before = json.loads((store / MANIFEST).read_text())["generation"]
    report = index(docs_folder, store, fake_embedder, refit=True)
    assert sorted(report.added) == ["docs/ice.pdf", "docs/music.html", "docs/zebra.txt"]
    assert json.loads((store / MANIFEST).read_text())["generation"] > before
    assert not np.allclose(np.load(generation_file(store, "pca.npy")), pca_before)  # refit: a new basis


def test_report_removed_uses_sources_like_the_other_lists(docs_folder, store, fake_embedder):
    index(docs_folder, store, fake_embedder)
    modify_and_delete(docs_folder)
    report = index(docs_folder, store, fake_embedder)
    assert report.removed == ["docs/volcano.md"]  # as report.added listed it on the first run


def test_unchanged_folder_writes_no_new_generation(docs_folder, store, fake_embedder):
    first = index(docs_folder, store, fake_embedder)
    before = sorted(p.name for p in store.iterdir())
    counting = Counting(fake_embedder)
    report = index(docs_folder, store, counting)
    assert not report.changed and sorted(report.unchanged) == SOURCES and counting.embedded == []
    assert report.manifest.generation == first.manifest.generation == "g000001"
    assert sorted(p.name for p in store.iterdir()) == before


def test_skipped_file_does_not_force_a_new_generation(docs_folder, store, fake_embedder):
    (docs_folder / "empty.txt").write_bytes(b"")
    index(docs_folder, store, fake_embedder)
    report = index(docs_folder, store, fake_embedder)
    assert not report.changed and len(report.skipped) == 1
    assert json.loads((store / MANIFEST).read_text())["generation"] == "g000001"


def test_another_model_is_refused(docs_folder, store, fake_embedder):
    index(docs_folder, store, fake_embedder)
    with pytest.raises(StoreMismatchError, match=r"'fake/hash-64'.*'fake/other-32'"):
        index(docs_folder, store, OtherModel())
    with pytest.raises(StoreMismatchError, match=r"'fake/hash-64'.*'fake/other-32'"):
        Store.open(store, model="fake/other-32")
    with pytest.raises(ConfigError, match=r"pca_dims=16; you asked for 8\. Pass --refit"):
        index(docs_folder, store, fake_embedder, pca_dims=8)


def corrupt_manifest(store: Path) -> None:
    (store / MANIFEST).write_text('{"format": "compressed-rag-store", ')


def flip_full_byte(store: Path) -> None:
    path = generation_file(store, "full.e4m3")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate_index(store: Path) -> None:
    path = generation_file(store, "index.faiss")
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    "damage, message",
    [
        (corrupt_manifest, r"manifest\.json is corrupt"),
        (flip_full_byte, r"full\.e4m3 does not match its checksum"),
        (truncate_index, r"index\.faiss has 100 bytes"),
    ],
)
def test_damaged_store_names_the_file(docs_folder, store, fake_embedder, damage, message):
    index(docs_folder, store, fake_embedder)
    damage(store)
    with pytest.raises(StoreError, match=message):
        Store.open(store)
    with pytest.raises(StoreError, match=message):
        Retriever.open(store, fake_embedder)


def test_bad_documents_are_skipped_with_a_reason(docs_folder, store, fake_embedder):
    (docs_folder / "empty.txt").write_bytes(b"")
    (docs_folder / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (docs_folder / "letter.docx").write_bytes(b"PK\x03\x04 not really a docx")
    (docs_folder / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage\n%%EOF")
    report = index(docs_folder, store, fake_embedder)
    assert sorted(report.added) == SOURCES
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {"empty.txt", "binary.txt", "letter.docx", "broken.pdf"}
    assert reasons["empty.txt"] == "empty file"
    assert "binary" in reasons["binary.txt"]
    assert reasons["letter.docx"] == "unsupported type .docx"
    assert "PDF" in reasons["broken.pdf"]
    assert {c.source for c in all_chunks(store)} == set(SOURCES)


def test_nothing_indexable_is_an_error(tmp_path, store, fake_embedder):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    with pytest.raises(ConfigError, match="nothing to index"):
        index(folder, store, fake_embedder)
    assert not (store / MANIFEST).exists()


def test_one_writer_at_a_time(docs_folder, store, fake_embedder):
    index(docs_folder, store, fake_embedder)
    writer = StoreWriter(store, "fake/hash-64", 64, ChunkSettings())
    try:
        with pytest.raises(StoreError, match=r"writer in this process \(pid \d+\) is writing"):
            index(docs_folder, store, fake_embedder, refit=True)
    finally:
        writer.abort()
    assert json.loads((store / MANIFEST).read_text())["generation"] == "g000001"
    assert len(all_chunks(store)) == 5
