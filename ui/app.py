"""The browser chat: a Gradio app over one or more stores, streaming cited answers."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from indexing.build import index_paths
from indexing.embed import Embedder, load_embedder
from indexing.generations import current_generation
from indexing.load import SUPPORTED_SUFFIXES
from indexing.store import Store
from rag.answer import make_answerer
from rag.chat import Answer, RagChat
from rag.fusion import DEFAULT_MODE, MODES
from rag.prompt import Turn
from rag.retrieve import DEFAULT_K, DEFAULT_OVERSAMPLE, Retriever
from ui.safety import UploadLimit, answer_markdown, markdown_literal, plain_text, unique_upload_path

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # per file, enforced by Gradio where the bytes arrive (max_file_size)
MAX_REQUEST_BYTES = 4 * MAX_UPLOAD_BYTES  # per upload request (several files), enforced by UploadLimit
EMPTY_QUESTION = "Type a question first: the message was empty."
UPLOAD_DIR = "corpus"  # uploads live inside the store folder, next to its generations


# An upload that finds another writer (a `rag index` run) waits this long for it, then reports it
# was busy: a chat user cannot pass `--wait`, and a few minutes is what an incremental run takes.
UPLOAD_WAIT = 300.0


class Stores:
    """Open stores by path, one RagChat each, sharing embedders; reopened after an upload."""

    def __init__(self, llm: str | None, base_url: str | None, ray: Any = None) -> None:
        self.llm, self.base_url, self.ray = llm, base_url, ray  # ray: RayOptions for sharded search
        self._chats: dict[str, RagChat] = {}
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    def chat(self, store: str, verify: bool = True) -> RagChat:
        """The chat over ``store``; ``verify=False`` skips checksums (for a store this process just wrote)."""
        with self._lock:
            cached = self._chats.get(store)
            if cached is not None and cached.retriever.store.manifest.generation != current_generation(Path(store)):
                del self._chats[store]  # another writer (`rag index`) committed: answer from its generation
            if store not in self._chats:
                retriever = Retriever.open(store, verify=verify, ray=self.ray)  # a replaced one's shards end with it
                model = retriever.store.manifest.model
                if model not in self._embedders:
                    self._embedders[model] = load_embedder(model)
                retriever = Retriever(retriever.store, self._embedders[model], retriever.sharded)
                self._chats[store] = RagChat(retriever, make_answerer(retriever.embedder, self.llm, self.base_url))
            return self._chats[store]

    def add_files(self, store: str, files: list[Path], progress: Any = None) -> str:
        """Copy uploads into the store's corpus folder and index them incrementally."""
        with self._write_lock:
            chat = self.chat(store)
            target = Path(store) / UPLOAD_DIR
            target.mkdir(exist_ok=True)
            copies, renamed = [], []
            for f in files:
                name = Path(f).name  # the name only: nothing from the browser picks a folder
                dest, same = unique_upload_path(target, name, Path(f))  # never replaces another file
                if not same:
                    try:
                        shutil.copyfile(f, dest)
                    except OSError:
                        dest.unlink(missing_ok=True)  # give the reserved name back
                        raise
                if dest.name != name:
                    renamed.append(f"{name} as {dest.name}")
                copies.append(dest)
            report = index_paths(copies, store, embedder=chat.retriever.embedder, prune=False, progress=progress, wait=UPLOAD_WAIT)
            with self._lock:
                old = self._chats.pop(store, None)
            if old is not None:
                self.chat(store, verify=False)
        lines = [f"Added {len(report.added)}, updated {len(report.updated)}, unchanged {len(report.unchanged)}; store has {report.chunks} chunks."]
        lines += [f"Kept {', '.join(renamed)} (another file of that name is in the store)."] if renamed else []
        lines += [f"Skipped {Path(s.path).name}: {s.reason}" for s in report.skipped]
        return "\n".join(lines)


def find_stores(folder: Path | None, extra: list[str]) -> list[str]:
    """Stores given explicitly, plus every sub-folder of ``folder`` holding a manifest."""
    found = list(dict.fromkeys(str(Path(s)) for s in extra))
    if folder is not None and folder.is_dir():
        found += [str(p) for p in sorted(folder.iterdir()) if Store.exists(p) and str(p) not in found]
    return found


def history_turns(history: list[dict[str, Any]]) -> list[Turn]:
    """Chatbot messages -> Turns, leaving out the sources blocks (messages with metadata)."""
    turns = []
    for msg in history:
        if msg.get("metadata") or msg.get("role") not in ("user", "assistant"):
            continue
        content = msg.get("content")
        if isinstance(content, list):  # Gradio 6 may hand back [{"type": "text", "text": ...}]
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        if isinstance(content, str) and content.strip():
            turns.append(Turn(msg["role"], plain_text(content) if msg["role"] == "assistant" else content))
    return turns


def sources_markdown(answer: Answer, max_chars: int = 700) -> str:
    """The cited chunks (or all retrieved ones when nothing was cited): file, page, score, passage."""
    numbers = answer.cited or list(range(1, len(answer.sources) + 1))
    blocks = []
    for n in numbers:
        hit = answer.sources[n - 1]
        page = f" · page {hit.page}" if hit.page else ""
        passage = " ".join(hit.text.split())
        passage = markdown_literal(passage if len(passage) <= max_chars else passage[:max_chars] + "…")
        blocks.append(f"**[{n}] {markdown_literal(hit.source)}**{page} · chars {hit.start}–{hit.end} · score {hit.score:.3f}\n\n> {passage}")
    return "\n\n".join(blocks) or "No sources were retrieved."


