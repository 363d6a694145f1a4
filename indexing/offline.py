"""No network use the user did not configure: telemetry and hub look-ups off, before heavy imports.

``keep_offline()`` runs when ``indexing`` is imported (so the library, ``rag`` and the chat app
all get it). It only sets environment variables the user has not set, so an explicit
``HF_HUB_OFFLINE=0`` (to download a model) or ``LANGSMITH_TRACING=true`` still wins. OpenVINO's
telemetry has no environment switch: its only opt-out writes ``~/intel/openvino_telemetry``. So
``openvino_telemetry`` is made unimportable in this process, and OpenVINO falls back to its
built-in no-op stub (``openvino.tools.ovc.telemetry_stub``). Tested in tests/e2e/test_no_network.py.
"""

from __future__ import annotations

import os
import sys

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # models come bundled or as local folders; no hub look-ups
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",  # Gradio's launch analytics and version check
    "LANGCHAIN_TRACING_V2": "false",  # LangSmith tracing (old and new names)
    "LANGSMITH_TRACING": "false",
    "DO_NOT_TRACK": "1",
}
TELEMETRY_MODULES = ("openvino_telemetry",)  # OpenVINO imports these in try/except ImportError


def keep_offline() -> None:
    """Turn off every telemetry and hub download we know of, unless the user chose otherwise."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    for module in TELEMETRY_MODULES:
        sys.modules.setdefault(module, None)  # type: ignore[arg-type]  # None: "import" raises ImportError
