"""The product stands alone: importing every module of ``worker`` loads nothing from ``tests``
(an installed wheel or the Docker image has no ``tests/``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_ALL = (
    "import worker, pkgutil, importlib, sys; "
    "[importlib.import_module(m.name) for m in pkgutil.walk_packages(worker.__path__, 'worker.')]; "
    "loaded = [m for m in sys.modules if m == 'tests' or m.startswith('tests.')]; "
    "assert not loaded, loaded"
)


def test_importing_every_worker_module_loads_nothing_from_tests() -> None:
    # A fresh interpreter: this one has imported tests already.
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
