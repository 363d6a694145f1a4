"""The Gradio app over HTTP with gradio_client: streamed, cited answers; uploads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gradio_client import Client


def _text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content)
    return content


def ask(url: str, store: Path, question: str, history: list | None = None) -> list[list[dict]]:
    client = Client(url, verbose=False)
    job = client.submit(question, history or [], str(store), 3, 8, api_name="/ask")
    job.result(timeout=120)
    return [out[0] for out in job.outputs()]


def test_answer_streams_and_cites_the_supporting_chunk(app_url: str, small_store: Path) -> None:
    updates = ask(app_url, small_store, "What is a group of zebras called?")
    assert len(updates) >= 3, "the answer should arrive in several streamed updates"
    final = updates[-1]
    answer, sources = final[-2], final[-1]
    assert answer["role"] == "assistant" and sources["metadata"]["title"].startswith("Sources")
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", _text(answer))]
    assert cited, f"no citation in {_text(answer)!r}"
    assert "dazzle" in _text(answer)
    # the cited passage shown in the sources block really contains the supporting sentence
    block = _text(sources)
    passage = block.split(f"**[{cited[0]}]")[1].split("**[")[0].replace("\\", "")  # un-escape Markdown
    assert "dazzle" in passage and "animals.md" in passage


def test_follow_up_uses_history(app_url: str, small_store: Path) -> None:
    first = ask(app_url, small_store, "Who invented the saxophone?")[-1]
    follow = ask(app_url, small_store, "in which decade?", history=first)[-1]
    assert "1840s" in _text(follow[-2])


def test_upload_adds_a_document(app_url: str, small_store: Path, tmp_path: Path) -> None:
    from gradio_client import handle_file

    note = tmp_path / "octopus.txt"
    note.write_text("An octopus has three hearts and blue blood.", encoding="utf-8")
    client = Client(app_url, verbose=False)
    status = client.predict([handle_file(str(note))], str(small_store), api_name="/upload")
    assert "Added 1" in status
    answer = ask(app_url, small_store, "How many hearts does an octopus have?")[-1]
    assert "three hearts" in _text(answer[-2])
    assert (small_store / "corpus" / "octopus.txt").is_file()


def test_upload_rejects_unsupported_types(app_url: str, small_store: Path, tmp_path: Path) -> None:
    from gradio_client import handle_file

    bad = tmp_path / "run.sh"
    bad.write_text("rm -rf /", encoding="utf-8")
    client = Client(app_url, verbose=False)
    try:
        status = client.predict([handle_file(str(bad))], str(small_store), api_name="/upload")
    except Exception as exc:  # Gradio itself may refuse the file type before our handler
        status = str(exc)
    assert "Added" not in status
    assert not (small_store / "corpus" / "run.sh").exists()


def test_same_name_uploads_keep_both(app_url: str, small_store: Path, tmp_path: Path) -> None:
    from gradio_client import handle_file

    texts = ["Narwhal tusks are long spiral teeth that can grow three metres.",
             "Axolotls regrow lost limbs and even parts of their hearts."]
    files = []
    for n, text in enumerate([*texts, texts[0]]):  # two users' report.txt, then the first one again
        (tmp_path / str(n)).mkdir()
        files.append(tmp_path / str(n) / "report.txt")
        files[-1].write_text(text, encoding="utf-8")
    client = Client(app_url, verbose=False)
    statuses = [client.predict([handle_file(str(f))], str(small_store), api_name="/upload") for f in files]
    assert statuses[0].startswith("Added 1") and statuses[1].startswith("Added 1"), statuses
    assert "report.txt as report-2.txt" in statuses[1]
    corpus = small_store / "corpus"
    assert [(corpus / n).read_text(encoding="utf-8") for n in ("report.txt", "report-2.txt")] == texts
    assert "unchanged 1" in statuses[2] and not (corpus / "report-3.txt").exists()  # same content: one copy
    assert "spiral teeth" in _text(ask(app_url, small_store, "How long can narwhal tusks grow?")[-1][-2])


def test_empty_question_gets_a_message_not_an_answer(app_url: str, small_store: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from rag.cli import main

    with pytest.raises(Exception, match="Type a question first"):
        ask(app_url, small_store, "   ")
    assert main(["ask", " ", "--store", str(small_store)]) == 1
    assert "question is empty" in capsys.readouterr().err
