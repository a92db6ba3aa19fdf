"""A test stuck where pytest-timeout's alarm cannot reach it ends the run with its stack
printed (pytest's faulthandler_timeout with faulthandler_exit_on_timeout, set in
pyproject.toml), instead of stalling CI until CI's own limit with nothing said."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

STUCK = """
import signal
import time

import pytest


@pytest.mark.timeout(1)
def test_stuck_where_no_alarm_reaches() -> None:
    # SIGALRM blocked: pytest-timeout's alarm never runs, as in a C call or a spent alarm.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(120)
"""


def test_a_stuck_test_ends_the_run_with_its_stack(tmp_path: Path) -> None:
    (tmp_path / "test_stuck.py").write_text(STUCK)
    started = time.monotonic()
    # The project's own configuration, only the limit made short enough to wait for.
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)),
            *("-o", "faulthandler_timeout=3", str(tmp_path / "test_stuck.py")),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert done.returncode != 0
    assert took < 30  # the 3 s limit and start-up, far from the 120 s the test would sleep
    assert "Timeout (0:00:03)!" in done.stderr
    assert "in test_stuck_where_no_alarm_reaches" in done.stderr
