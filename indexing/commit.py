"""The commit protocol: new folders written aside, then published by one manifest rename.

A commit writes every new file (a segment, tombstones, a basis) into marked temporary folders
``.tmp-gNNNNNN-PID/``, fsyncs them, renames each to its ``gNNNNNN/`` name, and only then replaces
``manifest.json`` (write, fsync, rename). A crash at any moment leaves the previous manifest
naming only folders that are complete and untouched. After the swap, marked folders that
neither the new nor the replaced manifest names are removed (the replaced one's stay one
commit longer for readers that read it a moment before; see ``indexing.generations``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from indexing.files import fsync_path, sha256_file, write_json_atomic
from indexing.generations import MARKER, current_generation, is_ours, mark, new_tmp, next_generation, remove_stale
from indexing.manifest import GENERATION, MANIFEST, FileMeta, Manifest


class Commit:
    """Folders of one commit, in writing; ``publish`` makes them the store's, ``abort`` drops them."""

    def __init__(self, store_dir: Path) -> None:
        self.dir = store_dir
        self.previous = current_generation(store_dir)  # the caller holds the store's lock
        self.folders: dict[str, Path] = {}  # final name -> temporary folder

    @property
    def generation(self) -> str:
        """The commit's name: its first folder's."""
        return next(iter(self.folders)) if self.folders else self.new_folder()[0]

    def new_folder(self) -> tuple[str, Path]:
        """A new marked temporary folder and the name it will have: (name, path)."""
        last = max(self.folders, default=self.previous)
        name = next_generation(self.dir, last)
        self.folders[name] = new_tmp(self.dir, name, os.getpid())
        return name, self.folders[name]

    def file_metas(self, name: str, files: list[str] | tuple[str, ...]) -> dict[str, FileMeta]:
        """Size and checksum of files written into this commit's folder ``name`` (fsynced)."""
        out = {}
        for f in files:
            path = self.folders[name] / f
            fsync_path(path)
            out[f] = FileMeta(path.stat().st_size, sha256_file(path))
        return out

    def publish(self, manifest: Manifest) -> None:
        """Rename the folders into place, swap the manifest, then drop what no manifest names."""
        for name, tmp in self.folders.items():
            fsync_path(tmp)
            os.replace(tmp, self.dir / name)  # next_generation() picked a name no folder has
        fsync_path(self.dir)
        keep = referenced(self.dir)  # the manifest being replaced: readers may still open it
        for folder in keep:
            mark(self.dir / folder)  # a format-1 generation written before markers existed
        write_json_atomic(self.dir / MANIFEST, manifest.to_json())
        remove_stale(self.dir, keep | folders_of(manifest))
        self.folders = {}

    def abort(self) -> None:
        """Drop the unpublished folders; the store stays as it was."""
        for tmp in self.folders.values():
            if is_ours(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        self.folders = {}


def folders_of(manifest: Manifest) -> set[str]:
    """The folders a manifest names."""
    out = {manifest.basis[0]} | {s.dir for s in manifest.segments}
    return out | {s.deleted.dir for s in manifest.segments if s.deleted is not None}


def referenced(store_dir: Path) -> set[str]:
    """Folders named by the manifest on disk, read leniently (a damaged one names none)."""
    try:
        data = json.loads((store_dir / MANIFEST).read_text(encoding="utf-8"))
        names = [data.get("generation"), (data.get("basis") or {}).get("dir")]
        for s in data.get("segments") or []:
            names += [s.get("dir"), (s.get("deleted") or {}).get("dir")]
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return set()
    return {n for n in names if isinstance(n, str) and GENERATION.match(n)}


__all__ = ["MARKER", "Commit", "folders_of", "referenced"]
