"""LangChain's own standard conformance suites (PyPI ``langchain-tests``) run against
``CompressedVectorStore`` and its retriever, sync and async, on real stores in temp folders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests

from rag.langchain import CompressedVectorStore

CORPUS = [
    "Zebras have black and white stripes that confuse biting flies.",
    "Volcanoes erupt molten lava when magma breaks through the crust.",
    "The saxophone is a woodwind instrument with a single reed.",
    "Glaciers carve deep valleys as compacted ice creeps downhill.",
    "Octopuses have three hearts and blue blood.",
]


class TestCompressedVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path: Path) -> Iterator[CompressedVectorStore]:  # type: ignore[override]
        yield CompressedVectorStore(tmp_path / "store", self.get_embeddings())

    @property
    def has_get_by_ids(self) -> bool:
        return True


class TestCompressedRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _filled_store(self, tmp_path: Path) -> None:
        """One filled store per test; every retriever the suite builds searches it."""
        embeddings = VectorStoreIntegrationTests.get_embeddings()
        docs = [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(CORPUS)]
        self.store = CompressedVectorStore.from_documents(docs, embeddings, store_dir=tmp_path / "store")

    @property
    def retriever_constructor(self) -> Callable[..., BaseRetriever]:  # type: ignore[override]
        return lambda k=4: self.store.as_retriever(search_kwargs={"k": k})

    @property
    def retriever_query_example(self) -> str:
        return "what makes zebras striped?"
