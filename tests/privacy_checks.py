"""Privacy checks that tests and ``python -m tests.hostile`` share.

``outbound_attempts(root, work)`` runs ``rag index`` (OpenVINO embedding path), ``rag search``
and ``rag chat`` start-up from the checkout at ``root`` with the socket guard of
``tests/netguard`` and returns every attempt to reach a non-loopback address. ``beacon_requests``
lives in ``tests/e2e/beacon.py`` (it needs a browser).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

GUARD = Path(__file__).resolve().parent / "netguard"
# set by the user or CI, they would hide what the product itself turns off
CLEARED_ENV = (
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "GRADIO_ANALYTICS_ENABLED",
    "LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING", "DO_NOT_TRACK", "CI", "TF_BUILD", "JENKINS_URL",
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "RAG_LLM_MODEL",
)
DOCS = {
    "otters.txt": "Sea otters hold hands while they sleep so that they do not drift apart. " * 3,
    "bees.md": "# Bees\n\nHoney bees dance to tell each other where the flowers are. " * 3,
}


def guarded_env(root: Path, log: Path, home: Path) -> dict[str, str]:
    """The environment of a user who set nothing, with the guard on PYTHONPATH (HOME kept apart)."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV and not k.startswith("PYTHON")}
    env.update(PYTHONPATH=f"{GUARD}{os.pathsep}{root}", RAG_NETGUARD_LOG=str(log), HOME=str(home))
    return env


def read_log(log: Path) -> list[dict]:
    """The attempts the guard recorded (one JSON object per line)."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def free_port() -> int:
    """A free TCP port on loopback (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_chat(proc: subprocess.Popen, url: str, timeout: float = 180.0) -> None:
    """Wait until ``rag chat`` serves its page, config and API info."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"rag chat exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            for path in ("", "config", "gradio_api/info"):
                with urllib.request.urlopen(url + path, timeout=5) as response:
                    response.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"rag chat did not answer on {url} within {timeout}s") from None
            time.sleep(0.5)


def outbound_attempts(root: Path, work: Path, backend: str = "openvino") -> list[dict]:
    """Attempts to reach a non-loopback address by rag index, then rag search and rag chat start-up
    (side by side, to save time), run from the checkout at ``root``."""
    work.mkdir(parents=True, exist_ok=True)
    docs, store, log, home = work / "docs", work / "store", work / "net.log", work / "home"
    docs.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    env = guarded_env(root, log, home)
    rag = [sys.executable, "-m", "rag.cli"]

    def run(*args: str) -> None:
        done = subprocess.run([*rag, *args], env=env, cwd=work, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"rag {args[0]} exited {done.returncode}: {done.stderr[-2000:]}")

    run("index", str(docs), "--store", str(store), "--embed-backend", backend)
    port = free_port()
    chat = subprocess.Popen([*rag, "chat", "--store", str(store), "--port", str(port)], env=env, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        run("search", "do otters sleep holding hands", "--store", str(store))
        _wait_for_chat(chat, f"http://127.0.0.1:{port}/")
        time.sleep(2.0)  # launch-time background threads (analytics, version checks) run now
    finally:
        chat.terminate()
        chat.wait(timeout=30)
    return read_log(log)


def outbound_connections(root: Path, work: Path, backend: str = "openvino") -> int:
    """How many outbound (non-loopback) connection attempts the product made; 0 is the promise."""
    return len(outbound_attempts(root, work, backend))


def guard_catches(work: Path) -> int:
    """Attempts the guard records for a process that does try the network (the guard's own check)."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "self-check.log"
    code = "import socket\ntry:\n    socket.create_connection(('example.com', 80), timeout=2)\nexcept OSError:\n    pass\n"
    code += "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=2)\nexcept OSError:\n    pass\n"
    subprocess.run([sys.executable, "-c", code], env=guarded_env(Path.cwd(), log, work), timeout=60, check=True)
    return len(read_log(log))


BEACON_DOC = (
    "# Pangolins\n\n"
    "Pangolins are shy scaly mammals that roll into a tight armoured ball whenever predators threaten them "
    "![pangolin](http://127.0.0.1:{port}/beacon.png?leak=markdown-image) and wait until the danger has passed.\n\n"
    "Pangolins catch ants and termites with long sticky tongues that reach deep inside the insect nests "
    "<img src=\"http://127.0.0.1:{port}/img.png?leak=html-img\"> during their nightly foraging walks.\n"
)
BEACON_QUESTIONS = ("How do pangolins protect themselves from predators?", "How do pangolins catch ants and termites?")


class BeaconServer:
    """A loopback HTTP server that counts every request it receives (the paths are kept)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def beacon_requests(work: Path, browser: Any = None) -> int:
    """Requests that reached a beacon server whose URLs (a Markdown image and an <img> tag) sit in an
    indexed document, while a real browser asks questions whose answers quote them and opens the
    sources block. ``browser``: a Playwright browser (default: Debian's Chromium, started here).
    The app runs in this process. 0 is the promise."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                return beacon_requests(work, chromium)
            finally:
                chromium.close()
    from indexing.build import index_paths
    from ui.app import build_app, launch

    beacon = BeaconServer()
    app = None
    try:
        docs = work / "beacon-docs"
        docs.mkdir(parents=True, exist_ok=True)
        (docs / "pangolins.md").write_text(BEACON_DOC.format(port=beacon.port), encoding="utf-8")
        store = work / "beacon-store"
        index_paths([docs], store, chunk_tokens=128, overlap=8)
        port = free_port()
        app = launch(build_app(str(store), llm="extractive"), "127.0.0.1", port, block=False)
        page = browser.new_page()
        seen: list[str] = []  # every URL the page asked for that points at the beacon
        page.on("request", lambda r: seen.append(r.url) if f":{beacon.port}/" in r.url else None)
        page.goto(f"http://127.0.0.1:{port}/")
        chat = page.locator("#chatbot")
        for n, question in enumerate(BEACON_QUESTIONS, start=1):
            box = page.locator("#question textarea")
            box.fill(question)
            box.press("Enter")
            titles = chat.get_by_text("Sources (")
            titles.nth(n - 1).wait_for(timeout=90_000)
            page.wait_for_timeout(1_500)  # the finished event renders before the block can open
            titles.nth(n - 1).click()
            chat.get_by_text("pangolins.md").last.wait_for(state="visible", timeout=10_000)
        text = chat.inner_text()
        if "armoured ball" not in text or "sticky tongues" not in text:
            raise AssertionError(f"the answers did not quote the sentences with the beacon URLs: {text[:1500]!r}")
        if "beacon.png?leak=markdown-image" not in text or "img.png?leak=html-img" not in text:
            raise AssertionError(f"the document's markup is not shown as text: {text[:1500]!r}")
        page.wait_for_timeout(1_500)  # give any image load time to leave the page
        page.close()
        return max(len(beacon.paths), len(seen))
    finally:
        if app is not None:
            app.close()
        beacon.close()
