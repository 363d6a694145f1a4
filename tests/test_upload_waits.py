"""An upload in the chat waits for another writer of the store instead of failing at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from indexing.build import index_paths
from indexing.lock import StoreLock
from indexing.store import Store
from ui.app import Stores


def test_upload_waits_for_another_writer(docs_folder: Path, tmp_path: Path, fake_embedder) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "store"
    index_paths([docs_folder], store, embedder=fake_embedder)
    stores = Stores(llm="extractive", base_url=None)
    stores._embedders[fake_embedder.model_id] = fake_embedder  # the fake model has no files to load
    upload = tmp_path / "otters.txt"
    upload.write_text("Sea otters hold hands while they sleep so that they do not drift apart.", encoding="utf-8")

    lock = StoreLock(store).acquire()  # another writer (a `rag index` run) holds the store
    releaser = threading.Timer(1.0, lock.release)
    releaser.start()
    t0 = time.monotonic()
    status = stores.add_files(str(store), [upload])
    waited = time.monotonic() - t0
    releaser.join()

    assert waited >= 0.9, "the upload must wait for the writer, not write beside it"
    assert status.startswith("Added 1,"), status
    with Store.open(store) as s:
        assert any(path.endswith("otters.txt") for path in s.documents())