def build_app(
    store: str,
    stores_dir: str | None = None,
    llm: str | None = None,
    base_url: str | None = None,
    allow_upload: bool = True,
    k: int = DEFAULT_K,
    oversample: int = DEFAULT_OVERSAMPLE,
    concurrency: int = 8,
    mode: str = DEFAULT_MODE,
    ray: Any = None,
):  # type: ignore[no-untyped-def]
    """The Gradio Blocks app. ``allow_upload=False`` gives a read-only deployment; ``ray``
    (RayOptions) searches each store's segments on Ray actors."""
    import gradio as gr

    stores = Stores(llm, base_url, ray)
    choices = find_stores(Path(stores_dir) if stores_dir else None, [store])
    answerer_name = stores.chat(choices[0]).answerer.name

    def respond(message: str, history: list[dict[str, Any]], store_path: str, k_: float, oversample_: float,
                mode_: str = mode) -> Iterator[Any]:
        if not message or not message.strip():
            raise gr.Error(EMPTY_QUESTION)
        turns = history_turns(history)
        history = [*history, {"role": "user", "content": message}]
        yield [*history, {"role": "assistant", "content": "…"}], ""
        chat = stores.chat(store_path)
        answer = None
        for answer in chat.stream(message, turns, int(k_), int(oversample_), mode_):
            yield [*history, {"role": "assistant", "content": answer_markdown(answer.text)}], ""
        if answer is not None:
            cited = len(answer.cited)
            sources = {
                "role": "assistant",
                "content": sources_markdown(answer),
                "metadata": {"title": f"Sources ({cited} cited of {len(answer.sources)} retrieved, {answer.mode} search)", "status": "done"},
            }
            yield [*history, {"role": "assistant", "content": answer_markdown(answer.text)}, sources], ""

    def upload(files: list[Any] | None, store_path: str, progress: Any = gr.Progress()) -> str:
        if not files:
            return "Choose files first."
        paths = [Path(getattr(f, "name", f)) for f in files]
        bad = [p.name for p in paths if p.suffix.lower() not in SUPPORTED_SUFFIXES or p.stat().st_size > MAX_UPLOAD_BYTES]
        if bad:
            return f"Not added (type not txt/md/html/pdf, or over {MAX_UPLOAD_BYTES // 2**20} MB): {', '.join(bad)}"
        return stores.add_files(store_path, paths, progress=lambda stage, done, total: progress((done, total), desc=stage))

    with gr.Blocks(title="Compressed RAG chat") as app:
        gr.Markdown(f"## Chat with your documents\nAnswerer: **{markdown_literal(answerer_name)}**", elem_id="answerer")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", height=520, elem_id="chatbot")
                box = gr.Textbox(placeholder="Ask a question about the documents…", show_label=False, elem_id="question")
                send = gr.Button("Send", variant="primary", elem_id="send")
            with gr.Column(scale=1):
                labelled = [(Path(c).name, c) for c in choices]
                picked = gr.Dropdown(choices=labelled, value=choices[0], label="Store", elem_id="store")
                k_slider = gr.Slider(1, 20, value=k, step=1, label="k (chunks)")
                os_slider = gr.Slider(1, 32, value=oversample, step=1, label="oversample (rerank candidates = k × this)")
                mode_radio = gr.Radio(list(MODES), value=mode, label="Search mode", elem_id="mode")
                if allow_upload:
                    files = gr.File(file_count="multiple", file_types=list(SUPPORTED_SUFFIXES), label="Add documents")
                    add = gr.Button("Add to store", elem_id="add")
                    status = gr.Markdown(elem_id="upload-status")
                    add.click(upload, [files, picked], status, concurrency_limit=1, api_name="upload")
        inputs = [box, chatbot, picked, k_slider, os_slider, mode_radio]
        box.submit(respond, inputs, [chatbot, box], concurrency_limit=concurrency, api_name="ask")
        send.click(respond, inputs, [chatbot, box], concurrency_limit=concurrency, api_name="ask_button")
    app.rag_read_only = not allow_upload
    return app


def launch(app: Any, host: str = "127.0.0.1", port: int = 7860, block: bool = True, read_only: bool | None = None) -> Any:
    """Serve ``app``; binds to loopback unless ``host`` says otherwise. Upload limits hold where the
    bytes arrive; a read-only app (``build_app(allow_upload=False)``) accepts no upload. Returns the app."""
    from starlette.middleware import Middleware

    read_only = getattr(app, "rag_read_only", False) if read_only is None else read_only
    limit = Middleware(UploadLimit, max_bytes=MAX_REQUEST_BYTES, read_only=read_only)
    app.queue().launch(
        server_name=host, server_port=port, show_error=True, prevent_thread_lock=not block,
        max_file_size=0 if read_only else MAX_UPLOAD_BYTES, app_kwargs={"middleware": [limit]},
    )
    return app
