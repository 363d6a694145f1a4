"""Run a child process that file permissions apply to, also when the tests run as root: as root it
starts without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (``setpriv``, util-linux)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def run_unprivileged(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python ARGS`` with tests/ and the checkout on PYTHONPATH, permissions enforced."""
    cmd = [sys.executable, *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root needs setpriv (util-linux) to drop the permission override")
        caps = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]
    path = os.pathsep.join(filter(None, [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH")]))
    return subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=timeout)
