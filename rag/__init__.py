"""Retrieval, answering and evaluation over a compressed store.

>>> from rag import Retriever
>>> hits = Retriever.open("stores/python").search("how does a for loop end?", k=5)
"""

from indexing.build import IndexReport, index_paths
from indexing.errors import ConfigError, RagError, StoreError, StoreMismatchError
from rag.retrieve import DEFAULT_K, DEFAULT_OVERSAMPLE, Hit, Retriever

__all__ = [
    "DEFAULT_K",
    "DEFAULT_OVERSAMPLE",
    "ConfigError",
    "Hit",
    "IndexReport",
    "RagError",
    "Retriever",
    "StoreError",
    "StoreMismatchError",
    "index_paths",
]
