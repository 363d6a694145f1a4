"""``rag eval --answers`` against a real OpenAI-compatible server (llama.cpp serving SmolLM2-135M):
extractive and SmolLM2 side by side (SmolLM2 also as --judge), the HTML report opened in a real browser, and a server
killed mid-run (clear one-line error, the questions done kept on disk)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.llm_server import start_smollm2
from rag.cli import main
from tests.answer_sets import write_answer_set
from tests.e2e.conftest import free_port, wait_http

DOCS = {
    "zebra": "Zebras have black and white stripes. The stripes confuse biting flies.",
    "sax": "The saxophone was invented by Adolphe Sax in Belgium. He patented it in 1846.",
    "lava": "Volcanoes erupt molten basalt lava. Magma pressure breaks the crust.",
    "fjord": "Glaciers carve deep fjords. Ice creeps slowly down the valley.",
    "cello": "A cello has four strings tuned in fifths. It is played with a bow.",
}
QUESTIONS = {  # id -> (question, relevant doc, reference answer)
    "q1": ("What confuses biting flies on zebras?", "zebra", "stripes"),
    "q2": ("Who invented the saxophone?", "sax", "Adolphe Sax"),
    "q3": ("What kind of lava do volcanoes erupt?", "lava", "molten basalt lava"),
    "q4": ("What do glaciers carve?", "fjord", "deep fjords"),
    "q5": ("How many strings does a cello have?", "cello", "four"),
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR folder with answers.jsonl: five questions, each with one relevant document."""
    folder = tmp_path_factory.mktemp("beir") / "tiny"
    return write_answer_set(folder, DOCS, QUESTIONS, [f"Notes {i} on maps, trains and trips." for i in range(5)])


def test_extractive_and_smollm2_side_by_side_with_a_report(dataset: Path, llm_server: str, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    out, report = tmp_path / "answers.json", tmp_path / "report"
    argv = ["eval", "--dataset", str(dataset), "--cache-dir", str(tmp_path / "cache"), "--answers", "3", "--answer-k", "2",
            "--llm", "extractive,smollm2", "--base-url", llm_server, "--json", str(out), "--report", str(report),
            "--judge", "smollm2"]
    assert main(argv) == 0
    a = json.loads(out.read_text())["answers"]
    assert a["complete"] and a["n"] == 3 and list(a["answerers"]) == ["extractive", "smollm2"]
    llm = a["answerers"]["smollm2"]
    assert llm["name"] == f"smollm2 via {llm_server}"
    assert llm["prompt_tokens_mean"] > 50 and llm["completion_tokens_mean"] > 0  # sources are in the prompt
    assert llm["token_counts_from"][0] in ("server", "tiktoken") and llm["latency_s_p50"] > 0
    for q in a["questions"]:
        assert q["answers"]["smollm2"]["answer"].strip() and q["retrieved"]  # the tiny corpus is always found
        assert q["answers"]["extractive"]["verdict"] in ("correct", "wrong: answerer", "declined: answerer")
    assert a["answerers"]["extractive"]["citation_recall"] == 1.0  # quotes of the relevant document, cited
    judged = [r["judge"] for q in a["questions"] for r in q["answers"].values()]
    assert len(judged) == 6 and all(j["reply"].strip() for j in judged)  # the judge (same server) rated every answer
    assert {"judge_correct", "judge_agrees_exact_match"} <= set(llm)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((report / "index.html").as_uri())
    rows = page.locator(".question")
    assert rows.count() == 3
    rows.nth(2).scroll_into_view_if_needed()
    assert rows.nth(0).is_visible() and rows.nth(2).is_visible()
    first = rows.nth(0).inner_text()
    assert a["questions"][0]["question"] in first and "smollm2" in first and "extractive" in first
    assert page.locator("img[src='tradeoff.png']").evaluate("img => img.naturalWidth") > 100  # the plot loaded
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


@pytest.fixture
def doomed_server() -> Iterator[tuple[str, subprocess.Popen]]:
    """A server of its own (the test kills it), not the shared session one."""
    port = free_port()
    proc = start_smollm2(port, ["--n_ctx", "2048"])
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        proc.kill()
        proc.wait(timeout=20)


def test_server_killed_mid_run_is_one_line_and_keeps_the_questions_done(dataset: Path, doomed_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, server = doomed_server
    out, report = tmp_path / "partial.json", tmp_path / "report"
    run = subprocess.Popen(
        [sys.executable, "-m", "rag.cli", "eval", "--dataset", str(dataset), "--cache-dir", str(tmp_path / "cache"),
         "--answers", "5", "--llm", "smollm2", "--base-url", url, "--json", str(out), "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if out.is_file() and json.loads(out.read_text()).get("answers", {}).get("n", 0) >= 1:
            break
        time.sleep(0.1)
    server.kill()  # one question answered: the next ones meet a dead server
    _, stderr = run.communicate(timeout=240)
    assert run.returncode == 1, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "smollm2" in last and "questions done are written to" in last
    a = json.loads(out.read_text())["answers"]
    assert not a["complete"] and 1 <= a["n"] < 5 and "smollm2 failed at question" in a["error"]
    assert len(a["questions"]) == a["n"] and a["answerers"]["smollm2"]["n"] == a["n"]
    html = (report / "index.html").read_text(encoding="utf-8")
    assert "PARTIAL RESULTS" in html and html.count('class="question"') == a["n"]
