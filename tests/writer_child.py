"""A writer process for tests/test_writers.py and tests/hostile.py (fake embedder, no model).

    writer_child.py index FOLDER STORE WAIT HOLD   index FOLDER; HOLD=hold: stop inside the embedding
                                                   step (lock held), say "holding", go on at SIGUSR1;
                                                   HOLD=fork: fork a sleeping helper inside it first
    writer_child.py lock STORE FORK                take the store's lock as a writer does, fork a
                                                   sleeping child if FORK=1, say "holding CHILDPID"
    writer_child.py commits FOLDER STORE N         commit N generations in a row, say "commit i" each
    writer_child.py openvino FOLDER STORE          index with the bundled model through OpenVINO
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from conftest import FakeEmbedder  # tests/ is on PYTHONPATH, set by the parent

from indexing.build import index_paths
from indexing.errors import RagError


class HoldingEmbedder(FakeEmbedder):
    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        print("holding", flush=True)
        signal.sigwait({signal.SIGUSR1})
        return super().embed_documents(texts)


class ForkingEmbedder(FakeEmbedder):
    """Forks a helper that outlives the writer, as OpenVINO's telemetry did, under the lock."""

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)  # keep the parent's pipes free; every other inherited fd stays open
            os.dup2(null, 2)
            time.sleep(30)
            os._exit(0)
        return super().embed_documents(texts)


def main(argv: list[str]) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    if argv[0] == "index":
        folder, store, wait, hold = argv[1:5]
        embedder = {"hold": HoldingEmbedder, "fork": ForkingEmbedder}.get(hold, FakeEmbedder)()
        print("start", flush=True)  # imports done: the indexing begins
        try:
            index_paths([Path(folder)], Path(store), embedder=embedder, wait=float(wait),
                        on_wait=lambda message: print("waiting:", message, flush=True))
        except RagError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("done", flush=True)
        return 0
    if argv[0] == "lock":
        from indexing.chunk import ChunkSettings
        from indexing.writer import StoreWriter

        writer = StoreWriter(Path(argv[1]), FakeEmbedder.model_id, FakeEmbedder.dim, ChunkSettings())
        child = 0
        if argv[2] == "1":
            child = os.fork()
            if child == 0:  # like a library's helper process: outlives the writer, holds its fds
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                time.sleep(120)
                os._exit(0)
        print(f"holding {child}", flush=True)
        time.sleep(120)
        writer.abort()
        return 0
    if argv[0] == "openvino":  # the bundled model through OpenVINO; say "embedding" when it runs
        from indexing.embed import DEFAULT_MODEL, load_embedder

        embedder = load_embedder(DEFAULT_MODEL, backend="openvino")
        embed = embedder.embed_documents

        def announced(texts):  # type: ignore[no-untyped-def]
            print("embedding", flush=True)
            return embed(texts)

        embedder.embed_documents = announced
        index_paths([Path(argv[1])], Path(argv[2]), embedder=embedder)
        print("done", flush=True)
        return 0
    if argv[0] == "commits":
        folder, store, n = Path(argv[1]), Path(argv[2]), int(argv[3])
        for i in range(n):
            (folder / f"commit{i % 7}.txt").write_text(f"Commit number {i} writes words {i} {i * 7}.\n", encoding="utf-8")
            index_paths([folder], store, embedder=FakeEmbedder())
            print(f"commit {i}", flush=True)
        return 0
    raise SystemExit(f"unknown mode {argv[0]}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
