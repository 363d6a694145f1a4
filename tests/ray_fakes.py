"""tests/conftest.py's FakeEmbedder for the Ray tests, loaded by file path: ``from conftest import``
is ambiguous beside tests/e2e/conftest.py in a whole-suite run. Ray workers cannot import test
modules, so this module and the loaded conftest travel to them by value."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NAME = "ray_fakes_conftest"
if NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(NAME, Path(__file__).with_name("conftest.py"))
    _module = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
    sys.modules[NAME] = _module
    _spec.loader.exec_module(_module)  # type: ignore[union-attr]
FakeEmbedder = sys.modules[NAME].FakeEmbedder


def ship_by_value(*modules: str) -> None:
    """Let Ray pickle these modules' functions and classes by value (with this one and the fakes)."""
    import ray

    for name in (NAME, __name__, *modules):
        ray.cloudpickle.register_pickle_by_value(sys.modules[name])
