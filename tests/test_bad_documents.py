"""Bad input files through `rag index` (in-process, fake embedder): each is skipped with one line
saying why, the rest is indexed, the exit code is 3 when anything was skipped, and nothing already
in the store is lost."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

import indexing.load
from indexing.manifest import MANIFEST
from indexing.store import Store
from rag.cli import EXIT_ERROR, EXIT_SKIPPED, main

MODEL = "fake/hash-64"
LIMIT = 4096  # MAX_FILE_BYTES for these tests, instead of writing 64 MB
ZEBRA = "Zebras graze on the savanna and their black and white stripes confuse biting flies."
VOLCANO = "Volcanoes erupt molten basalt lava when magma pressure breaks through the crust."
CAFE = "Le café servait une crème brûlée à la clientèle naïve — “délicieux”, disait-on."
GOOD = {"zebra.txt", "volcano.md", "ice.pdf", "menu.txt"}
REASONS = {  # bad file -> a word its reason must contain
    "empty.txt": "empty", "blank.md": "no text", "binary.txt": "binary", "garbage.txt": "neither UTF-8 nor cp1252",
    "big.txt": f"{LIMIT} byte limit", "secret.pdf": "encrypted", "corrupt.pdf": "unreadable PDF",
    "loop_a.txt": "resolve", "loop_b.txt": "resolve", "fifo.txt": "not a regular file",
    "photo.png": "unsupported type .png", "Makefile": "unsupported type (none)",
}


@pytest.fixture(autouse=True)
def fake_models(monkeypatch, fake_embedder):
    """Every embedder load gives the fake; the file size limit is small."""
    import indexing.build
    import indexing.embed
    import rag.retrieve

    for module in (indexing.embed, indexing.build, rag.retrieve):
        monkeypatch.setattr(module, "load_embedder", lambda model=MODEL, base_url=None, backend="auto": type(fake_embedder)())
    monkeypatch.setattr(indexing.load, "MAX_FILE_BYTES", LIMIT)


def rag(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_pdf(path: Path, text: str, encrypt: object = None) -> None:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), invariant=1, encrypt=encrypt)
    pdf.drawString(72, 760, text)
    pdf.showPage()
    pdf.save()


def write_good(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zebra.txt").write_text(f"Field notes.\n\n{ZEBRA}\n", encoding="utf-8")
    (folder / "volcano.md").write_text(f"# Volcano Notes\n\n{VOLCANO}\n", encoding="utf-8")
    write_pdf(folder / "ice.pdf", "Glaciers carve deep fjords as compacted ice creeps down.")
    (folder / "menu.txt").write_bytes(CAFE.encode("cp1252"))  # not UTF-8: decoded as cp1252


def write_bad(folder: Path) -> None:
    from reportlab.lib.pdfencrypt import StandardEncryption

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_text("   \n\n\t\n", encoding="utf-8")
    (folder / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.randrange(256) for _ in range(500)))
    # no NUL, and 0x81 is neither a UTF-8 start byte nor defined in cp1252
    (folder / "garbage.txt").write_bytes(bytes(rng.choice([0x81, 0x8D, *range(0x20, 0x7F)]) for _ in range(600)))
    (folder / "big.txt").write_text("Oversized but otherwise fine text. " * (LIMIT // 30), encoding="utf-8")
    write_pdf(folder / "secret.pdf", "Pelicans migrate at night.", StandardEncryption("pw", ownerPassword="owner"))
    write_pdf(folder / "whole.pdf", "Ostriches cannot fly but run fast.")
    (folder / "corrupt.pdf").write_bytes((folder / "whole.pdf").read_bytes()[:400])
    (folder / "whole.pdf").unlink()
    os.symlink("loop_b.txt", folder / "loop_a.txt")
    os.symlink("loop_a.txt", folder / "loop_b.txt")
    os.mkfifo(folder / "fifo.txt")  # reading it would block forever
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "Makefile").write_text("all:\n\techo hi\n", encoding="utf-8")
    (folder / ".hidden.txt").write_text("Hidden files are not indexed and not reported.", encoding="utf-8")


def content(store: Path) -> tuple[str, dict[str, str], int]:
    with Store.open(store) as s:
        return s.manifest.generation, {p: sha for p, (sha, _, _) in s.documents().items()}, s.n


def skipped_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("skipped ")]


def test_empty_folder_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    store = tmp_path / "store"
    code, out, err = rag(capsys, "index", str(tmp_path / "empty"), "--store", str(store), "--model", MODEL)
    assert code == EXIT_ERROR
    assert err.startswith("error: nothing to index") and len(err.strip().splitlines()) == 1
    assert not (store / MANIFEST).exists()
    assert not store.exists() or set(os.listdir(store)) <= {".lock"}  # no generation, no tmp folder


def test_bad_files_are_skipped_with_a_reason_and_the_rest_is_indexed(tmp_path, capsys):
    folder = tmp_path / "docs"
    write_good(folder)
    write_bad(folder)
    store = tmp_path / "store"
    code, out, err = rag(capsys, "index", str(folder), "--store", str(store), "--model", MODEL, "--json")
    assert code == EXIT_SKIPPED
    lines = skipped_lines(err)
    assert len(lines) == len(REASONS), "\n".join(lines)
    for name, word in REASONS.items():
        mine = [line for line in lines if line.split(": ", 1)[0].endswith("/" + name)]
        assert len(mine) == 1, f"{name}: {mine}"
        assert word.lower() in mine[0].lower(), mine[0]
    summary = json.loads(out)
    assert (summary["added"], summary["skipped"]) == (len(GOOD), len(REASONS))
    assert {Path(s["path"]).name for s in summary["skipped_files"]} == set(REASONS)
    _, docs, _ = content(store)
    assert {Path(p).name for p in docs} == GOOD
    with Store.open(store) as s:
        texts = " ".join(c.text for c in s.chunks(list(range(s.n))))
    assert "café" in texts and "naïve" in texts and "“délicieux”" in texts
    assert "Oversized" not in texts and "Pelicans" not in texts and "Hidden" not in texts


def test_exit_code_is_zero_when_nothing_was_skipped(tmp_path, capsys):
    write_good(tmp_path / "docs")
    args = ("index", str(tmp_path / "docs"), "--store", str(tmp_path / "store"), "--model", MODEL)
    code, out, err = rag(capsys, *args)
    assert (code, skipped_lines(err)) == (0, [])
    assert "added=4" in out and "skipped=0" in out
    code, out, err = rag(capsys, *args)  # unchanged: still 0
    assert (code, skipped_lines(err)) == (0, []) and "unchanged=4" in out


def test_a_later_run_with_only_bad_files_loses_nothing(tmp_path, capsys):
    good, bad, store = tmp_path / "docs", tmp_path / "bad", tmp_path / "store"
    write_good(good)
    write_bad(bad)
    assert rag(capsys, "index", str(good), "--store", str(store), "--model", MODEL)[0] == 0
    before = content(store)
    code, out, err = rag(capsys, "index", str(bad), "--store", str(store))  # another folder of bad files only
    assert code == EXIT_SKIPPED and len(skipped_lines(err)) == len(REASONS)
    assert content(store) == before
    for file in good.iterdir():  # the indexed files themselves turn bad in place
        file.write_bytes(b"\x00\x01binary now" if file.suffix != ".pdf" else b"%PDF-1.4 truncated")
    code, out, err = rag(capsys, "index", str(good), "--store", str(store))
    assert code == EXIT_SKIPPED and len(skipped_lines(err)) == len(GOOD)
    assert content(store) == before, "documents already in the store were dropped"
    code, out, _ = rag(capsys, "search", "zebras graze on the savanna", "--store", str(store), "--json")
    assert code == 0 and json.loads(out)[0]["source"] == "docs/zebra.txt"


def test_nul_bytes_after_the_first_block_are_binary(tmp_path, capsys, monkeypatch):
    """Text for 10 KB, then binary: skipped as binary, not indexed as garbage chunks."""
    monkeypatch.setattr(indexing.load, "MAX_FILE_BYTES", 1 << 20)
    folder = tmp_path / "docs"
    write_good(folder)
    (folder / "late.txt").write_bytes(b"Plain words at the start. " * 400 + b"\x00\x01\x02\xffELF" * 50)
    code, out, err = rag(capsys, "index", str(folder), "--store", str(tmp_path / "store"), "--model", MODEL)
    assert code == EXIT_SKIPPED
    assert skipped_lines(err) == [f"skipped {folder / 'late.txt'}: binary content (NUL bytes) in a text file"]


def test_a_path_longer_than_the_os_limit_is_reported(tmp_path, capsys):
    """Folders nested past PATH_MAX (4096 bytes on Linux): os.walk cannot list them and used to drop
    them silently; each is now reported with the reason."""
    folder = tmp_path / "docs"
    write_good(folder)
    fd = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(4096 // 200 + 1):  # made relative to an open folder: the full path is never used
            os.mkdir("d" * 200, dir_fd=fd)
            fd, old = os.open("d" * 200, os.O_RDONLY, dir_fd=fd), fd
            os.close(old)
        deep = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(deep, b"Unreachable by its full path.")
        os.close(deep)
    finally:
        os.close(fd)
    code, out, err = rag(capsys, "index", str(folder), "--store", str(tmp_path / "store"), "--model", MODEL, "--json")
    assert code == EXIT_SKIPPED and json.loads(out)["added"] == len(GOOD)
    (line,) = skipped_lines(err)
    assert line.startswith(f"skipped {folder}/dddd") and line.endswith(": cannot read folder: File name too long")
    long_arg = str(folder) + "/x" * 2100  # a path argument over the limit
    code, out, err = rag(capsys, "index", long_arg, "--store", str(tmp_path / "store"))
    assert code == EXIT_SKIPPED and skipped_lines(err) == [f"skipped {long_arg}: cannot read: File name too long"]
