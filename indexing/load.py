"""Load documents (txt, md, html, pdf) from files and folders into plain text pages."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from indexing.errors import LoadError
from indexing.files import sha256_file
from indexing.generations import MARKER as STORE_MARKER  # a folder a store writer made

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Page:
    """One page of text; ``number`` is 1-based for PDFs and ``None`` for flat text."""

    number: int | None
    text: str


@dataclass(frozen=True)
class Document:
    """A loaded file: where it is, what to call it, and its text by page."""

    path: str  # absolute path: the document's identity in a store
    source: str  # what citations show: the path relative to the folder that was indexed
    title: str
    sha256: str
    pages: list[Page] = field(default_factory=list)


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class SourceFile:
    """A file found on disk that may be indexed."""

    path: Path
    source: str


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[SourceFile], list[Skipped]]:
    """Walk files and folders (recursively, not following symlinked folders) for supported files.
    Hidden names, and the files of a store kept inside a walked folder, are passed over silently."""
    found: dict[Path, SourceFile] = {}
    skipped: list[Skipped] = []
    for raw in paths:
        root = Path(raw)
        try:
            root.stat()
        except FileNotFoundError:
            skipped.append(Skipped(display_path(root), "does not exist"))
            continue
        except OSError as exc:  # name too long, permission denied, not a directory ...
            skipped.append(Skipped(display_path(root), f"cannot read: {exc.strerror or exc}"))
            continue
        if root.is_file():
            _consider(root, root.name, found, skipped)
            continue
        base = root.resolve()
        def unreadable(exc: OSError) -> None:  # os.walk would drop a folder it cannot list silently
            skipped.append(Skipped(display_path(exc.filename or base), f"cannot read folder: {exc.strerror or exc}"))

        for dirpath, dirnames, filenames in os.walk(base, followlinks=False, onerror=unreadable):
            made = {d for d in dirnames if _store_made(Path(dirpath) / d)}  # a store's generations
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in made)
            for name in sorted(filenames):
                if name.startswith(".") or (made and name == "manifest.json"):  # a store inside the folder
                    continue
                path = Path(dirpath) / name
                _consider(path, f"{base.name}/{path.relative_to(base).as_posix()}", found, skipped)
    return list(found.values()), skipped


def _store_made(folder: Path) -> bool:
    try:
        return (folder / STORE_MARKER).is_file()
    except OSError:  # a path too long to check: not one a store made
        return False


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (kept by Python as surrogates) become ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _consider(path: Path, source: str, found: dict[Path, SourceFile], skipped: list[Skipped]) -> None:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        skipped.append(Skipped(display_path(path), f"unsupported type {path.suffix or '(none)'}"))
        return
    if display_path(path) != str(path):
        skipped.append(Skipped(display_path(path), "file name is not valid UTF-8; rename the file to index it"))
        return
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # broken link or symlink loop
        skipped.append(Skipped(str(path), f"cannot resolve path: {exc}"))
        return
    if not resolved.is_file():
        skipped.append(Skipped(str(path), "not a regular file"))
        return
    if resolved.suffix.lower() not in SUPPORTED_SUFFIXES:  # e.g. a link x.txt -> store/.lock: reading
        # the lock file and closing it would drop this process's POSIX lock on it
        skipped.append(Skipped(str(path), f"links to a file of unsupported type {resolved.suffix or '(none)'}"))
        return
    found.setdefault(resolved, SourceFile(resolved, source))


def load_file(path: Path, source: str | None = None, sha256: str | None = None) -> Document:
    """Read one supported file into a Document; raise LoadError saying why it cannot be used."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"cannot read {path}: {exc.strerror}") from exc
    if size == 0:
        raise LoadError("empty file")
    if size > MAX_FILE_BYTES:
        raise LoadError(f"file is {size} bytes, over the {MAX_FILE_BYTES} byte limit")
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        title, pages = _read_pdf(path)
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LoadError(f"cannot read {path}: {exc.strerror or exc}") from exc
        text = _decode(data)
        if suffix in (".html", ".htm"):
            title, text = _html_to_text(text)
        else:
            title = _markdown_title(text) if suffix in (".md", ".markdown") else ""
        pages = [Page(None, text)]
    pages = [p for p in pages if p.text.strip()]
    if not pages:
        raise LoadError("no text found" + (" (a scanned PDF has no text layer)" if suffix == ".pdf" else ""))
    return Document(
        path=str(path.resolve()),
        source=source or path.name,
        title=title or path.stem,
        sha256=sha256 or sha256_file(path),
        pages=pages,
    )


def _decode(data: bytes) -> str:
    if b"\x00" in data:  # anywhere, not only in the first block: text files have no NUL bytes
        raise LoadError("binary content (NUL bytes) in a text file")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise LoadError("text is neither UTF-8 nor cp1252")


def _markdown_title(text: str) -> str:
    match = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else ""


def _html_to_text(html: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    text = soup.get_text("\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return title, text


def _read_pdf(path: Path) -> tuple[str, list[Page]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF (needs a password)")
        meta = reader.metadata
        title = (meta.title or "") if meta else ""
        pages = [Page(i + 1, page.extract_text() or "") for i, page in enumerate(reader.pages)]
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise LoadError(f"unreadable PDF: {exc}") from exc
    except Exception as exc:  # pypdf raises many kinds on corrupt files
        if exc.__class__.__module__.startswith(("pypdf", "cryptography")):
            raise LoadError(f"unreadable PDF: {exc}") from exc
        raise
    return title.strip(), pages
