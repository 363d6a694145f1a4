"""The Gradio app under load and from a hostile client: parallel chat sessions get their own cited
answers while an upload re-indexes the store; uploads stay inside <store>/corpus/; loopback by
default; read-only mode has no upload endpoint."""

from __future__ import annotations

import inspect
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from gradio_client import Client, handle_file

DOC_WORDS = {  # words only that document's sentences contain
    "animals.md": ("zebra", "giraffe", "dazzle"),
    "geology.txt": ("volcan", "basalt", "magma", "glacier"),
    "music.html": ("saxophone", "cello", "adolphe"),
    "tapir.txt": ("tapir", "prehensile"),
}
QUESTIONS = [  # (question, its document, a word the answer must contain)
    ("What is a group of zebras called?", "animals.md", "dazzle"),
    ("What do you call a herd of zebras?", "animals.md", "dazzle"),
    ("Why do zebras have black and white stripes?", "animals.md", "stripes"),
    ("Which animal is the tallest on land?", "animals.md", "giraffes"),
    ("Are giraffes the tallest land animals?", "animals.md", "giraffes"),
    ("What confuses the biting flies around zebras?", "animals.md", "stripes"),
    ("Tell me the collective noun for zebras.", "animals.md", "dazzle"),
    ("Why do volcanoes erupt?", "geology.txt", "magma"),
    ("What is the most common volcanic rock?", "geology.txt", "basalt"),
    ("What shape of valley do glaciers carve?", "geology.txt", "u-shaped"),
    ("How do glaciers move?", "geology.txt", "downhill"),
    ("When does a volcano erupt?", "geology.txt", "magma"),
    ("Which rock is most common in volcanoes?", "geology.txt", "basalt"),
    ("What do glaciers carve as they move downhill?", "geology.txt", "valleys"),
    ("Who invented the saxophone?", "music.html", "adolphe sax"),
    ("When was the saxophone invented?", "music.html", "1840s"),
    ("How many strings does a cello have?", "music.html", "four strings"),
    ("How are the strings of a cello tuned?", "music.html", "fifths"),
    ("Which instrument did Adolphe Sax create?", "music.html", "saxophone"),
    ("In what decade was the saxophone created?", "music.html", "1840s"),
]
TAPIR = "Tapirs are shy rainforest mammals with a short prehensile snout. They feed on fruit and leaves at night."


def text(message: dict) -> str:
    """The message as plain text (the app escapes document text for Markdown)."""
    from ui.safety import plain_text

    content = message["content"]
    return plain_text(" ".join(p.get("text", "") for p in content) if isinstance(content, list) else content)


def ask(url: str, store: Path, question: str, client: Client | None = None) -> tuple[str, str]:
    """One session, k=1. Returns (answer text, sources block text)."""
    job = (client or Client(url, verbose=False)).submit(question, [], str(store), 1, 8, api_name="/ask")
    final = job.result(timeout=180)[0]
    return text(final[-2]), text(final[-1])


def check(answer: str, sources: str, question: str, doc: str, word: str) -> None:
    low = answer.lower()
    assert word in low, f"{question!r}: {word!r} missing from {answer!r}"
    assert "[1]" in answer and re.search(rf"\*\*\[1\] (\S*/)?{re.escape(doc)}\*\*", sources.replace("\\", "")), sources[:200]
    for other, words in DOC_WORDS.items():
        if other != doc:
            assert not any(w in low for w in words), f"{question!r} got text of {other}: {answer!r}"


def sentences(answer: str) -> set[str]:
    return {s.strip() for s in re.split(r"\[\d+\]", answer) if s.strip()}


def test_parallel_sessions_get_their_own_answers_during_an_upload(app_url, small_store, tmp_path):
    serial = {q: ask(app_url, small_store, q) for q, _, _ in QUESTIONS[:3]}  # warm up and a baseline
    note = tmp_path / "tapir.txt"
    note.write_text(TAPIR, encoding="utf-8")
    with ThreadPoolExecutor(max_workers=len(QUESTIONS) + 1) as pool:
        clients = list(pool.map(lambda _: Client(app_url, verbose=False), QUESTIONS))  # connected before the start
        start, first_done = threading.Barrier(len(QUESTIONS)), threading.Event()

        def session(i: int) -> tuple[str, str]:
            start.wait(timeout=60)
            try:
                return ask(app_url, small_store, QUESTIONS[i][0], clients[i])
            finally:
                first_done.set()

        def upload() -> str:  # starts once answers are flowing, while most sessions are still queued
            first_done.wait(timeout=120)
            return Client(app_url, verbose=False).predict([handle_file(str(note))], str(small_store), api_name="/upload")

        uploading = pool.submit(upload)
        futures = [pool.submit(session, i) for i in range(len(QUESTIONS))]
        results, errors = [], []
        for item, future in zip(QUESTIONS, futures):
            try:
                results.append((item, future.result(timeout=300)))
            except Exception as exc:  # noqa: BLE001 - collect every failure, then report them together
                errors.append(exc)
        status = uploading.result(timeout=300)
    assert not errors, f"{len(errors)} of {len(QUESTIONS)} sessions failed, first: {errors[0]!r}"
    for (question, doc, word), (answer, sources) in results:
        check(answer, sources, question, doc, word)
        if question in serial:
            assert sentences(answer) == sentences(serial[question][0]), f"{question!r}: another answer in parallel"
    assert status.startswith("Added 1"), status
    answer, sources = ask(app_url, small_store, "What kind of snout do tapirs have?")
    check(answer, sources, "tapir snout", "tapir.txt", "prehensile")


