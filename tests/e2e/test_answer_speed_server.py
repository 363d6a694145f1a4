"""The prompt layout against a real llama.cpp server (llama-cpp-python serving SmolLM2-135M with the
flags README gives): consecutive questions share the system prompt prefix, which the server keeps
in its KV cache instead of reading it again; the source cap shortens what it does read."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.llm_server import start_smollm2
from indexing.chunk import count_tokens
from rag.answer import OpenAIAnswerer
from rag.prompt import SYSTEM
from rag.retrieve import Hit
from tests.e2e.conftest import wait_http
from tests.privacy_checks import free_port

README_FLAGS = ["--n_ctx", "2048", "--logits_all", "false"]  # README "Answers on SQuAD" server command
REUSE = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")
TEXT = ("Zebras have black and white stripes that confuse biting flies. A zebra herd is called a dazzle. "
        "Giraffes are the tallest land animals on Earth and eat acacia leaves. ")


@pytest.fixture
def verbose_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A server of its own whose log (it reports each prompt-cache hit) goes to a file."""
    port, log = free_port(), tmp_path / "server.log"
    with log.open("wb") as sink:
        proc = start_smollm2(port, README_FLAGS, sink)
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1", log
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def hits(topic: str, n: int) -> list[Hit]:
    return [Hit(i, 1.0 - i / 10, i, f"{topic} {i}. {TEXT}", f"{topic}{i}.txt", "", None, 0, 1, "") for i in range(1, n + 1)]


def test_the_system_prompt_is_read_once_and_the_cap_shortens_the_rest(verbose_server) -> None:  # type: ignore[no-untyped-def]
    url, log = verbose_server
    answerer = OpenAIAnswerer("smollm2", base_url=url, context_tokens=2048, answer_tokens=4)
    for question, topic in (("What do zebras confuse?", "zebras"), ("Where do giraffes live?", "giraffes")):
        used, stream = answerer.generate(question, hits(topic, 3))
        assert len(used) == 3 and "".join(stream) is not None
    answerer.source_tokens = 1  # only the top source goes in
    used, stream = answerer.generate("What is a herd of zebras called?", hits("herds", 3))
    assert len(used) == 1 and "".join(stream) is not None
    reuse = [(int(a), int(b)) for a, b in REUSE.findall(log.read_text(errors="replace"))]
    assert len(reuse) >= 2, log.read_text(errors="replace")[-2000:]
    (prefix2, rest2), (prefix3, rest3) = reuse[-2:]
    # the second and third prompts (other sources) start like the first: system prompt and sources header; at least
    # the system prompt's length (tiktoken's count, close to SmolLM2's) comes from the cache
    assert prefix2 >= 0.8 * count_tokens(SYSTEM) and prefix3 >= 0.8 * count_tokens(SYSTEM)
    assert rest3 < 0.5 * rest2  # one source of three: about a third of the tokens left to read
