"""Indexing pipeline: load -> chunk -> embed -> compress -> store.

Heavy dependencies (torch, faiss, pypdf) are imported inside the functions that need them, so
``import indexing`` stays cheap. Importing it first turns off telemetry (``indexing.offline``).
"""

from indexing.offline import keep_offline

keep_offline()

from indexing.errors import (  # noqa: E402 - after keep_offline()
    ConfigError,
    EmbeddingError,
    GenerationError,
    LoadError,
    RagError,
    StoreError,
    StoreMismatchError,
)

__all__ = [
    "ConfigError",
    "EmbeddingError",
    "GenerationError",
    "LoadError",
    "RagError",
    "StoreError",
    "StoreMismatchError",
]
