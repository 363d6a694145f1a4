"""Chunking cost of pathological text against normal text of the same size (issue 10, item 7).

`python -m bench.chunk_speed [--mb 50] [--rounds 2] [--old-mb 1] [--json bench/results/chunk_speed.json]`

Each case runs in a fresh child process (so its peak RSS is its own), the cases take turns round
after round, and every time is also given as a ratio to the normal-text case of the same round:
- normal: seeded words in paragraphs of 60 words (blank line between paragraphs);
- one line: the same words with spaces instead of the blank lines (a single line);
- no separators: a run of base64-like characters with no space or newline.
`--old-mb` measures the LangChain path chunk.py used before (``create_documents`` with
``add_start_index``) on a smaller size for the same three cases, with a time cap per case.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import subprocess
import sys
import time
from typing import Any

CASES = ("normal", "one line", "no separators")
VOCAB = ("the of and to in is was for on that with as by at from stripes zebra savanna volcano basalt glacier "
         "fjord reed saxophone comet coral polyp magma crust herd dawn plains telemetry gradient tokenizer").split()


def make_text(case: str, n_chars: int) -> str:
    """About ``n_chars`` characters, generated in blocks so the generator's own peak stays small."""
    rng = random.Random(0)
    if case == "no separators":
        return base64.b64encode(rng.randbytes(n_chars * 3 // 4)).decode("ascii")
    sep = "\n\n" if case == "normal" else " "
    blocks, size = [], 0
    while size < n_chars:
        block = sep.join(" ".join(rng.choices(VOCAB, k=60)) for _ in range(1000))  # paragraphs of 60 words
        blocks.append(block)
        size += len(block) + len(sep)
    return sep.join(blocks)


def run_case(case: str, n_chars: int, old: bool) -> dict[str, Any]:
    """In this process: chunk one text, report seconds, chunks, tokenizer calls and peak RSS."""
    from bench.common import peak_rss_mib
    from indexing.chunk import ChunkSettings, _encoding, chunk_document
    from indexing.load import Document, Page
    from indexing.split import RecursiveTokenSplitter

    settings = ChunkSettings()
    _encoding(settings.encoding)  # load the tokenizer before timing
    text = make_text(case, n_chars)
    rss_text = peak_rss_mib()
    t0 = time.perf_counter()
    if old:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter.from_tiktoken_encoder(
            encoding_name=settings.encoding, chunk_size=settings.chunk_tokens, chunk_overlap=settings.overlap,
            add_start_index=True, strip_whitespace=True)
        n, calls = len(splitter.create_documents([text])), None
    else:
        doc = Document("/bench.txt", "bench.txt", "bench", "0", [Page(None, text)])
        import indexing.chunk

        indexing.chunk._splitter.cache_clear()
        n = len(chunk_document(doc, settings, max_chunks=10**9))
        splitter_obj: RecursiveTokenSplitter = indexing.chunk._splitter(settings)
        calls = splitter_obj.tokenizer_calls
    seconds = time.perf_counter() - t0
    return {"case": case, "chars": len(text), "old_langchain_path": old, "seconds": round(seconds, 3), "chunks": n,
            "tokenizer_calls": calls, "peak_rss_mib": round(peak_rss_mib(), 1),
            "rss_before_chunking_mib": round(rss_text, 1)}


def in_child(case: str, n_chars: int, old: bool, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.chunk_speed", "--child", case, "--chars", str(n_chars)] + (["--old"] if old else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return {"case": case, "chars": n_chars, "old_langchain_path": old, "seconds": None, "timed_out_after_s": timeout}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--old-mb", type=float, default=1.0, help="size for the old LangChain path (0: skip)")
    ap.add_argument("--old-timeout", type=float, default=300.0)
    ap.add_argument("--json", default="bench/results/chunk_speed.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--chars", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--old", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.chars, args.old)))
        return
    rows: list[dict[str, Any]] = []
    for label, mb, old, rounds in (("new", args.mb, False, args.rounds), ("old", args.old_mb, True, 1)):
        if mb <= 0:
            continue
        for r in range(rounds):
            base = None
            for case in CASES:
                row = in_child(case, int(mb * 1e6), old, args.old_timeout if old else 3600)
                row["round"] = r + 1
                if case == "normal":
                    base = row["seconds"]
                row["ratio_to_normal"] = round(row["seconds"] / base, 2) if row.get("seconds") and base else None
                rows.append(row)
                print(f"{label:>3} {mb:>5.1f} MB  round {r + 1}  {case:<14} {row.get('seconds')!s:>8} s  "
                      f"x{row['ratio_to_normal']!s:<5} chunks {row.get('chunks', '-')!s:>7}  "
                      f"tokenizer calls {row.get('tokenizer_calls', '-')!s:>7}  peak RSS {row.get('peak_rss_mib', '-')!s:>7} MiB",
                      flush=True)
    from bench.common import machine, write_json

    write_json(args.json, {"rows": rows, "machine": machine(), "mb": args.mb, "old_mb": args.old_mb})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
