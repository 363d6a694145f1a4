"""A real browser (Debian Chromium driven by Playwright) asks a question and sees a cited answer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "chat.png"


def test_browser_question_shows_cited_answer_and_sources(browser, app_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(app_url)
    page.locator("#answerer").get_by_text("extractive").wait_for(timeout=30_000)
    box = page.locator("#question textarea")
    box.fill("What is a group of zebras called?")
    box.press("Enter")
    chat = page.locator("#chatbot")
    chat.get_by_text("dazzle").first.wait_for(timeout=60_000)
    sources = chat.get_by_text("Sources (")
    sources.first.wait_for(timeout=60_000)
    assert "[1]" in chat.inner_text() or "[2]" in chat.inner_text() or "[3]" in chat.inner_text()
    page.wait_for_timeout(2_000)  # let the final render of the finished event land before toggling
    sources.first.click()  # open the collapsible sources block
    chat.get_by_text("animals.md").first.wait_for(state="visible", timeout=10_000)
    chat.get_by_text("A zebra herd is called a dazzle").last.wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(1_000)  # the block opens with an animation
    shot = tmp_path / "chat.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("RAG_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
    page.close()


def test_browser_upload_passes_the_server_limits(browser, app_url: str, small_store: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    note = tmp_path / "quokka.txt"
    note.write_text("Quokkas are small marsupials that live on Rottnest Island.", encoding="utf-8")
    page = browser.new_page()
    page.goto(app_url)
    page.locator("#answerer").get_by_text("extractive").wait_for(timeout=30_000)  # the app has started in the page
    for attempt in range(3):  # a file chosen while the upload component still mounts is dropped: choose it again
        page.locator("input[type=file]").first.set_input_files(str(note))
        try:
            page.get_by_text("quokka.txt").first.wait_for(timeout=15_000)  # uploaded to the server
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    page.locator("#add").click()
    page.locator("#upload-status").get_by_text("Added 1").wait_for(timeout=60_000)
    assert (small_store / "corpus" / "quokka.txt").is_file()
    page.close()
