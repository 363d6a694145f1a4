"""The store manifest: a versioned JSON record of what a store holds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from indexing.errors import StoreError

FORMAT = "compressed-rag-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
GENERATION = re.compile(r"g[0-9]{1,9}\Z", re.ASCII)  # ASCII digits only: str.isdigit() accepts "g²"


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


def read_manifest(store_dir: Path) -> dict[str, Any]:
    """Read and validate ``manifest.json``; raise StoreError naming the file and the problem."""
    path = store_dir / MANIFEST
    if not path.is_file():
        raise StoreError(f"{store_dir} is not a store (no {MANIFEST}); create one with `rag index PATH --store {store_dir}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError(f"{path} is corrupt (not valid JSON: {exc}); rebuild with `rag index ... --refit`") from exc
    except OSError as exc:  # no permission to read it, an I/O error
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
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
    _require(data, path, {"writer": dict})
    _require(data["compression"], path, {"bytes_per_vector": int, "full_bytes_per_vector": int, "index_key": str, "pca_energy_kept": float})
    _require(data["chunker"], path, {"chunk_tokens": int, "overlap": int, "encoding": str})
    if data["compression"]["bytes_per_vector"] < 1:
        raise StoreError(f"{path}: bytes_per_vector must be >= 1")
    for key in ("nlist", "nprobe"):
        v = data["compression"].get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1 or data["compression"]["ann"] != "ivf"):
            raise StoreError(f"{path}: field {key!r} is not allowed here; the manifest is corrupt")
    gen = data["generation"]
    if not GENERATION.match(gen):
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
