"""FAISS index files read and written through Python file objects.

``faiss.read_index(str(path))`` hands the path to C++ as UTF-8: a folder name that is not valid
UTF-8 (kept by Python as surrogates, e.g. a Latin-1 ``\\xff``) makes SWIG raise ``TypeError``.
Python opens any path, and FAISS reads and writes through callbacks on that open file.
"""

from __future__ import annotations

from pathlib import Path


def write_index_file(index, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Write ``index`` to ``path`` (any path the OS accepts)."""
    import faiss

    with open(path, "wb") as fh:
        writer = faiss.PyCallbackIOWriter(fh.write)
        faiss.write_index(index, writer)
        del writer  # flushes FAISS's buffer into fh before it closes


def read_index_file(path: Path):  # type: ignore[no-untyped-def]
    """Read the index at ``path``; FAISS raises RuntimeError on a malformed file."""
    import faiss

    with open(path, "rb") as fh:
        reader = faiss.PyCallbackIOReader(fh.read)
        try:
            return faiss.read_index(reader)
        finally:
            del reader
