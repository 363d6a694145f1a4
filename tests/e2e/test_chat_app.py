"""The Gradio app over HTTP with gradio_client: streamed, cited answers; uploads."""

from __future__ import annotations

import re
from pathlib import Path

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
