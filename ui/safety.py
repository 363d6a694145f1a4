"""What the chat app does with untrusted input: document text shown as text, upload limits where
the bytes arrive, and upload names that never replace another file. Tested in tests/e2e/."""

from __future__ import annotations

import filecmp
import html
import os
import re
from pathlib import Path
from typing import Any

_PUNCTUATION = re.compile(r"([!-%'-/:;=?-@\[-`{-~])")  # ASCII punctuation but & < > (HTML-escaped instead)
_ESCAPED = re.compile(r"\\([!-%'-/:;=?-@\[-`{-~])")
_CITATION = re.compile(r"(\[\d{1,3}\])")


def markdown_literal(text: str) -> str:
    """``text`` shown as itself in Markdown: every ASCII punctuation mark backslash-escaped and
    ``& < >`` HTML-escaped, so no link, image, HTML tag or formula can form from it."""
    return html.escape(_PUNCTUATION.sub(r"\\\1", text), quote=False)


def answer_markdown(text: str) -> str:
    """An answer for the chat: all text literal (it quotes documents, or a model that read them)
    except the product's own citation markers ``[n]``, which stay as they are."""
    return "".join(part if _CITATION.fullmatch(part) else markdown_literal(part) for part in _CITATION.split(text))


def plain_text(markdown: str) -> str:
    """The inverse of ``markdown_literal``/``answer_markdown``: the text a model should see again."""
    return _ESCAPED.sub(r"\1", html.unescape(markdown))


def unique_upload_path(folder: Path, name: str, upload: Path) -> tuple[Path, bool]:
    """Where to keep ``upload`` in ``folder``: ``name``, or ``stem-2.ext``, ``stem-3.ext``... when another
    file holds that name. Returns (path, True) when a file with the same content already has the name
    (nothing to copy). The returned new name is reserved (created empty) atomically."""
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in range(1, 10_000):
        path = folder / (name if n == 1 else f"{stem}-{n}{suffix}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
            return path, False
        except FileExistsError:
            if path.is_file() and not path.is_symlink() and filecmp.cmp(path, upload, shallow=False):
                return path, True
    raise FileExistsError(f"too many files named like {name!r} in {folder}")


class UploadLimit:
    """ASGI middleware in front of Gradio: a request that carries files (a multipart body, or any
    POST to an upload route) must declare its size and stay within ``max_bytes``; with
    ``read_only`` every such request is refused (403), so no bytes are accepted at all. Any other
    request body may hold at most ``OTHER_MAX_BYTES``."""

    UPLOAD_ROUTES = ("/upload", "/process_recording")
    OTHER_MAX_BYTES = 16 * 2**20  # any other request body (questions, chat history): Gradio reads it into memory

    def __init__(self, app: Any, max_bytes: int, read_only: bool = False) -> None:
        self.app, self.max_bytes, self.read_only = app, max_bytes, read_only

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS") and self._carries_files(scope):
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length", b"").decode("latin-1")
            if self.read_only:
                return await _refuse(send, 403, "This chat is read-only: uploads are turned off.")
            if not length.isdigit() or b"transfer-encoding" in headers:  # chunked: the length would be a lie
                return await _refuse(send, 411, "Uploads must declare their size (Content-Length, not chunked).")
            if int(length) > self.max_bytes:
                return await _refuse(send, 413, f"Upload too large: the limit is {self.max_bytes // 2**20} MB.")
            receive = _at_most(receive, int(length))
        elif scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            length = dict(scope.get("headers") or []).get(b"content-length", b"").decode("latin-1")
            if length.isdigit() and int(length) > self.OTHER_MAX_BYTES:  # a 600 MB JSON body took 2.3 GB
                return await _refuse(send, 413, f"Request too large: the limit is {self.OTHER_MAX_BYTES // 2**20} MB.")
            receive = _at_most(receive, self.OTHER_MAX_BYTES)
        await self.app(scope, receive, send)

    def _carries_files(self, scope: dict) -> bool:
        path = scope.get("path", "").rstrip("/")
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
        return path.endswith(self.UPLOAD_ROUTES) or content_type.lower().startswith(b"multipart/")


def _at_most(receive: Any, limit: int) -> Any:
    """``receive`` that ends the request (a disconnect) once the body passes ``limit`` bytes."""
    seen = 0

    async def counted() -> dict:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        return {"type": "http.disconnect"} if seen > limit else message

    return counted


async def _refuse(send: Any, status: int, message: str) -> None:
    body = message.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
