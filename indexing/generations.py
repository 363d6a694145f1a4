"""Which folders inside a store the store itself created, and which of them may go.

Every generation folder starts life as ``.tmp-gNNNNNN-PID/`` holding an empty marker file
(``.rag-generation``) and keeps it after the rename to ``gNNNNNN/``. Cleanup deletes only
folders that carry the marker (or that a manifest named as the store's generation), never a
folder because of its name, so a user's ``g2019/`` beside the store's files survives. The
current and the previous generation are always kept: a reader that read the old manifest a
moment before the swap can still open the generation it names (see ``Store.open``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from indexing.errors import StoreError
from indexing.manifest import BASIS_FILES, FULL_FILE, GENERATION, MANIFEST, SEGMENT_FILES

MARKER = ".rag-generation"  # empty file: this folder was made by a store writer
TMP = re.compile(r"\.tmp-(g[0-9]{1,9})-[0-9]+\Z", re.ASCII)
STORE_FILES = {*BASIS_FILES, *SEGMENT_FILES, *FULL_FILE.values()}  # what a generation folder holds
TOMBSTONE = re.compile(r"deleted-g[0-9]{1,9}\.npy\Z", re.ASCII)


def current_generation(store_dir: Path) -> str | None:
    """The generation the manifest names, or None (no manifest, or one that cannot be read)."""
    try:
        gen = json.loads((store_dir / MANIFEST).read_text(encoding="utf-8")).get("generation")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return gen if isinstance(gen, str) and GENERATION.match(gen) else None


def next_generation(store_dir: Path, current: str | None) -> str:
    """The first generation name after the current one that no folder (or temporary folder) has."""
    n = int(current[1:]) + 1 if current else 1
    while (store_dir / f"g{n:06d}").exists() or any(store_dir.glob(f".tmp-g{n:06d}-*")):
        n += 1
    if n > 999_999_999:  # GENERATION's 9 digits: a manifest naming g1000000000 could never be read again
        raise StoreError(f"{store_dir} has no generation name left after {current}; index into a new store with --refit")
    return f"g{n:06d}"


def new_tmp(store_dir: Path, generation: str, pid: int) -> Path:
    """Create the marked temporary folder a generation is written into."""
    tmp = store_dir / f".tmp-{generation}-{pid}"
    try:
        tmp.mkdir()
        (tmp / MARKER).touch()
    except OSError as exc:  # a read-only or full disk, a folder of another user
        raise StoreError(f"cannot write into the store folder {store_dir}: {exc.strerror or exc}") from exc
    return tmp


def is_ours(folder: Path) -> bool:
    return folder.is_dir() and not folder.is_symlink() and (folder / MARKER).is_file()


def mark(folder: Path) -> None:
    """Mark a generation a manifest named (a store written before markers existed), if it holds
    store files only: a damaged manifest naming a user's ``g2019/`` must not get it deleted."""
    if folder.is_dir() and not folder.is_symlink() and not (folder / MARKER).exists() \
            and all(e.name in STORE_FILES or TOMBSTONE.match(e.name) for e in folder.iterdir()):
        (folder / MARKER).touch()


def remove_stale(store_dir: Path, keep: set[str]) -> None:
    """Delete marked generation and temporary folders not in ``keep``, and temp manifest files."""
    for entry in store_dir.iterdir():
        if entry.name in keep:
            continue
        if (GENERATION.match(entry.name) or TMP.match(entry.name)) and is_ours(entry):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(f".{MANIFEST}.") and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)  # temp of a killed manifest write


def check_store_folder(store_dir: Path) -> None:
    """Refuse to write into a non-empty folder that is not a store (nothing in it is ever touched)."""
    if (store_dir / MANIFEST).is_file() or not store_dir.is_dir():
        return
    for entry in store_dir.iterdir():
        if entry.name == ".lock" or entry.name.startswith(f".{MANIFEST}."):
            continue
        if (GENERATION.match(entry.name) or TMP.match(entry.name)) and is_ours(entry):
            continue
        raise StoreError(
            f"{store_dir} is not empty and is not a store (no {MANIFEST}; it holds {entry.name!r}); "
            "pick a new or empty folder for --store, or an existing store"
        )
