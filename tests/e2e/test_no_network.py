"""No network use the user did not configure: ``rag index`` (OpenVINO embedding), ``rag search`` and
``rag chat`` start-up run with a socket guard (tests/netguard) that records every attempt to reach
a non-loopback address, in these processes and in any Python child they start or fork."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.privacy_checks import guard_catches, outbound_attempts

ROOT = Path(__file__).resolve().parents[2]


def test_the_guard_records_attempts(tmp_path: Path) -> None:
    assert guard_catches(tmp_path) == 2  # a name lookup and a connect to a literal address


def test_index_search_and_chat_make_no_outbound_connection(tmp_path: Path) -> None:
    attempts = outbound_attempts(ROOT, tmp_path)
    assert attempts == [], f"{len(attempts)} outbound attempts, first: {attempts[:3]}"


def test_explicit_user_settings_win(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from indexing.offline import keep_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    keep_offline()
    assert os.environ["HF_HUB_OFFLINE"] == "0" and os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert sys.modules["openvino_telemetry"] is None  # OpenVINO falls back to its no-op stub
