"""Regenerate corpora/python-reference/ from the standard library's pydoc_data.topics.

Each reference topic (the text behind ``help("for")``) becomes one Markdown file whose first
heading is the topic's own title. Run: ``python corpora/make_python_reference.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydoc_data.topics import topics

OUT = Path(__file__).resolve().parent / "python-reference"


def to_markdown(text: str) -> str:
    """Turn the reST-like topic text into Markdown: underlined titles become headings."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"([*=\-])\1{2,}", nxt.strip()) and len(nxt.strip()) >= len(line.strip()) - 2:
            level = {"*": "#", "=": "##", "-": "###"}[nxt.strip()[0]]
            out.append(f"{level} {line.strip()}")
            i += 2
            continue
        out.append(line)
        i += 1
    return "\n".join(out).strip() + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in sorted(topics.items()):
        (OUT / f"{name}.md").write_text(to_markdown(text), encoding="utf-8")


if __name__ == "__main__":
    main()
