"""``rag eval``: quality, size and speed of the compressed store against float32 on a BEIR folder."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from indexing.errors import ConfigError, GenerationError
from rag.cli_util import check_writable, non_negative_int, positive_int
from rag.fusion import DEFAULT_MODE, MODES
from rag.retrieve import DEFAULT_K, DEFAULT_OVERSAMPLE


def add_eval_commands(sub: Any) -> None:
    p = sub.add_parser("eval", help="measure retrieval quality/size/speed of each compression on a BEIR dataset")
    p.add_argument("--dataset", required=True, help="BEIR-layout folder: corpus.jsonl, queries.jsonl, qrels/test.tsv")
    p.add_argument("--model", default=None, help="embedding model (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--pca-dims", type=positive_int, default=None, help="reduced dims of the default store (default: dim/4)")
    p.add_argument("--oversample", type=positive_int, default=DEFAULT_OVERSAMPLE, help="rerank candidates = k * oversample")
    p.add_argument("-k", type=positive_int, default=10, help="cut-off of nDCG, recall and MRR (recall@100 is always reported)")
    p.add_argument("--json", default=None, metavar="OUT", help="write every measurement to this JSON file")
    p.add_argument("--plot", default=None, metavar="PNG", help="plot the sweep: nDCG against bytes per vector (implies --sweep)")
    p.add_argument("--max-docs", type=int, default=None, help="keep the judged docs, fill up to this many")
    p.add_argument("--max-queries", type=int, default=None, help="a seeded sample of the queries with qrels")
    p.add_argument("--sweep", action="store_true", help="also sweep PCA dims x dtype x rerank")
    p.add_argument("--budget", type=int, default=None, metavar="BYTES", help="recommend the best sweep config within this first-stage size")
    p.add_argument("--build-store", default=None, metavar="DIR", help="store folder to put in the recommended `rag index` command")
    p.add_argument("--answers", type=non_negative_int, default=0, metavar="N", help="answer N sampled questions (needs answers.jsonl)")
    add_answer_flags(p)
    p.add_argument("--cache-dir", default=None, help="embedding cache (default ~/.cache/compressed-rag/embeddings)")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="search mode the --answers use")
    p.add_argument("--calibrate", action="store_true", help="measure the hybrid fusion weight on these qrels (saved into --store)")
    p.add_argument("--store", default=None, help="with --calibrate: the store (indexed from this corpus) that keeps the best weight")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from rag.evaluate import evaluate

    for flag, out in (("--json", args.json), ("--plot", args.plot)):
        if out:
            check_writable(out, flag)
    t0 = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f}s] {message}", file=sys.stderr, flush=True)

    parameters = {key: value for key, value in vars(args).items() if key not in ("func", "command")}
    answer_eval, partial = answer_runner(args, parameters, log)
    try:
        report = evaluate(
            args.dataset, model=args.model, pca_dims=args.pca_dims, oversample=args.oversample, k=args.k,
            max_docs=args.max_docs, max_queries=args.max_queries, sweep=args.sweep or bool(args.plot), budget=args.budget,
            build_store=args.build_store, answer_eval=answer_eval, cache_dir=args.cache_dir, plot=args.plot, log=log,
            calibrate=args.calibrate,
        )
    except (GenerationError, KeyboardInterrupt) as exc:
        if not partial or not (args.json or args.report):
            raise
        write_outputs(args, {"dataset": args.dataset, "k": args.k, "answers": partial[-1], "parameters": parameters})
        if isinstance(exc, KeyboardInterrupt):
            raise
        written = " and ".join(x for x in (args.json, args.report) if x)
        raise GenerationError(f"{exc}; the {partial[-1]['n']} questions done are written to {written}") from exc
    if args.calibrate and args.store:
        from rag.eval_modes import save_calibration

        report["calibration"]["saved_to"] = save_calibration(args.store, report["calibration"], args.dataset)
    report["parameters"] = parameters
    write_outputs(args, report)
    print(format_report(report))
    return 0


def add_answer_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm", default=None, metavar="MODEL[,MODEL...]",
                   help="answerers compared side by side with --answers: 'extractive' and/or model names (default: extractive)")
    p.add_argument("--base-url", default=None, help="OpenAI-compatible server of the --llm models, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--answer-k", type=positive_int, default=DEFAULT_K, metavar="K", help="chunks given to the answerer, as `rag ask -k`")
    p.add_argument("--context-tokens", type=positive_int, default=None, metavar="N",
                   help="the --llm models' context window, e.g. the server's --n_ctx (default 8192): the prompt never exceeds it")
    p.add_argument("--source-tokens", type=positive_int, default=None, metavar="N",
                   help="cap on the tokens of sources in an --llm model's prompt (default: no cap); the top source is always kept. "
                        "A small model on a CPU answers in time proportional to its prompt: 600 suits SmolLM2-135M on 2 cores")
    p.add_argument("--report", default=None, metavar="DIR", help="write an HTML report of the answers (index.html, plot, JSON)")
    p.add_argument("--judge", default=None, metavar="MODEL", help="also rate each answer with this LLM judge (off by default)")
    p.add_argument("--judge-base-url", default=None, metavar="URL", help="server of the --judge model (default: --base-url)")


def answer_runner(args: argparse.Namespace, parameters: dict[str, Any], log: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The ``answer_eval`` callback of ``evaluate`` for --answers (None without), and the list its
    checkpoints fill: the results so far are rewritten to --json after every question."""
    if not args.answers:
        if args.llm or args.report or args.judge:
            raise ConfigError("--llm, --report and --judge apply to answers: add --answers N")
        return None, []
    from rag.eval_answers import answer_quality, check_llms, make_answerers, parse_llms
    from rag.eval_judge import Judge

    llms = parse_llms(args.llm)
    check_llms(llms, args.base_url)
    judge = Judge(args.judge, args.judge_base_url or args.base_url) if args.judge else None
    partial: list[dict[str, Any]] = []

    def checkpoint(answers: dict[str, Any]) -> None:
        partial[:] = [answers]
        write_outputs(args, {"dataset": args.dataset, "answers": answers, "parameters": parameters}, html=False)

    def run(data: Any, retriever: Any) -> dict[str, Any]:
        log(f"answering {args.answers} questions with {', '.join(llms)}")
        answerers = make_answerers(retriever.embedder, llms, args.base_url, args.context_tokens, args.source_tokens)
        return answer_quality(data, retriever, answerers, args.answers, k=args.answer_k, oversample=args.oversample,
                              checkpoint=checkpoint, log=log, judge=judge, mode=args.mode)

    return run, partial


