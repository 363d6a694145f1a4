"""The LangChain VectorStore over a compressed store, and its retriever inside an LCEL chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from indexing.errors import ConfigError, StoreMismatchError
from indexing.store import Store
from rag.langchain import CompressedVectorStore

TEXTS = {
    "zebra": "Zebras have black and white stripes that confuse biting flies.",
    "volcano": "Volcanoes erupt molten lava when magma breaks through the crust.",
    "sax": "The saxophone is a woodwind instrument with a single reed.",
    "glacier": "Glaciers carve deep valleys as compacted ice creeps downhill.",
}


class FakeLangchainEmbeddings(Embeddings):
    """A LangChain Embeddings object (the user's side), backed by the test's hashing embedder."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.model_id = inner.model_id

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_queries([text])[0].tolist()


@pytest.fixture
def vectorstore(tmp_path: Path, fake_embedder) -> CompressedVectorStore:  # type: ignore[no-untyped-def]
    docs = [Document(page_content=t, metadata={"source": f"{k}.txt", "topic": k}, id=k) for k, t in TEXTS.items()]
    return CompressedVectorStore.from_documents(docs, FakeLangchainEmbeddings(fake_embedder), store_dir=tmp_path / "lc")


def test_similarity_search_with_score_returns_documents_with_metadata(vectorstore: CompressedVectorStore) -> None:
    results = vectorstore.similarity_search_with_score("black and white stripes", k=2)
    doc, score = results[0]
    assert doc.id == "zebra" and doc.page_content == TEXTS["zebra"]
    assert doc.metadata["topic"] == "zebra" and doc.metadata["source"] == "zebra.txt"
    assert score > results[1][1]


def test_store_on_disk_is_a_real_compressed_store(vectorstore: CompressedVectorStore) -> None:
    with Store.open(vectorstore.store_dir) as store:
        assert store.n == len(TEXTS) and store.manifest.compression.dtype == "float8"
        assert store.manifest.model == "fake/hash-64"


def test_add_documents_and_delete(vectorstore: CompressedVectorStore) -> None:
    vectorstore.add_documents([Document(page_content="Octopuses have three hearts and blue blood.", id="octo")])
    assert vectorstore.similarity_search("three hearts blue blood", k=1)[0].id == "octo"
    vectorstore.delete(["zebra", "octo"])
    ids = {d.id for d in vectorstore.similarity_search("stripes hearts", k=10)}
    assert ids == {"volcano", "sax", "glacier"}


def test_adding_an_existing_id_replaces_it(vectorstore: CompressedVectorStore) -> None:
    vectorstore.add_texts(["Zebras are striped horses of Africa."], ids=["zebra"])
    docs = vectorstore.similarity_search("striped horses Africa", k=10)
    assert [d.page_content for d in docs if d.id == "zebra"] == ["Zebras are striped horses of Africa."]
    assert len(docs) == len(TEXTS)


def test_retriever_inside_an_lcel_chain(vectorstore: CompressedVectorStore) -> None:
    retriever = vectorstore.as_retriever(search_kwargs={"k": 1})
    prompt = RunnableLambda(lambda x: f"Q: {x['question']}\nContext: {x['context'][0].page_content}")
    chain = {"context": retriever, "question": RunnablePassthrough()} | prompt
    assert chain.invoke("where does lava come from when magma breaks the crust?").endswith(TEXTS["volcano"])


def test_reopening_with_another_model_fails(vectorstore: CompressedVectorStore, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    other = FakeLangchainEmbeddings(fake_embedder)
    other.model_id = "other/model"
    with pytest.raises(StoreMismatchError, match="fake/hash-64.*other/model"):
        CompressedVectorStore(vectorstore.store_dir, other).similarity_search("stripes")


# -- conformance fixes (issue 12) ------------------------------------------------------------
def test_metadata_round_trips_exactly_and_the_score_stays_beside_it(tmp_path: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    meta = {"page": "iv", "score": "user's own", "source": "mine", "start": None, "nested": {"a": [1, 2.5, True]}}
    vs = CompressedVectorStore(tmp_path / "lc", fake_embedder)
    vs.add_documents([Document(page_content=TEXTS["zebra"], metadata=meta, id="z"), Document(page_content=TEXTS["sax"])])
    (doc, score), _ = vs.similarity_search_with_score(TEXTS["zebra"], k=2)
    assert doc.metadata == meta and doc.id == "z"
    assert 0.9 < score < 1.1
    assert vs.get_by_ids(["z"])[0].metadata == meta
    assert [d.id for d in vs.similarity_search("anything", k=5, filter={"start": None})] == ["z"]  # null, not absent
    assert [d.id for d in vs.similarity_search("anything", k=5, filter={"nested": None})] == []


def test_chunks_indexed_from_files_carry_their_provenance(tmp_path: Path, docs_folder: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    from indexing.build import index_paths

    index_paths([docs_folder], tmp_path / "files", embedder=fake_embedder)
    vs = CompressedVectorStore(tmp_path / "files", fake_embedder)
    doc = vs.similarity_search("Glaciers carve deep fjords as compacted ice creeps", k=1)[0]
    assert set(doc.metadata) == {"source", "title", "page", "start", "end"}
    assert doc.metadata["page"] == 1 and doc.metadata["title"] == "Glacier Report" and doc.metadata["source"].endswith("ice.pdf")
    assert doc.metadata["end"] - doc.metadata["start"] == len(doc.page_content)
    assert doc.id == f"{(docs_folder / 'ice.pdf').resolve()}#1:{doc.metadata['start']}"  # the indexed path, page, offset
    assert vs.get_by_ids([doc.id, "nope"]) == [doc]
    page_two = vs.similarity_search("Glaciers carve deep fjords", k=3, filter={"page": 2})
    assert [d.page_content[:30] for d in page_two] == ["Icebergs calve from the glacie"]
    same_file = vs.similarity_search("zebra stripes lava saxophone", k=10, filter={"source": doc.metadata["source"]})
    assert len(same_file) == 2 and {d.metadata["page"] for d in same_file} == {1, 2}


def test_missing_ids_are_generated_and_never_none(tmp_path: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    vs = CompressedVectorStore(tmp_path / "lc", fake_embedder)
    first = vs.add_texts(["alpha text", "beta text"], ids=["a", None])  # type: ignore[list-item]
    second = vs.add_documents([Document(page_content="gamma text"), Document(page_content="delta text", id="d")])
    assert first[0] == "a" and second[1] == "d"
    assert all(isinstance(i, str) and i for i in first + second) and len(set(first + second)) == 4
    assert [d.page_content for d in vs.get_by_ids(first + second)] == ["alpha text", "beta text", "gamma text", "delta text"]


def test_an_id_given_twice_in_one_call_keeps_its_last_text(tmp_path: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    vs = CompressedVectorStore(tmp_path / "lc", fake_embedder)
    vs.add_texts(["old words", "new words"], ids=["x", "x"])
    assert [d.page_content for d in vs.similarity_search("words", k=5)] == ["new words"]


def test_relevance_scores_are_clamped_to_0_1(tmp_path: Path) -> None:
    import warnings

    from langchain_core.embeddings import DeterministicFakeEmbedding

    from rag.langchain import _relevance

    assert _relevance(1.0144) == 1.0 and _relevance(-1.02) == 0.0 and _relevance(0.0) == 0.5
    vs = CompressedVectorStore(tmp_path / "lc", DeterministicFakeEmbedding(size=6))  # the standard suite's embeddings
    vs.add_texts(["foo", "bar", "baz"])
    assert vs.similarity_search_with_score("baz", k=1)[0][1] > 1.0  # float8 rounding: an exact match scores above 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LangChain warns when a relevance score is outside [0, 1]
        results = vs.similarity_search_with_relevance_scores("baz", k=3)
    assert results[0][0].page_content == "baz" and results[0][1] == 1.0
    assert all(0.0 <= s <= 1.0 for _, s in results)
    threshold = vs.as_retriever(search_type="similarity_score_threshold", search_kwargs={"k": 3, "score_threshold": 0.9})
    assert [d.page_content for d in threshold.invoke("baz")] == ["baz"]


def test_concurrent_async_adds_and_searches_on_one_store(vectorstore: CompressedVectorStore) -> None:
    import asyncio

    extra = {f"t{i}": f"Topic number {i} talks about {word} only." for i, word in enumerate(["owls", "ferns", "tides", "comets", "bees", "moss"])}

    async def run() -> list[object]:
        adds = [vectorstore.aadd_texts([text], ids=[key]) for key, text in extra.items()]
        searches = [vectorstore.asimilarity_search("lava and magma", k=2) for _ in range(24)]
        return await asyncio.gather(*adds, *searches, vectorstore.adelete(["sax"]))

    results = asyncio.run(run())
    assert results[: len(extra)] == [[key] for key in extra]
    assert all(docs[0].id == "volcano" for docs in results[len(extra) : len(extra) + 24])  # type: ignore[index]
    assert [d.id for d in vectorstore.get_by_ids([*extra, "zebra", "sax"])] == [*extra, "zebra"]
    assert vectorstore.similarity_search("comets", k=1)[0].id == "t3"


@pytest.fixture
def tagged(tmp_path: Path, fake_embedder) -> CompressedVectorStore:  # type: ignore[no-untyped-def]
    """40 documents over 4 sources: every query word is in all of them, so filters do the sorting."""
    docs = [
        Document(page_content=f"river note {i} about water", metadata={"source": f"s{i % 4}", "n": i, "even": i % 2 == 0}, id=f"d{i}")
        for i in range(40)
    ]
    return CompressedVectorStore.from_documents(docs, FakeLangchainEmbeddings(fake_embedder), store_dir=tmp_path / "tagged")


@pytest.mark.parametrize("overfetch_max", [1024, 0])  # over-fetch and filter / exact over the matching rows
def test_metadata_filter_returns_k_matches(tagged: CompressedVectorStore, overfetch_max: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import rag.langchain

    monkeypatch.setattr(rag.langchain, "OVERFETCH_MAX", overfetch_max)
    docs = tagged.similarity_search("river water", k=5, filter={"source": "s1"})
    assert len(docs) == 5 and {d.metadata["source"] for d in docs} == {"s1"}
    both = tagged.similarity_search("river water", k=20, filter={"source": "s2", "even": True})
    assert sorted(d.metadata["n"] for d in both) == list(range(2, 40, 4))
    assert [d.id for d in tagged.similarity_search("water", k=3, filter={"n": 7})] == ["d7"]
    assert tagged.similarity_search("water", k=3, filter={"source": "nowhere"}) == []
    assert len(tagged.similarity_search("water", k=4, filter=lambda d: d.metadata["n"] > 35)) == 4


def test_filtered_scores_match_unfiltered_ones(tagged: CompressedVectorStore) -> None:
    unfiltered = {d.id: s for d, s in tagged.similarity_search_with_score("river note 13 about water", k=40)}
    filtered = tagged.similarity_search_with_score("river note 13 about water", k=3, filter={"source": "s1"})
    assert filtered[0][0].id == "d13"
    assert all(abs(unfiltered[d.id] - s) < 1e-5 for d, s in filtered)


def test_bad_filters_and_search_keywords_say_what_to_use(tagged: CompressedVectorStore) -> None:
    with pytest.raises(ConfigError, match="unknown search keyword.*filters.*filter"):
        tagged.similarity_search("water", filters={"source": "s1"})
    with pytest.raises(ConfigError, match="only equality"):
        tagged.similarity_search("water", filter={"n": [1, 2]})


def test_retriever_passes_filter_and_search_kwargs_through(tagged: CompressedVectorStore) -> None:
    retriever = tagged.as_retriever(search_kwargs={"k": 3, "filter": {"source": "s3"}, "oversample": 2})
    docs = retriever.invoke("river water")
    assert len(docs) == 3 and {d.metadata["source"] for d in docs} == {"s3"}


def test_max_marginal_relevance_prefers_diverse_documents(tmp_path: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    texts = ["zebra stripes confuse flies"] * 3 + ["zebra herds graze savanna grass", "glaciers carve fjords"]
    vs = CompressedVectorStore.from_texts(texts, fake_embedder, store_dir=tmp_path / "mmr", ids=["a", "b", "c", "d", "e"])
    plain = [d.id for d in vs.similarity_search("zebra stripes", k=2)]
    diverse = [d.id for d in vs.max_marginal_relevance_search("zebra stripes", k=2, fetch_k=5, lambda_mult=0.5)]
    assert set(plain) <= {"a", "b", "c"}
    assert diverse[0] in {"a", "b", "c"} and diverse[1] in {"d", "e"}  # not a second copy
    relevance_only = vs.max_marginal_relevance_search("zebra stripes", k=2, fetch_k=5, lambda_mult=1.0)
    assert {d.id for d in relevance_only} <= {"a", "b", "c"}
    retriever = vs.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 5})
    assert [d.id for d in retriever.invoke("zebra stripes")] == diverse
    assert vs.max_marginal_relevance_search("zebra", k=2, filter={"missing": 1}) == []


def test_deleting_everything_empties_the_store_and_it_can_refill(vectorstore: CompressedVectorStore) -> None:
    assert vectorstore.delete() is True
    assert vectorstore.similarity_search("lava", k=3) == [] and vectorstore.get_by_ids(["volcano"]) == []
    vectorstore.add_texts(["Lava again."], ids=["v2"])
    assert [d.id for d in vectorstore.similarity_search("lava", k=3)] == ["v2"]


def test_from_texts_needs_a_folder(fake_embedder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="store_dir"):
        CompressedVectorStore.from_texts(["a"], FakeLangchainEmbeddings(fake_embedder))


def test_search_mode_passes_through_and_dense_is_the_default(tmp_path: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    texts = ["zebra stripes confuse flies", "glaciers carve fjords", "the quokka smiles"]
    vs = CompressedVectorStore.from_texts(texts, fake_embedder, store_dir=tmp_path / "modes", ids=["z", "g", "q"])
    dense = vs.similarity_search_with_score("quokka", k=3)
    keyword = vs.as_retriever(search_kwargs={"k": 3, "mode": "keyword"}).invoke("quokka")
    hybrid = vs.similarity_search_with_score("quokka", k=1, mode="hybrid")
    assert [d.id for d in keyword] == ["q"]  # BM25: only the chunk holding the word
    assert len(dense) == 3 and dense[0][0].id == "q"  # dense ranks every chunk, by inner product
    assert hybrid[0][0].id == "q" and 0.0 <= hybrid[0][1] <= 1.0  # fused scores lie in [0, 1]
    with pytest.raises(ConfigError, match="query text"):
        vs.similarity_search_by_vector(fake_embedder.embed_queries(["quokka"])[0].tolist(), k=1, mode="keyword")
