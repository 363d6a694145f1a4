"""Indexing pipeline: load -> chunk -> embed -> compress -> store.

Heavy dependencies (torch, faiss, pypdf) are imported inside the functions that need them, so
``import indexing`` stays cheap.
"""

from indexing.errors import (
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
