"""Sub-commands of ``rag``: each parses flags and calls one library function."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from indexing.embed import BACKENDS
from rag.cli_chat import add_chat_commands
from rag.cli_eval import add_eval_commands
from rag.cli_ray import add_ray_flags, ray_options
from rag.cli_util import EXIT_SKIPPED, TqdmProgress, clean, note_caps, positive_int, print_json
from rag.fusion import DEFAULT_MODE, MODES
from rag.retrieve import DEFAULT_K, DEFAULT_OVERSAMPLE


def add_commands(sub: Any) -> None:
    p = sub.add_parser("index", help="index files/folders into a store (incremental)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--store", required=True)
    p.add_argument("--model", default=None, help="sentence-transformers name/path, or openai/<model>")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--pca-dims", type=int, default=None, help="reduced dimensions (default: dim/4)")
    group.add_argument("--pca-variance", type=float, default=None, help="keep this share of energy, e.g. 0.95")
    p.add_argument("--dtype", choices=["float8", "float16", "float32", "sq8"], default=None, help="first-stage codes (default float8)")
    p.add_argument("--full-dtype", choices=["float8", "float16"], default=None, help="rerank vectors (float16: 2x disk, more recall on huge stores)")
    p.add_argument("--ann", choices=["flat", "ivf", "auto"], default="auto", help="auto: flat float8 scan below 10M chunks, IVF above")
    p.add_argument("--chunk-tokens", type=positive_int, default=None, help="tokens per chunk of a new store (default 256)")
    p.add_argument("--overlap", type=int, default=None, help="overlap in tokens of a new store (default 32)")
    p.add_argument("--refit", action="store_true", help="rebuild from scratch (new PCA basis)")
    p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=True,
                   help="remove documents of indexed folders whose files are gone (default; a missing folder prunes nothing)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another writer of the store to finish (default 0: fail at once, nothing changed)")
    p.add_argument("--embed-backend", choices=list(BACKENDS), default="auto",
                   help="document embedding: openvino (bf16 where the CPU has it, ~2x torch), torch, or auto (openvino from 256 chunks)")
    add_ray_flags(p, workers=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search a store")
    p.add_argument("query")
    p.add_argument("--store", required=True)
    p.add_argument("-k", type=positive_int, default=DEFAULT_K)
    p.add_argument("--oversample", type=positive_int, default=DEFAULT_OVERSAMPLE)
    p.add_argument("--exact", action="store_true", help="float32 brute force over the full vectors")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="hybrid (keywords + vectors, default), dense or keyword")
    add_ray_flags(p, workers=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("info", help="describe a store")
    p.add_argument("--store", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("compact", help="merge a store's segments into one, dropping deleted rows")
    p.add_argument("--store", required=True)
    p.add_argument("--refit", action="store_true", help="also fit the PCA basis again on the live vectors")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another writer to finish")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compact)

    add_chat_commands(sub)
    add_eval_commands(sub)



def cmd_index(args: argparse.Namespace) -> int:
    from indexing.build import index_paths

    progress = TqdmProgress()
    try:
        report = index_paths(
            args.paths, args.store, model=args.model, pca_dims=args.pca_dims, pca_variance=args.pca_variance,
            dtype=args.dtype, full_dtype=args.full_dtype, ann=args.ann, chunk_tokens=args.chunk_tokens, overlap=args.overlap,
            refit=args.refit, prune=args.prune, embed_backend=args.embed_backend, progress=progress,
            wait=args.wait, on_wait=lambda message: print(message, file=sys.stderr, flush=True), ray=ray_options(args),
        )
    finally:
        progress.close()
    for s in report.skipped:
        print(clean(f"skipped {s.path}: {s.reason}"), file=sys.stderr)
    summary = {
        "store": report.store, "chunks": report.chunks, "added": len(report.added), "updated": len(report.updated),
        "removed": len(report.removed), "unchanged": len(report.unchanged), "skipped": len(report.skipped),
        "embedded_with": report.embed_backend or "-",
    }
    if args.json:
        print_json(summary | {"skipped_files": [s.__dict__ for s in report.skipped]})
    else:
        print(clean(" ".join(f"{k}={v}" for k, v in summary.items())))
    return EXIT_SKIPPED if report.skipped else 0


def cmd_search(args: argparse.Namespace) -> int:
    from rag.retrieve import Retriever

    retriever = Retriever.open(args.store, ray=ray_options(args))
    note_caps(args.k, args.oversample, retriever.store.n)
    try:
        hits = retriever.search(args.query, k=args.k, oversample=args.oversample, exact=args.exact, mode=args.mode)
    finally:
        retriever.close()
    if args.json:
        print_json([h.to_dict() for h in hits])
        return 0
    for h in hits:
        where = f"{h.source}" + (f" p.{h.page}" if h.page else "") + f" [{h.start}:{h.end}]"
        print(clean(f"{h.rank:>2}. {h.score:.3f}  {where}\n    {' '.join(h.text.split())[:200]}"))
    return 0


def store_info(store_dir: str) -> dict[str, Any]:
    """The facts ``rag info`` prints."""
    from indexing.store import Store

    from rag.fusion import FusionSettings

    with Store.open(store_dir, verify=False) as store:
        fusion = FusionSettings.from_manifest(store.manifest.fusion)
        return store.info() | {"fusion": {"dense_weight": fusion.dense_weight, "adaptive": fusion.adaptive,
                                          "source": (store.manifest.fusion or {}).get("source", "default")}}


def cmd_compact(args: argparse.Namespace) -> int:
    from indexing.writer import compact_store

    before, after = compact_store(args.store, refit=args.refit, wait=args.wait)
    summary = {"store": args.store, "generation": after.generation, "segments_before": len(before.segments),
               "segments": len(after.segments), "deleted_rows_dropped": before.deleted, "chunks": after.chunks,
               "format_version_before": before.format_version}
    if args.json:
        print_json(summary)
    else:
        note = " (migrated from format 1)" if before.format_version == 1 else ""
        print(clean(f"{args.store}: {len(before.segments)} segments -> {len(after.segments)}, "
                    f"{before.deleted} deleted rows dropped, {after.chunks} chunks{note}"))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = store_info(args.store)
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            print(clean(f"{key:>24}: {value}"))
    return 0
