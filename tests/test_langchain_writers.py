"""Two writers of one store through LangChain: neither gets stuck on a generation the other replaced."""

from __future__ import annotations

from rag.langchain import CompressedVectorStore


def test_second_instance_writes_and_reads_after_the_first_committed(tmp_path, fake_embedder):
    """The second instance kept the generation it had opened: every later add_texts failed with
    "changed by another writer since it was opened; run again" (again and again), and its searches
    never saw the other writer's texts."""
    a = CompressedVectorStore(tmp_path / "s", embedding=fake_embedder)
    b = CompressedVectorStore(tmp_path / "s", embedding=fake_embedder)
    a.add_texts(["walruses rest on the ice"], ids=["w"])
    assert [d.page_content for d in b.similarity_search("walruses", k=3)] == ["walruses rest on the ice"]
    a.add_texts(["seals sleep in the water"], ids=["s"])
    assert len(b.similarity_search("seals", k=3)) == 2  # b sees a's commit
    b.add_texts(["otters hold hands"], ids=["o"])  # built on a's generation: nothing lost
    texts = {d.page_content for d in a.similarity_search("otters", k=5)}
    assert texts == {"walruses rest on the ice", "seals sleep in the water", "otters hold hands"}
    b.delete(["w"])
    assert {d.id for d in a.get_by_ids(["w", "s", "o"])} == {"s", "o"}
