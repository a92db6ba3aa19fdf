"""The suite's fixtures and session checks, registered as plugins from ``tests/support`` (and the
BC emulator's fixtures from the emulator program); no fixture is defined here."""

import pytest

# The helpers' asserts explain themselves too (imported by the plugins before pytest would).
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.emulator.fixtures",
    "tests.support.fixtures_broker",
    "tests.support.fixtures_db",
    "tests.support.fixtures_exports",
    "tests.support.fixtures_console",
    "tests.support.fixtures_smtp",
    "tests.support.markers",
    "tests.support.session_checks",
]
