"""The store manifest: a versioned JSON record of what a store holds, and atomic file writes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from indexing.errors import StoreError

FORMAT = "compressed-rag-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def writer_versions() -> dict[str, str]:
    """Versions of the code that wrote a store, recorded in its manifest."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in ("compressed-rag", "faiss-cpu", "numpy", "ml-dtypes", "sentence-transformers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file or directory to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON so a reader sees the old file or the new one, never a mix (write, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def read_manifest(store_dir: Path) -> dict[str, Any]:
    """Read and validate ``manifest.json``; raise StoreError naming the file and the problem."""
    path = store_dir / MANIFEST
    if not path.is_file():
        raise StoreError(f"{store_dir} is not a store (no {MANIFEST}); create one with `rag index PATH --store {store_dir}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path} is corrupt (not valid JSON: {exc}); rebuild with `rag index ... --refit`") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StoreError(f"{path} is not a {FORMAT} manifest")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreError(
            f"{path} has format version {version!r}; this program reads version {FORMAT_VERSION}. "
            "Upgrade compressed-rag or rebuild the store with `rag index ... --refit`."
        )
    _require(data, path, {"generation": str, "embedding": dict, "compression": dict, "chunker": dict, "counts": dict, "files": dict})
    _require(data["embedding"], path, {"model": str, "dim": int})
    _require(data["compression"], path, {"pca_dims": int, "dtype": str, "ann": str, "full_dtype": str})
    _require(data["counts"], path, {"chunks": int, "documents": int})
    gen = data["generation"]
    if not gen.startswith("g") or not gen[1:].isdigit():
        raise StoreError(f"{path}: generation {gen!r} is not a generation name")
    for name, meta in data["files"].items():
        if "/" in name or "\\" in name or name.startswith(".") or not isinstance(meta, dict):
            raise StoreError(f"{path}: file entry {name!r} is not allowed")
        _require(meta, path, {"bytes": int, "sha256": str})
    return data


def _require(section: dict[str, Any], path: Path, fields: dict[str, type]) -> None:
    for key, kind in fields.items():
        value = section.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise StoreError(f"{path}: field {key!r} is missing or not {kind.__name__}; the manifest is corrupt")
