"""Document-embedding throughput of the product's backends, and the ranking quality they keep.

    python -m bench.embed_speed [--docs N] [--json bench/results/embed_speed_v2.json]

Backends (``indexing.embed.SentenceTransformerEmbedder``, bundled all-MiniLM-L6-v2, batch 64):
``torch`` (sentence-transformers as is, float32) and ``openvino`` (``indexing.embed_openvino``:
the transformer converted in memory, bfloat16 where the CPU has it), plus, as a reference that
needs no extra package, torch under ``torch.autocast(bfloat16)``.

Texts: SciFact abstracts, loaded and joined (``title + " " + text``) by ``rag.evaluate.load_beir``
as ``rag eval`` does; the whole corpus by default (``--docs N``: every document relevant to a
test query plus a seeded sample of the others). The
backends take turns on each block of 256 texts (the indexer's batch), so load from other jobs
hits them alike; chunks/s and the speed-up come from the summed times. Quality: nDCG@10 of the
300 test queries (embedded with torch, as the product does) against each backend's corpus
vectors (``rag.evaluate.retrieval_metrics``), and the minimum cosine to the torch vectors.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import machine, write_json
from bench.vectors import SCIFACT
from rag.evaluate import load_beir, retrieval_metrics, run_from_ids

BLOCK = 256  # texts per turn: indexing.build.EMBED_BATCH


def backends(batch: int) -> tuple[dict[str, Callable[[list[str]], np.ndarray]], str, Callable[[list[str]], np.ndarray]]:
    """The document embedders to compare, OpenVINO's precision, and the (torch) query embedder."""
    import torch

    from indexing.embed import SentenceTransformerEmbedder

    plain = SentenceTransformerEmbedder(backend="torch", batch_size=batch)
    ov = SentenceTransformerEmbedder(backend="openvino", batch_size=batch)
    ov.embed_documents(["warm-up: convert and compile before timing"])

    def torch_bf16(texts: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return plain.embed_documents(texts)

    fns = {"torch": plain.embed_documents, "openvino": ov.embed_documents, "torch_bf16_autocast": torch_bf16}
    return fns, ov.backend, plain.embed_queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=SCIFACT)
    ap.add_argument("--docs", type=int, default=None, help="default: the whole corpus")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", default="bench/results/embed_speed_v2.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = load_beir(args.dataset, max_docs=args.docs)  # ConfigError names what is missing
    texts = data.doc_inputs()
    fns, precision, embed_queries = backends(args.batch)
    vecs: dict[str, list[np.ndarray]] = {name: [] for name in fns}
    secs = dict.fromkeys(fns, 0.0)
    for name, fn in fns.items():
        fn(texts[:8])  # warm-up
    for i0 in range(0, len(texts), BLOCK):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            vecs[name].append(fn(texts[i0 : i0 + BLOCK]))
            secs[name] += time.perf_counter() - t0
        print(f"  {min(i0 + BLOCK, len(texts))}/{len(texts)} " + " ".join(f"{n}={len(texts[: i0 + BLOCK]) / s:.1f}/s" for n, s in secs.items()), flush=True)
    xq = embed_queries(data.queries)
    ref = np.concatenate(vecs["torch"])
    rows = {}
    for name in fns:
        xb = np.concatenate(vecs[name])  # (n, 384)
        top = np.argsort(-(xq @ xb.T), axis=1)[:, :10]  # (nq, 10)
        run = run_from_ids(top, data.query_ids, data.doc_ids)
        rows[name] = {"chunks_per_s": len(texts) / secs[name], "speedup_vs_torch": secs["torch"] / secs[name],
                      "ndcg@10": retrieval_metrics(data.qrels, run, run)["ndcg@10"],
                      "min_cosine_to_torch": float((xb * ref).sum(1).min())}
    rows["openvino"]["precision"] = precision
    print(f"{len(texts)} SciFact abstracts, {len(data.query_ids)} test queries, batch {args.batch}, blocks of {BLOCK} in turn")
    print("| backend | chunks/s | speed-up | nDCG@10 | min cosine to torch |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['chunks_per_s']:.1f} | {r['speedup_vs_torch']:.2f} | {r['ndcg@10']:.4f} | {r['min_cosine_to_torch']:.4f} |")
    write_json(args.json, {"docs": len(texts), "queries": len(data.query_ids), "batch": args.batch, "block": BLOCK, "backends": rows,
                           "machine": machine(), "command": "python -m bench.embed_speed" + (f" --docs {args.docs}" if args.docs else "")})


if __name__ == "__main__":
    main()
