"""The escaping and naming rules of ui/safety.py, without a server (the e2e tests use a real one)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from ui.safety import answer_markdown, markdown_literal, plain_text, unique_upload_path


@given(st.text())
def test_escaped_text_reads_back_unchanged(text: str) -> None:
    assert plain_text(markdown_literal(text)) == text
    assert plain_text(answer_markdown(text)) == text


@given(st.text(alphabet="![]()<>&\\:/x1 \n`*_#|~$=-.\"'", max_size=60))
def test_no_markup_survives_escaping(text: str) -> None:
    out = markdown_literal(text)
    assert "<" not in out and ">" not in out  # no HTML tag can open
    assert not re.search(r"(?<!\\)[!\[\]()`*_#|~$]", out.replace("\\\\", ""))  # every syntax mark escaped


def test_citations_stay_markup_and_images_do_not() -> None:
    out = answer_markdown("Stripes confuse flies ![x](http://127.0.0.1:9/b.png) <img src=x> [1]\n\n[2]: http://e/x.png [2]")
    assert "[1]" in out and "[2]" in out
    assert "![" not in out and "](" not in out and "<img" not in out and "]:" not in out


def test_same_name_gets_a_new_name_and_same_content_is_found(tmp_path: Path) -> None:
    corpus, a, b = tmp_path / "corpus", tmp_path / "a.txt", tmp_path / "b.txt"
    corpus.mkdir()
    a.write_text("first", encoding="utf-8")
    b.write_text("second", encoding="utf-8")
    first, same = unique_upload_path(corpus, "report.txt", a)
    assert (first.name, same) == ("report.txt", False)
    first.write_text("first", encoding="utf-8")
    assert unique_upload_path(corpus, "report.txt", b) == (corpus / "report-2.txt", False)
    assert unique_upload_path(corpus, "report.txt", a) == (corpus / "report.txt", True)
    (corpus / "notes.md").symlink_to(a)  # a symlink in the corpus is never reused or followed
    assert unique_upload_path(corpus, "notes.md", a) == (corpus / "notes-2.md", False)
