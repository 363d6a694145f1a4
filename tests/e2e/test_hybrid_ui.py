"""The chat app's search-mode switch over HTTP: the mode reaches the search and the sources say it."""

from __future__ import annotations

from pathlib import Path

from gradio_client import Client

from ui.safety import markdown_literal


def test_mode_switch_reaches_the_search(app_url: str, small_store: Path) -> None:
    client = Client(app_url, verbose=False)
    for mode in ("keyword", "dense", "hybrid"):
        job = client.submit("What is a group of zebras called?", [], str(small_store), 3, 8, mode, api_name="/ask")
        job.result(timeout=120)
        final = job.outputs()[-1][0]
        sources = final[-1]
        assert sources["metadata"]["title"].endswith(f"{mode} search)"), sources["metadata"]["title"]
        content = sources["content"]
        text = content if isinstance(content, str) else " ".join(part.get("text", "") for part in content)
        assert markdown_literal("animals.md") in text  # the sources block escapes file names for Markdown
