"""Helpers every ``rag`` sub-command shares: argparse types, exit codes, safe printing, progress.

The CLI's modules import one way: ``rag.cli`` (the entry point) -> ``rag.cli_commands`` ->
``rag.cli_chat`` / ``rag.cli_eval`` -> this module; none of them imports a module above it.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

from indexing.errors import ConfigError
from rag.retrieve import DEFAULT_K, DEFAULT_OVERSAMPLE

EXIT_ERROR = 1
EXIT_SKIPPED = 3  # indexing finished, but some files were skipped


def positive_int(value: str, least: int = 1) -> int:
    """argparse type: an integer >= 1 (``1e9`` or ``0`` give a usage error, not a traceback)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < least:
        raise argparse.ArgumentTypeError(f"{value} must be {least} or more")
    return number


def non_negative_int(value: str) -> int:
    """argparse type: an integer >= 0."""
    return positive_int(value, least=0)


def check_writable(path: str, flag: str) -> None:
    """Fail before any work when an output file (``--json``, ``--plot``) cannot be written: creates
    its folder and opens the file for appending (a new probe file is removed again)."""
    out = Path(path)
    existed = out.exists()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "ab"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); pass a writable path") from None
    if not existed:
        out.unlink(missing_ok=True)


_BIDI = {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069}


def clean(text: str) -> str:
    """Text safe to print for people: control characters (terminal escapes, bidi overrides) and
    undecodable file-name bytes become visible escapes (``\\x1b``, ``\\xff``). ``--json`` output
    does not use this: it stays exact."""
    if text.isprintable():
        return text
    return "".join(ch if ch in "\n\t" or not _unsafe(ch) else _escape(ch) for ch in text)


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs") or ord(ch) in _BIDI


def _escape(ch: str) -> str:
    if 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): show the byte
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch.encode("unicode_escape").decode("ascii")


def print_json(data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (undecodable bytes): JSON's \\uXXXX escapes instead
        text = json.dumps(data, indent=2, ensure_ascii=True, default=str)
    sys.stdout.write(text + "\n")


class TqdmProgress:
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage on stderr."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="file", file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def note_caps(k: int, oversample: int, n: int) -> None:
    """One line on stderr when -k or -k x --oversample asks for more chunks than the store holds
    (the retriever caps both at the store size)."""
    if k > n and k != DEFAULT_K:
        print(f"note: -k {k} is more than the {n} chunks in the store; returning at most {n}", file=sys.stderr)
    elif oversample != DEFAULT_OVERSAMPLE and k * oversample > n:
        print(f"note: -k {k} x --oversample {oversample} is more than the {n} chunks in the store; "
              f"reranking all {n}", file=sys.stderr)
