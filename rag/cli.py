"""The ``rag`` command: a thin layer over the library. Each flag is a keyword argument."""

from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from indexing.errors import ConfigError, RagError

EXIT_ERROR = 1
EXIT_SKIPPED = 3  # indexing finished, but some files were skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RagError as exc:
        print(f"error: {clean(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader closed stdout early (`| head`, `| grep -q`): stop quietly
        _silence_stdout()
        return EXIT_ERROR
    except OSError as exc:  # the disk, not the program: full, read-only, no permission
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {clean(f'{exc.strerror or exc}{where}')}", file=sys.stderr)
        return EXIT_ERROR


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the flush at exit cannot raise again (Python's documented recipe)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests capture it)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


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


def build_parser() -> argparse.ArgumentParser:
    from rag.cli_commands import add_commands

    parser = argparse.ArgumentParser(prog="rag", description="Compressed retrieval-augmented chat over your documents.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


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


if __name__ == "__main__":
    raise SystemExit(main())
