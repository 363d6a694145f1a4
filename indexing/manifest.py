"""The store manifest: the one typed record of what a store holds (see docs/store-format.md).

``Manifest.parse`` validates the JSON on read and ``Manifest.to_json`` writes it; nothing else
reads or writes the manifest's fields. Format 2 (segments): a store-level *basis* (PCA, float8
scales) plus an ordered list of immutable *segments*, each with its own first-stage index, full
vectors and chunk database, and per segment an optional *tombstone* file of deleted rows.
Format 1 stores (one generation folder holding everything) are read as one segment.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from indexing.errors import StoreError
from indexing.first_stage import INDEX_CODES

FORMAT = "compressed-rag-store"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
GENERATION = re.compile(r"g[0-9]{1,9}\Z", re.ASCII)  # ASCII digits only: str.isdigit() accepts "g²"
FULL_DTYPES = ("float8", "float16")  # rerank vectors: the one vocabulary (format 1 said float8_e4m3fn)
BASIS_FILES = ("pca.npy", "pca_energy.npy", "reduced_scale.npy", "full_scale.npy")
SEGMENT_FILES = ("index.faiss", "chunks.sqlite")  # plus FULL_FILE[full_dtype]
FULL_FILE = {"float8": "full.e4m3", "float16": "full.f16"}


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


@dataclass(frozen=True)
class FileMeta:
    """Size and checksum of one file of the store."""

    bytes: int
    sha256: str


@dataclass(frozen=True)
class Tombstones:
    """Deleted rows of one segment: a sorted (m,) int64 .npy file written by a later commit."""

    dir: str  # folder of the commit that wrote the file
    file: str
    count: int
    meta: FileMeta


@dataclass(frozen=True)
class Segment:
    """One immutable segment: ``rows`` chunks (``documents`` documents) in folder ``dir``."""

    dir: str
    rows: int
    documents: int
    files: dict[str, FileMeta]
    ann: str = "flat"  # this segment's first-stage index kind: flat or ivf
    nlist: int | None = None
    nprobe: int | None = None
    bytes_per_vector: int = 0  # first-stage bytes per row (an IVF row also pays its 8-byte id)
    deleted: Tombstones | None = None

    @property
    def live(self) -> int:
        return self.rows - (self.deleted.count if self.deleted else 0)


@dataclass(frozen=True)
class Compression:
    """How vectors are compressed; the same for every segment (the basis is store-level)."""

    pca_dims: int
    pca_energy_kept: float
    pca_fit_vectors: int
    dtype: str  # first-stage codes: float8 (default) or a comparison dtype
    ann: str  # the setting the store was made with: flat, ivf or auto (see Segment.ann)
    full_dtype: str  # one of FULL_DTYPES
    dim: int

    @property
    def full_bytes_per_vector(self) -> int:
        return self.dim * (2 if self.full_dtype == "float16" else 1)


@dataclass(frozen=True)
class Manifest:
    """What a store holds, as ``manifest.json`` says."""

    generation: str  # the commit that wrote this manifest (also the name of its folder)
    model: str
    dim: int
    compression: Compression
    chunker: dict[str, Any]
    basis: tuple[str, dict[str, FileMeta]]  # (folder, files)
    segments: tuple[Segment, ...]
    documents: int  # live documents
    keyword: dict[str, Any] | None = None  # keyword index settings; None: written before it existed
    fusion: dict[str, Any] | None = None  # calibrated fusion weights (rag eval --calibrate)
    writer: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def rows(self) -> int:
        """Rows in all segments, deleted ones included (global row numbers run 0..rows-1)."""
        return sum(s.rows for s in self.segments)

    @property
    def chunks(self) -> int:
        """Live chunks."""
        return sum(s.live for s in self.segments)

    @property
    def deleted(self) -> int:
        return self.rows - self.chunks

    @property
    def index_key(self) -> str:
        c = self.compression
        return f"PCA{c.pca_dims}," + ("IVF," if c.ann == "ivf" else "") + INDEX_CODES.get(c.dtype, c.dtype)

    @property
    def bytes_per_vector(self) -> int:
        """First-stage bytes per row, averaged over the segments (what a search scans)."""
        rows = max(1, self.rows)
        return max(1, round(sum(s.bytes_per_vector * s.rows for s in self.segments) / rows))

    @property
    def store_bytes(self) -> int:
        files = list(self.basis[1].values()) + [m for s in self.segments for m in s.files.values()]
        files += [s.deleted.meta for s in self.segments if s.deleted]
        return sum(m.bytes for m in files)

    def with_fusion(self, fusion: dict[str, Any]) -> Manifest:
        return replace(self, fusion=fusion)

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON data (format 2)."""
        c = self.compression
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "writer": self.writer, "generation": self.generation,
            "embedding": {"model": self.model, "dim": self.dim, "normalized": True},
            "compression": {"pca_dims": c.pca_dims, "pca_energy_kept": c.pca_energy_kept, "pca_fit_vectors": c.pca_fit_vectors,
                            "pca_centered": False, "dtype": c.dtype, "ann": c.ann, "index_key": self.index_key,
                            "bytes_per_vector": self.bytes_per_vector, "full_dtype": c.full_dtype,
                            "full_bytes_per_vector": c.full_bytes_per_vector},
            "chunker": self.chunker,
            "basis": {"dir": self.basis[0], "files": _files_json(self.basis[1])},
            "segments": [_segment_json(s) for s in self.segments],
            "counts": {"chunks": self.chunks, "documents": self.documents, "rows": self.rows, "deleted": self.deleted,
                       "segments": len(self.segments)},
            **({"keyword": self.keyword} if self.keyword is not None else {}),
            **({"fusion": self.fusion} if self.fusion is not None else {}),
        }

    @classmethod
    def parse(cls, data: Any, path: Path) -> Manifest:
        """Validate JSON data read from ``path``; a StoreError names the file and the problem."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StoreError(f"{path} is not a {FORMAT} manifest")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise StoreError(
                f"{path} has format version {version!r}; this program reads versions {', '.join(map(str, READABLE_VERSIONS))}. "
                "Upgrade compressed-rag or rebuild the store with `rag index ... --refit`."
            )
        _require(data, path, {"generation": str, "embedding": dict, "compression": dict, "chunker": dict, "counts": dict, "writer": dict})
        emb, comp = data["embedding"], data["compression"]
        _require(emb, path, {"model": str, "dim": int})
        _require(comp, path, {"pca_dims": int, "dtype": str, "ann": str, "full_dtype": str, "pca_energy_kept": float})
        _require(data["chunker"], path, {"chunk_tokens": int, "overlap": int, "encoding": str})
        _require(data["counts"], path, {"documents": int})
        _generation(data["generation"], path)
        full_dtype = {"float8_e4m3fn": "float8"}.get(comp["full_dtype"], comp["full_dtype"])
        if full_dtype not in FULL_DTYPES:
            raise StoreError(f"{path}: full_dtype {comp['full_dtype']!r} is not one of {', '.join(FULL_DTYPES)}")
        if emb["dim"] < 1 or not 1 <= comp["pca_dims"] <= emb["dim"]:
            raise StoreError(f"{path}: dim {emb['dim']} / pca_dims {comp['pca_dims']} are impossible; the manifest is corrupt")
        fit = comp.get("pca_fit_vectors", 0)
        compression = Compression(comp["pca_dims"], comp["pca_energy_kept"], fit if _is_int(fit) else 0, comp["dtype"],
                                  comp["ann"], full_dtype, emb["dim"])
        if version == 1:
            basis, segments = _v1_layout(data, path, full_dtype)
        else:
            _require(data, path, {"basis": dict, "segments": list})
            _require(data["basis"], path, {"dir": str, "files": dict})
            basis = (_generation(data["basis"]["dir"], path), _files(data["basis"]["files"], path))
            segments = tuple(_segment(s, path) for s in data["segments"])
        seen: set[str] = set()
        for seg in segments:  # a segment listed twice: each of its rows would be two global rows
            if seg.dir in seen:
                raise StoreError(f"{path}: segment {seg.dir!r} is listed twice; the manifest is corrupt")
            seen.add(seg.dir)
        for name in BASIS_FILES:
            if name not in basis[1]:
                raise StoreError(f"{path}: the basis does not list {name}; the manifest is corrupt")
        for seg in segments:
            for name in (*SEGMENT_FILES, FULL_FILE[full_dtype]):
                if name not in seg.files:
                    raise StoreError(f"{path}: segment {seg.dir} does not list {name}; the manifest is corrupt")
        keyword, fusion = data.get("keyword"), data.get("fusion")
        return cls(data["generation"], emb["model"], emb["dim"], compression, dict(data["chunker"]), basis, segments,
                   data["counts"]["documents"], keyword, fusion if isinstance(fusion, dict) else None,
                   {str(k): str(v) for k, v in data["writer"].items()}, version)


def read_manifest(store_dir: Path) -> Manifest:
    """Read and validate ``manifest.json``; raise StoreError naming the file and the problem."""
    path = Path(store_dir) / MANIFEST
    if not path.is_file():
        raise StoreError(f"{store_dir} is not a store (no {MANIFEST}); create one with `rag index PATH --store {store_dir}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError(f"{path} is corrupt (not valid JSON: {exc}); rebuild with `rag index ... --refit`") from exc
    except OSError as exc:  # no permission to read it, an I/O error
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return Manifest.parse(data, path)


def is_store(store_dir: str | Path) -> bool:
    """Whether ``store_dir`` holds a store (a manifest file; it may still be damaged)."""
    return (Path(store_dir) / MANIFEST).is_file()


def _v1_layout(data: dict[str, Any], path: Path, full_dtype: str) -> tuple[tuple[str, dict[str, FileMeta]], tuple[Segment, ...]]:
    """A format-1 store: one generation folder holding the basis and the only segment."""
    _require(data, path, {"files": dict})
    _require(data["counts"], path, {"chunks": int})
    comp = data["compression"]
    _require(comp, path, {"bytes_per_vector": int})
    files = _files(data["files"], path)
    gen = data["generation"]
    _ivf_fields(comp, path)
    seg_files = {n: m for n, m in files.items() if n not in BASIS_FILES}
    seg = Segment(gen, data["counts"]["chunks"], data["counts"]["documents"], seg_files, comp["ann"] if comp["ann"] == "ivf" else "flat",
                  comp.get("nlist"), comp.get("nprobe"), comp["bytes_per_vector"])
    if seg.rows < 0 or seg.bytes_per_vector < 1:
        raise StoreError(f"{path}: counts or bytes_per_vector are impossible; the manifest is corrupt")
    return (gen, {n: m for n, m in files.items() if n in BASIS_FILES}), (seg,)


def _segment(data: Any, path: Path) -> Segment:
    if not isinstance(data, dict):
        raise StoreError(f"{path}: a segment entry is not an object; the manifest is corrupt")
    _require(data, path, {"dir": str, "rows": int, "documents": int, "files": dict, "ann": str, "bytes_per_vector": int})
    if data["rows"] < 0 or data["documents"] < 0 or data["bytes_per_vector"] < 1 or data["ann"] not in ("flat", "ivf"):
        raise StoreError(f"{path}: segment {data['dir']!r} has impossible counts; the manifest is corrupt")
    _ivf_fields(data, path)
    deleted = None
    if data.get("deleted") is not None:
        d = data["deleted"]
        if not isinstance(d, dict):
            raise StoreError(f"{path}: the tombstones of {data['dir']!r} are corrupt")
        _require(d, path, {"dir": str, "file": str, "count": int, "bytes": int, "sha256": str})
        _file_name(d["file"], path)
        if not 0 <= d["count"] <= data["rows"]:
            raise StoreError(f"{path}: segment {data['dir']!r} has {d['count']} deleted of {data['rows']} rows; the manifest is corrupt")
        deleted = Tombstones(_generation(d["dir"], path), d["file"], d["count"], FileMeta(d["bytes"], d["sha256"]))
    return Segment(_generation(data["dir"], path), data["rows"], data["documents"], _files(data["files"], path), data["ann"],
                   data.get("nlist"), data.get("nprobe"), data["bytes_per_vector"], deleted)


def _ivf_fields(section: dict[str, Any], path: Path) -> None:
    """``nlist`` and ``nprobe``: absent, or (IVF only) ints FAISS can take (a size_t; 2**31 is plenty)."""
    for key in ("nlist", "nprobe"):
        v = section.get(key)
        if v is not None and (not _is_int(v) or not 1 <= v < 2**31 or section["ann"] != "ivf"):
            raise StoreError(f"{path}: field {key!r} is not allowed here; the manifest is corrupt")


def _segment_json(s: Segment) -> dict[str, Any]:
    out: dict[str, Any] = {"dir": s.dir, "rows": s.rows, "documents": s.documents, "files": _files_json(s.files), "ann": s.ann,
                           "bytes_per_vector": s.bytes_per_vector}
    if s.ann == "ivf":
        out |= {"nlist": s.nlist, "nprobe": s.nprobe}
    if s.deleted is not None:
        d = s.deleted
        out["deleted"] = {"dir": d.dir, "file": d.file, "count": d.count, "bytes": d.meta.bytes, "sha256": d.meta.sha256}
    return out


def _files(data: dict[str, Any], path: Path) -> dict[str, FileMeta]:
    out = {}
    for name, meta in data.items():
        _file_name(name, path)
        if not isinstance(meta, dict):
            raise StoreError(f"{path}: file entry {name!r} is not allowed")
        _require(meta, path, {"bytes": int, "sha256": str})
        out[name] = FileMeta(meta["bytes"], meta["sha256"])
    return out


def _files_json(files: dict[str, FileMeta]) -> dict[str, Any]:
    return {name: {"bytes": m.bytes, "sha256": m.sha256} for name, m in sorted(files.items())}


def _file_name(name: str, path: Path) -> None:
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise StoreError(f"{path}: file entry {name!r} is not allowed")


def _generation(name: str, path: Path) -> str:
    if not isinstance(name, str) or not GENERATION.match(name):
        raise StoreError(f"{path}: generation {name!r} is not a generation name")
    return name


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _require(section: dict[str, Any], path: Path, fields: dict[str, type]) -> None:
    for key, kind in fields.items():
        value = section.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise StoreError(f"{path}: field {key!r} is missing or not {kind.__name__}; the manifest is corrupt")
