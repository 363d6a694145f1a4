"""One small store (fake embedder) and the helpers the hostile-store tests damage copies of it with
(the ``pristine`` fixture in tests/conftest.py builds it once per test module)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from indexing.build import index_paths
from indexing.store import Store
from rag.cli_commands import store_info
from rag.retrieve import Retriever

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=40,
                    suppress_health_check=[HealthCheck.too_slow])
ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["zebras graze on the savanna", "volcanoes erupt basalt lava", "saxophone reed"]
BASIS_FILES = ["pca.npy", "pca_energy.npy", "reduced_scale.npy", "full_scale.npy"]
SEGMENT_FILES = ["index.faiss", "full.e4m3", "chunks.sqlite"]
GEN_FILES = BASIS_FILES + SEGMENT_FILES
PARSED_BY_PYTHON = [f for f in GEN_FILES if f != "index.faiss"]  # FAISS's reader is not hardened
SEG = ("segments", 0)
MANIFEST_PATHS = [  # every field of the manifest, as a path of keys
    ("format",), ("format_version",), ("writer",), ("generation",), ("embedding",), ("counts",), ("basis",), ("segments",),
    *[("embedding", k) for k in ("model", "dim")], *[("counts", k) for k in ("chunks", "documents")],
    ("compression",), *[("compression", k) for k in ("pca_dims", "dtype", "ann", "pca_fit_vectors", "bytes_per_vector",
                                                    "index_key", "pca_energy_kept", "full_dtype", "full_bytes_per_vector")],
    ("chunker",), *[("chunker", k) for k in ("chunk_tokens", "overlap", "encoding")],
    ("basis", "dir"), ("basis", "files"), *[("basis", "files", f) for f in BASIS_FILES],
    *[("basis", "files", f, k) for f in BASIS_FILES for k in ("bytes", "sha256")],
    SEG, *[(*SEG, k) for k in ("dir", "rows", "documents", "files", "ann", "nlist", "nprobe", "bytes_per_vector", "deleted")],
    *[(*SEG, "files", f) for f in SEGMENT_FILES], *[(*SEG, "files", f, k) for f in SEGMENT_FILES for k in ("bytes", "sha256")],
]
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 2**63, 10**400]),
    st.floats(), st.text(max_size=12), st.sampled_from(["../x", "../../etc/passwd", "/etc", "g000001/..", "g²", "g-1"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
FLIPS = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=20)


class Pristine(dict):
    def __repr__(self) -> str:  # keeps Hypothesis's falsifying examples short
        return "<pristine store>"


def build_pristine(root: Path, embedder) -> Pristine:  # type: ignore[no-untyped-def]
    """Three small documents indexed into ``root``/store, and what the read paths answer on it
    (tests/conftest.py's module-scoped ``pristine`` fixture)."""
    docs = root / "docs"
    docs.mkdir()
    filler = " ".join(f"filler{i % 40}" for i in range(150))
    (docs / "zebra.txt").write_text(f"Zebras graze on the savanna and their stripes confuse flies.\n\n{filler}")
    (docs / "volcano.md").write_text(f"# Volcanoes\n\nVolcanoes erupt molten basalt lava through the crust.\n\n{filler}")
    (docs / "music.txt").write_text(f"The saxophone is a woodwind played with a single reed.\n\n{filler}")
    store = root / "store"
    index_paths([docs], store, embedder=embedder, chunk_tokens=64, overlap=8)
    return Pristine(store=store, docs=docs, embedder=embedder, answers=answers(store, docs, embedder))


def answers(store: Path, docs: Path, embedder, verify: bool = True) -> tuple:  # type: ignore[no-untyped-def]
    """What the read paths give: search hits and documents; info and an incremental run must not fail."""
    with Store.open(store, verify=verify) as s:
        r = Retriever(s, embedder)
        hits = [[(h.row, round(h.score, 5), h.source, h.text) for h in r.search(q, k=3)] for q in QUERIES]
        documents = s.documents()
    store_info(str(store))  # `rag info`
    if verify:
        assert not index_paths([docs], store, embedder=embedder).changed  # nothing changed on disk
    return hits, documents


@contextmanager
def copy_of(pristine: dict) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=pristine["store"].parent) as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(pristine["store"], store)
        yield store


def manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text(encoding="utf-8"))


def entry(m: dict, name: str) -> dict:
    """The manifest's ``files`` section that lists ``name`` (the basis or the only segment)."""
    return m["basis"]["files"] if name in BASIS_FILES else m["segments"][0]["files"]


def gen_file(store: Path, name: str) -> Path:
    m = manifest(store)
    return store / (m["basis"]["dir"] if name in BASIS_FILES else m["segments"][0]["dir"]) / name


def flip(file: Path, flips: list[tuple[float, int]]) -> None:
    """XOR ``mask`` into the byte at each relative position ``where``."""
    data = bytearray(file.read_bytes())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    file.write_bytes(bytes(data))