def call_raw(url: str, api: str, data: list) -> tuple[str, object]:
    """A call over the plain HTTP API, as any client could send it: (event, data)."""
    event_id = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, timeout=30).json()["event_id"]
    with httpx.stream("GET", f"{url}gradio_api/call/{api}/{event_id}", timeout=120) as response:
        lines = [line for line in response.iter_lines() if line]
    event = [line.split(": ", 1)[1] for line in lines if line.startswith("event:")][-1]
    payload = [line.split(": ", 1)[1] for line in lines if line.startswith("data:")][-1]
    return event, json.loads(payload)


def files_outside_corpus(root: Path, store: Path, name: str) -> list[Path]:
    return [p for p in root.rglob(name) if store / "corpus" not in p.parents]


def test_upload_names_cannot_leave_the_corpus_folder(app_url, small_store):
    root = small_store.parent.parent  # the e2e temporary folder
    response = httpx.post(f"{app_url}gradio_api/upload", timeout=30,
                          files=[("files", ("../../evil.txt", b"Lichens are partnerships of fungi and algae.", "text/plain"))])
    (path,) = response.json()
    event, data = call_raw(app_url, "upload", [[{"path": path, "orig_name": "../../evil.txt",
                                                  "meta": {"_type": "gradio.FileData"}}], str(small_store)])
    assert files_outside_corpus(root, small_store, "evil.txt") == [], "an upload was written outside corpus/"
    if event == "complete" and "Added" in data[0]:
        assert (small_store / "corpus" / "evil.txt").is_file()


def test_upload_cannot_pull_in_a_server_file(app_url, small_store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("The vault code is 4242.", encoding="utf-8")
    event, data = call_raw(app_url, "upload", [[{"path": str(secret), "orig_name": "secret.txt",
                                                  "meta": {"_type": "gradio.FileData"}}], str(small_store)])
    assert event == "error", data
    assert not (small_store / "corpus" / "secret.txt").exists()


def test_upload_over_the_size_limit_is_refused(app_url, small_store, tmp_path, monkeypatch):
    import ui.app

    monkeypatch.setattr(ui.app, "MAX_UPLOAD_BYTES", 1000)  # the app runs in this process
    big = tmp_path / "manatee.txt"
    big.write_text("Manatees graze on seagrass in warm shallow water. " * 40, encoding="utf-8")
    status = Client(app_url, verbose=False).predict([handle_file(str(big))], str(small_store), api_name="/upload")
    assert status.startswith("Not added") and "manatee.txt" in status
    assert not (small_store / "corpus" / "manatee.txt").exists()


def test_loopback_by_default_and_read_only_mode(monkeypatch, tmp_path, fake_embedder):
    import ui.app
    from indexing.build import index_paths
    from rag.cli import main

    assert inspect.signature(ui.app.launch).parameters["host"].default == "127.0.0.1"
    seen: dict = {}

    class FakeApp:
        def queue(self):  # type: ignore[no-untyped-def]
            return self

        def launch(self, **kwargs):  # type: ignore[no-untyped-def]
            seen["launch"] = kwargs

    ui.app.launch(FakeApp(), block=False)
    assert seen["launch"]["server_name"] == "127.0.0.1"
    monkeypatch.setattr(ui.app, "build_app", lambda *a, **kw: seen.setdefault("build", kw) and FakeApp())
    assert main(["chat", "--store", "s", "--read-only"]) == 0
    assert seen["build"]["allow_upload"] is False and seen["launch"]["server_name"] == "127.0.0.1"
    assert seen["launch"]["max_file_size"] == 0  # read-only: Gradio accepts no upload bytes

    monkeypatch.undo()
    monkeypatch.setattr(ui.app, "load_embedder", lambda model: type(fake_embedder)())
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Otters hold hands while they sleep.", encoding="utf-8")
    index_paths([tmp_path / "docs"], tmp_path / "store", embedder=fake_embedder)

    def api_names(allow_upload: bool) -> set:
        app = ui.app.build_app(str(tmp_path / "store"), llm="extractive", allow_upload=allow_upload)
        return {fn.api_name for fn in app.fns.values()}

    assert "upload" in api_names(True)
    assert "upload" not in api_names(False) and "ask" in api_names(False)
