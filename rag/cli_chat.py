"""``rag ask`` and ``rag chat``: answers on the command line and in the browser."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from indexing.errors import ConfigError
from rag.cli_ray import add_ray_flags, ray_options
from rag.cli_util import clean, note_caps, positive_int, print_json
from rag.fusion import DEFAULT_MODE, MODES
from rag.retrieve import DEFAULT_K, DEFAULT_OVERSAMPLE


def _answer_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True)
    p.add_argument("-k", type=positive_int, default=DEFAULT_K)
    p.add_argument("--oversample", type=positive_int, default=DEFAULT_OVERSAMPLE)
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="hybrid (keywords + vectors, default), dense or keyword")
    p.add_argument("--llm", default=None, help="chat model name, or 'extractive' (default: extractive unless OPENAI_API_KEY/OPENAI_BASE_URL is set)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    add_ray_flags(p, workers=True)  # --workers: search shards


def add_chat_commands(sub: Any) -> None:
    p = sub.add_parser("ask", help="answer one question with citations")
    p.add_argument("question")
    _answer_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", help="chat in the browser (Gradio)")
    _answer_flags(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--stores-dir", default=None, help="offer every store found in this folder")
    p.add_argument("--read-only", action="store_true", help="no uploads (shared deployments)")
    p.set_defaults(func=cmd_chat)


def cmd_ask(args: argparse.Namespace) -> int:
    from rag.answer import make_answerer
    from rag.chat import RagChat
    from rag.retrieve import Retriever

    if not args.question.strip():
        raise ConfigError("the question is empty; ask something, e.g. rag ask \"how do I ...?\" --store DIR")
    retriever = Retriever.open(args.store, ray=ray_options(args))
    note_caps(args.k, args.oversample, retriever.store.n)
    chat = RagChat(retriever, make_answerer(retriever.embedder, args.llm, args.base_url), args.k, args.oversample, args.mode)
    try:
        answer = chat.ask(args.question)
    finally:
        retriever.close()
    if args.json:
        print_json(answer.to_dict())
        return 0
    print(clean(answer.text))
    if answer.sources:
        print("\nSources:")
        for n in answer.cited or range(1, len(answer.sources) + 1):
            h = answer.sources[n - 1]
            print(clean(f"  [{n}] {h.source}" + (f" p.{h.page}" if h.page else "") + f" ({h.score:.3f})"))
    print(clean(f"(answerer: {answer.answerer}, mode: {answer.mode})"), file=sys.stderr)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from ui.app import build_app, launch

    ray = ray_options(args)
    if ray is not None:
        from indexing.ray_cluster import ray_session

        ray.check()
    with ray_session(ray) if ray is not None else nullcontext():  # one Ray for every store's shards
        app = build_app(
            args.store, stores_dir=args.stores_dir, llm=args.llm, base_url=args.base_url,
            allow_upload=not args.read_only, k=args.k, oversample=args.oversample, mode=args.mode, ray=ray,
        )
        print(f"chat on http://{args.host}:{args.port}", file=sys.stderr)
        launch(app, args.host, args.port, read_only=args.read_only)
    return 0