def write_outputs(args: argparse.Namespace, report: dict[str, Any], html: bool = True) -> None:
    """--json OUT, and with answers --report DIR (``report.json`` always, the page when ``html``)."""
    report_json = Path(args.report) / "report.json" if args.report and "answers" in report else None
    for out in (Path(args.json) if args.json else None, report_json):
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            tmp.replace(out)
    if html and report_json is not None:
        from rag.eval_report import write_report

        write_report(report, args.report)


def format_table(rows: list[dict[str, Any]], k: int, pareto: bool = False) -> str:
    ndcg, rk, mrr = f"ndcg@{k}", f"recall@{k}", f"mrr@{k}"
    width = max(len(r["name"]) for r in rows)
    head = (f"{'config':<{width}}  {'bytes/vec':>9}  {'nDCG@' + str(k):>8}  {'% f32':>6}  {'R@' + str(k):>6}  {'R@100':>6}"
            f"  {'MRR@' + str(k):>7}  {'=f32@' + str(k):>7}  {'store MB':>8}  {'p50 ms':>7}  {'p95 ms':>7}"
            + ("  pareto" if pareto else ""))
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['name']:<{width}}  {r['bytes_per_vector']:>9}  {r[ndcg]:>8.4f}  {r['pct_of_float32']:>6.1f}  {r[rk]:>6.3f}"
            f"  {r['recall@100']:>6.3f}  {r[mrr]:>7.4f}  {r[f'overlap@{k}_float32']:>7.3f}  {r['store_bytes'] / 1e6:>8.2f}  {r['latency_ms_p50']:>7.3f}"
            f"  {r['latency_ms_p95']:>7.3f}" + (("       *" if r.get("pareto") else "") if pareto else "")
        )
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    k = report["k"]
    ndcg = f"ndcg@{k}"
    cache = report["embedding_cache"]
    hit = "cached" if cache["docs_cache_hit"] and cache["queries_cache_hit"] else "embedded now"
    out = [
        f"{report['dataset']}: {report['n_docs']} docs, {report['n_queries']} queries, {report['model']} "
        f"(dim {report['dim']}, embeddings {hit}); latency = search only, 1 query at a time, "
        f"{report['latency_queries']} queries; load average {report['machine']['load_average_1m']} on "
        f"{report['machine']['cpus']} cpus. =f32@{k}: share of float32's top {k} also returned",
        "",
        format_table(report["configs"], k),
        "",
    ]
    v = report["default"]
    verdict = (f"reaches the {v['target_pct']:.0f}% target" if v["reaches_target"] else
               f"MISSES the {v['target_pct']:.0f}% target by {v['shortfall_points']:.2f} points "
               f"(nDCG@{k} {v['shortfall_ndcg']:.4f} short)")
    out.append(f"{v['name']}: nDCG@{k} {v[ndcg]:.4f} = {v['pct_of_float32']:.2f}% of float32 "
               f"{v['float32']:.4f} -> {verdict}")
    if "modes" in report:
        from rag.eval_modes import format_modes

        out += ["", format_modes(report, k)]
    if "sweep" in report:
        out += ["", "sweep (PCA dims x first-stage dtype x rerank; * = Pareto front of nDCG vs bytes):", "",
                format_table(report["sweep"], k, pareto=True)]
        if "plot" in report:
            out.append(f"plot: {report['plot']}")
    if "recommended" in report:
        r = report["recommended"]
        out += ["", f"best within {r['budget']} bytes/vector: {r['name']} ({r['bytes_per_vector']} B/vec, "
                f"nDCG@{k} {r[ndcg]:.4f} = {r['pct_of_float32']:.2f}% of float32)", f"  build it: {r['command']}"]
        if r.get("note"):
            out.append(f"  note: {r['note']}")
    if "answers" in report:
        from rag.eval_report import format_answers

        out += ["", format_answers(report["answers"])]
        if report["parameters"].get("report"):
            out.append(f"report: {Path(report['parameters']['report']) / 'index.html'}")
    out += ["", f"total {report['seconds']:.1f}s"]
    return "\n".join(out)
