"""The answer evaluation for people: a text table for the terminal, and ``--report DIR``: an HTML
page (every text escaped) with the tables, the trade-off plot and one block per question."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from rag.answer_metrics import VERDICTS

# (key in an answerer's summary, column title, format); None values print as "n/a"
COLUMNS = [
    ("exact_match", "EM", "{:.3f}"), ("f1", "token F1", "{:.3f}"), ("contains_reference", "contains ref", "{:.3f}"),
    ("citation_precision", "cite prec", "{:.3f}"), ("citation_recall", "cite recall", "{:.3f}"),
    ("answered", "answered", "{:.3f}"), ("declined", "declined", "{:.3f}"),
    ("latency_s_p50", "p50 s", "{:.2f}"), ("latency_s_p95", "p95 s", "{:.2f}"),
    ("prompt_tokens_mean", "prompt tok", "{:.0f}"), ("completion_tokens_mean", "compl tok", "{:.0f}"),
]
SPLIT = [  # retrieval vs answerer: where the questions that were not answered correctly went wrong
    ("correct", "correct", "{:.3f}"), ("retrieval_failure", "retrieval failure", "{:.3f}"),
    ("answerer_failure", "answerer failure", "{:.3f}"),
    ("declined_when_retrieval_missed", "declined | retrieval missed", "{:.3f}"),
    ("declined_when_retrieved", "declined | retrieved", "{:.3f}"),
]
JUDGE = [  # only when --judge ran
    ("judge_correct", "judge: correct", "{:.3f}"), ("judge_faithful", "judge: faithful", "{:.3f}"),
    ("judge_agrees_exact_match", "judge = EM", "{:.3f}"), ("judge_agrees_contains", "judge = contains ref", "{:.3f}"),
]
DEFINITIONS = [
    ("EM / token F1", "SQuAD normalisation (lowercase, no punctuation or articles), citations removed, best reference"),
    ("contains ref", "a normalised reference answer appears in the normalised answer as whole words; counts as correct"),
    ("cite prec", "cited sources relevant by the qrels / all cited sources"),
    ("cite recall", "share of questions whose answer cites a relevant source"),
    ("declined", "empty answer, or its first sentence says the sources lack the answer"),
    ("retrieval failure", "not correct, and no relevant chunk was among the top-k retrieved"),
    ("answerer failure", "not correct although a relevant chunk was retrieved"),
    ("latency", "seconds per answer, retrieval + generation, one question at a time"),
    ("tokens", "server usage fields when sent, else tiktoken cl100k counts (extractive: no prompt)"),
    ("judge", "optional LLM judge (rag.eval_judge.PROMPT); 'judge = EM': share of answers where its verdict equals exact match"),
]


def _fmt(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def format_answers(a: dict[str, Any]) -> str:
    """The answer tables as plain text for the terminal."""
    k = a["k"]
    labels = list(a["answerers"])
    width = max(len(s) for s in labels + ["answerer"])
    out = [f"answers ({a['n']} seeded questions, top-{k} chunks of the default store; "
           f"a relevant chunk retrieved for {_fmt(a[f'retrieval_hit@{k}'], '{:.3f}')}"
           + (f"; {a['seconds']:.0f} s in all):" if a.get("seconds") is not None else "):")]
    for columns in _column_sets(a):
        widths = [max(len(title), 6) for _, title, _ in columns]
        out.append("  " + f"{'answerer':<{width}}  " + "  ".join(f"{t:>{w}}" for (_, t, _), w in zip(columns, widths)))
        for label in labels:
            s = a["answerers"][label]
            out.append("  " + f"{label:<{width}}  " + "  ".join(f"{_fmt(s[key], f):>{w}}" for (key, _, f), w in zip(columns, widths)))
    if not a["complete"]:
        out.append(f"  PARTIAL: {a['n']} of {a['n_requested']} questions done" + (f" ({a['error']})" if a["error"] else ""))
    return "\n".join(out)


def _column_sets(a: dict[str, Any]) -> list[list[tuple[str, str, str]]]:
    judged = any("judge_correct" in s for s in a["answerers"].values())
    return [COLUMNS, SPLIT, JUDGE] if judged else [COLUMNS, SPLIT]


def plot_tradeoff(a: dict[str, Any], png: str | Path) -> None:
    """Token F1, contains-a-reference and citation recall against p50 seconds per answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, title, marker in (("contains_reference", "contains a reference", "o"), ("f1", "token F1", "s"),
                               ("citation_recall", "citation recall", "^")):
        pts = [(s["latency_s_p50"], s[key]) for s in a["answerers"].values() if s["latency_s_p50"] is not None and s[key] is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=60, label=title)
    for label, s in a["answerers"].items():  # one name per answerer, above its best point
        scores = [s[key] for key in ("contains_reference", "f1", "citation_recall") if s[key] is not None]
        if s["latency_s_p50"] is not None and scores:
            ax.annotate(label, (s["latency_s_p50"], max(scores)), textcoords="offset points", xytext=(-10, 10), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("p50 seconds per answer (log scale)")
    ax.set_ylabel("score")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"answer quality vs latency, {a['n']} questions, top-{a['k']} chunks")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def _table(a: dict[str, Any], columns: list[tuple[str, str, str]]) -> str:
    head = "".join(f"<th>{escape(t)}</th>" for _, t, _ in columns)
    rows = "".join(
        f"<tr><th>{escape(label)}</th>" + "".join(f"<td>{_fmt(s[key], f)}</td>" for key, _, f in columns) + "</tr>"
        for label, s in a["answerers"].items()
    )
    return f"<table><tr><th>answerer</th>{head}</tr>{rows}</table>"


