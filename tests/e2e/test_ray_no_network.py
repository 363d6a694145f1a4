"""``rag index --ray`` and ``rag search --ray`` (a local Ray: driver, Ray's Python daemons, workers,
embedding actors and search shards) under the
socket guard of tests/netguard: no attempt to reach a non-loopback address. Ray's C++ daemons
(GCS, raylet) are outside a Python guard; they are bound to 127.0.0.1 by ``ray_session``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.privacy_checks import DOCS, guarded_env, read_log

pytest.importorskip("ray", reason="ray[data] is in the test extras")
ROOT = Path(__file__).resolve().parents[2]


def test_rag_index_and_search_on_a_local_ray_make_no_outbound_connection(tmp_path: Path) -> None:
    docs, store, log, home = tmp_path / "docs", tmp_path / "store", tmp_path / "net.log", tmp_path / "home"
    docs.mkdir()
    home.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    env = guarded_env(ROOT, log, home)
    for var in [k for k in env if k.startswith("RAY_")]:  # what the product sets, not the caller
        del env[var]
    done = subprocess.run([sys.executable, "-m", "rag.cli", "index", str(docs), "--store", str(store), "--ray",
                           "--workers", "1", "--embed-backend", "torch"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "added=2" in done.stdout and "embedded_with=ray:torch" in done.stdout
    assert "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "rag.cli", "search", "do otters sleep holding hands", "--store", str(store),
                           "--ray", "--workers", "2", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)[0]["text"].startswith("Sea otters hold hands")  # sharded search answered
    attempts = read_log(log)
    assert attempts == [], f"{len(attempts)} outbound attempts, first: {attempts[:3]}"
