"""The chat app answers from the store's current generation, also after another process indexed."""

from __future__ import annotations

from indexing.build import index_paths


def test_chat_sees_what_rag_index_added_while_it_ran(tmp_path, fake_embedder, monkeypatch):
    """The app kept the generation it first opened: documents a `rag index` run added later were
    never retrieved until the app restarted (or the generation folder was long deleted)."""
    import ui.app

    monkeypatch.setattr(ui.app, "load_embedder", lambda model: type(fake_embedder)())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Walruses haul out on the sea ice to rest.", encoding="utf-8")
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    stores = ui.app.Stores("extractive", None)
    assert "Walruses" in stores.chat(str(store)).ask("Where do walruses rest?").text
    (docs / "b.txt").write_text("Capybaras bathe in warm rivers every afternoon.", encoding="utf-8")
    index_paths([docs], store, embedder=fake_embedder)  # another writer, as `rag index` would be
    answer = stores.chat(str(store)).ask("Where do capybaras bathe?")
    assert "Capybaras" in answer.text, answer.text
