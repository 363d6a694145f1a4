"""Shared fixtures: a deterministic fake embedder, structured seeded vectors, a small document folder.

Nothing here downloads a model or touches the network; every random draw is seeded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

FAKE_MODEL = "fake/hash-64"
FAKE_DIM = 64
WORD = re.compile(r"[a-z0-9]+")

# The distinctive sentences of ``docs_folder``, one topic per file (two pages for the PDF).
ZEBRA = "Zebras graze on the savanna and their black and white stripes confuse biting flies."
VOLCANO = "Volcanoes erupt molten basalt lava when magma pressure breaks through the crust."
SAXOPHONE = "The saxophone is a woodwind instrument played with a single reed like a clarinet, though made of brass."
SCRIPT_SECRET = "tracking pixel quokka beacon"  # inside <script>: must never be indexed
GLACIER = "Glaciers carve deep fjords as compacted ice creeps slowly down the valley."
ICEBERG = "Icebergs calve from the glacier snout and drift south on cold ocean currents."


class FakeEmbedder:
    """Bag of hashed words: each lowercase word adds a few +-1 coordinates (blake2b), then unit norm.

    Texts sharing words get high inner products, so search results can be predicted by hand.
    """

    model_id = FAKE_MODEL
    dim = FAKE_DIM
    coords_per_word = 3

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        x = np.zeros((len(texts), self.dim), np.float32)  # (n, d)
        for i, text in enumerate(texts):
            for word in WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=2 * self.coords_per_word).digest()
                for j in range(self.coords_per_word):
                    coord, sign = digest[2 * j] % self.dim, 1.0 if digest[2 * j + 1] & 1 else -1.0
                    x[i, coord] += sign
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.maximum(norms, 1e-12)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A small store to damage copies of (tests/damaged_store.py), built once per test module."""
    from tests.damaged_store import build_pristine

    return build_pristine(tmp_path_factory.mktemp("hostile"), FakeEmbedder())


@pytest.fixture(scope="session")
def local_ray():  # type: ignore[no-untyped-def]
    """One local Ray (this machine's CPUs, loopback only) for every test that needs it; the fake
    embedder's module travels to Ray workers by value (they cannot import this conftest)."""
    import sys

    ray = pytest.importorskip("ray", reason="ray[data] is in the test extras: pip install -e '.[test]'")
    from indexing.ray_cluster import RayOptions, ray_session

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with ray_session(RayOptions()) as r:
        yield r


def structured(n: int, nq: int, d: int = 128, latent: int = 16, noise: float = 0.1, seed: int = 0):
    """Unit vectors of low intrinsic dimension: a latent Gaussian spread into d dims, plus noise.

    Returns xb (n, d) and xq (nq, d) float32 drawn from the same distribution.
    """
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((latent, d))  # (latent, d)

    def draw(m: int) -> np.ndarray:
        z = rng.standard_normal((m, latent)) @ A  # (m, d), per-coordinate std sqrt(latent)
        z += noise * np.sqrt(latent) * rng.standard_normal((m, d))
        return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(nq)


@pytest.fixture(scope="session")
def structured_vectors() -> tuple[np.ndarray, np.ndarray]:
    """xb (4000, 128), xq (50, 128): seeded unit vectors with a 16-d structure."""
    return structured(4000, 50)


def write_pdf(path: Path, pages: Sequence[str], title: str) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)  # invariant: byte-identical output
    c.setTitle(title)
    for text in pages:
        c.drawString(72, 760, text)
        c.showPage()
    c.save()


@pytest.fixture
def docs_folder(tmp_path: Path) -> Path:
    """A folder with one .txt, .md, .html and a 2-page .pdf, each on its own topic."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "zebra.txt").write_text(
        f"Field notes from the plains.\n\n{ZEBRA}\n\nThe herd moved north at dawn.\n", encoding="utf-8"
    )
    (folder / "volcano.md").write_text(
        f"# Volcano Notes\n\nSome geology.\n\n{VOLCANO}\n", encoding="utf-8"
    )
    (folder / "music.html").write_text(
        "<html><head><title>Saxophone Facts</title>"
        f"<script>var beacon = '{SCRIPT_SECRET}';</script></head>"
        f"<body><h1>Woodwinds</h1><p>{SAXOPHONE}</p></body></html>",
        encoding="utf-8",
    )
    write_pdf(folder / "ice.pdf", [GLACIER, ICEBERG], title="Glacier Report")
    return folder
