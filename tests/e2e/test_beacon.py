"""Text from documents is shown as text in the chat: a Markdown image and an <img> tag quoted from a
document make the viewer's browser fetch nothing (a loopback beacon server counts requests)."""

from __future__ import annotations

from pathlib import Path

from tests.privacy_checks import beacon_requests


def test_document_markup_in_answers_and_sources_fetches_nothing(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert beacon_requests(tmp_path, browser) == 0