def _configs_table(report: dict[str, Any]) -> str:
    k = report["k"]
    rows = "".join(
        f"<tr><th>{escape(r['name'])}</th><td>{r['bytes_per_vector']}</td><td>{r[f'ndcg@{k}']:.4f}</td>"
        f"<td>{_fmt(r['pct_of_float32'], '{:.1f}')}</td><td>{r[f'recall@{k}']:.3f}</td></tr>"
        for r in report["configs"]
    )
    return (f"<h2>Retrieval</h2><table><tr><th>configuration</th><th>bytes/vector</th><th>nDCG@{k}</th>"
            f"<th>% of float32</th><th>recall@{k}</th></tr>{rows}</table>")


def _judged(r: dict[str, Any]) -> str:
    j = r.get("judge")
    if not j:
        return ""
    yes_no = {True: "yes", False: "no", None: "?"}
    return f"<br>judge: correct {yes_no[j['correct']]}, faithful {yes_no[j['faithful']]}"


def _question(i: int, q: dict[str, Any]) -> str:
    refs = " | ".join(escape(r) for r in q["references"])
    retrieved = "yes" if q["retrieved"] else "no (retrieval miss)"
    parts = [f'<div class="question" id="q{i}"><h3>{i}. {escape(q["question"])}</h3>',
             f"<p><b>reference:</b> {refs}<br><b>relevant:</b> {escape(', '.join(q['relevant']))}; "
             f"<b>relevant chunk retrieved:</b> {retrieved}</p><table>"]
    for label, r in q["answers"].items():
        cls = "ok" if r["verdict"] == "correct" else "bad"
        cited = "".join(
            f"<details><summary>[{c['n']}] {escape(c['source'])}{' (relevant)' if c['relevant'] else ''}</summary>"
            f"<blockquote>{escape(c['text'])}</blockquote></details>" for c in r["cited"]
        ) or "<i>no citation</i>"
        parts.append(
            f'<tr><th>{escape(label)}</th><td class="answer">{escape(r["answer"])}</td>'
            f'<td><span class="{cls}">{escape(r["verdict"])}</span><br>EM {r["exact_match"]:.0f} · F1 {r["f1"]:.2f} · '
            f'{r["latency_s"]:.2f} s{_judged(r)}</td><td>{cited}</td></tr>'
        )
    parts.append("</table></div>")
    return "".join(parts)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
td{text-align:right}.question td{text-align:left}.answer{white-space:pre-wrap;max-width:420px}
.ok{color:#0a0;font-weight:bold}.bad{color:#b00;font-weight:bold}.question{border-top:2px solid #888;margin-top:1em}
blockquote{margin:0.3em 0;padding:0.3em;background:#f6f6f6;max-width:420px;font-size:0.9em}dt{font-weight:bold}"""


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """``index.html`` and ``tradeoff.png`` in ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = report["answers"]
    title = f"Answers on {Path(str(report.get('dataset', ''))).name or 'the dataset'}"
    body = [f"<h1>{escape(title)}</h1>",
            f"<p>{a['n']} of {a['n_requested']} seeded questions, top-{a['k']} chunks of the default store; "
            f"a relevant chunk was retrieved for {_fmt(a['retrieval_hit@' + str(a['k'])], '{:.3f}')} of them"
            + (f"; answering took {a['seconds']:.0f} s" if a.get("seconds") is not None else "")
            + (f" (load average {report['machine']['load_average_1m']} on {report['machine']['cpus']} cpus at the start)"
               if "machine" in report else "") + ".</p>"]
    if not a["complete"]:
        body.append(f'<p class="bad">PARTIAL RESULTS: {escape(a["error"] or "the run stopped early")}</p>')
    body += ["<h2>Answer quality</h2>", _table(a, COLUMNS), "<h2>Retrieval vs answerer</h2>", _table(a, SPLIT)]
    if len(_column_sets(a)) > 2:
        body += ["<h2>LLM judge</h2>", _table(a, JUDGE)]
    verdicts = "".join(f"<tr><th>{escape(label)}</th>" + "".join(f"<td>{s['verdicts'][v]}</td>" for v in VERDICTS)
                       + "</tr>" for label, s in a["answerers"].items())
    body.append("<table><tr><th>answerer</th>" + "".join(f"<th>{escape(v)}</th>" for v in VERDICTS) + f"</tr>{verdicts}</table>")
    if a["n"]:
        plot_tradeoff(a, out / "tradeoff.png")
        body.append('<img src="tradeoff.png" alt="answer quality against latency per answerer">')
    body.append("<dl>" + "".join(f"<dt>{escape(t)}</dt><dd>{escape(d)}</dd>" for t, d in DEFINITIONS) + "</dl>")
    if report.get("configs"):
        body.append(_configs_table(report))
    body.append("<h2>Questions</h2>")
    body += [_question(i, q) for i, q in enumerate(a["questions"], start=1)]
    html = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    page = out / "index.html"
    page.write_text(html, encoding="utf-8")
    return page
