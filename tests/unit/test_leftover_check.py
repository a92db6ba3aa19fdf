"""The end-of-run check (tests/support/session_checks.py) sees a process a test started and left
behind, even one that escaped into its own session, and not one that has ended."""

from __future__ import annotations

import subprocess
import sys

from tests.support.session_checks import leftover_processes


def test_a_process_left_by_a_test_is_found_and_an_ended_one_is_not() -> None:
    escaped = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        found = leftover_processes()
        assert escaped.pid in found
        assert "time.sleep(60)" in found[escaped.pid]
    finally:
        escaped.kill()
        escaped.wait(timeout=10)
    assert escaped.pid not in leftover_processes()
