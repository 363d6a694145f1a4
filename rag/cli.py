"""The ``rag`` command: a thin layer over the library. Each flag is a keyword argument."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from indexing.errors import RagError
from rag.cli_commands import add_commands
from rag.cli_util import EXIT_ERROR, EXIT_SKIPPED, clean

__all__ = ["EXIT_ERROR", "EXIT_SKIPPED", "build_parser", "main"]


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Compressed retrieval-augmented chat over your documents.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
