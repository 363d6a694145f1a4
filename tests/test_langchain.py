"""The LangChain VectorStore over a compressed store, and its retriever inside an LCEL chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from indexing.errors import StoreMismatchError
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
        assert store.n == len(TEXTS) and store.manifest["compression"]["dtype"] == "float8"
        assert store.manifest["embedding"]["model"] == "fake/hash-64"


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
