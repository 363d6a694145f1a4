"""Typed errors. Library code raises these; only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class RagError(Exception):
    """Base class for every error this project raises on purpose."""


class StoreError(RagError):
    """A store is missing, corrupt, or cannot be written."""


class StoreMismatchError(StoreError):
    """The store was built with another embedding model or dimension than the one asked for."""


class ConfigError(RagError, ValueError):
    """An argument or setting is invalid; the message says which and what to use instead."""


class LoadError(RagError):
    """A document could not be read (wrong type, unreadable, corrupt)."""


class EmbeddingError(RagError):
    """The embedding model could not be loaded or called."""


class GenerationError(RagError):
    """The answer model could not be reached or failed."""


class ClusterError(RagError):
    """Ray is not installed, a local Ray cannot start, or a Ray cluster cannot be reached or failed."""
