"""Markers set by the fixtures (a conftest plugin): a test is ``broker``, ``postgres``,
``emulator`` or ``slow`` because of what it uses, never because someone remembered to say so.

``pytest -m "not broker and not postgres"`` then runs what needs no service;
``pytest -m "not slow"`` leaves out the chaos soak, the browser and the long subprocess runs.
"""

from __future__ import annotations

import pytest

# fixture name -> marker, for every item whose fixture closure holds the fixture
BY_FIXTURE = {
    "amqp_url": "broker",
    "pg_database": "postgres",
    "bc_emulator": "emulator",
    "chromium": "slow",
}
# a parameter of these values puts the test on the shared PostgreSQL server (db_url, exports)
POSTGRES_PARAMS = {"postgresql"}
# a test that needs more than the suite's default timeout is slow
DEFAULT_TIMEOUT_S = 120.0


def marks_of(item: pytest.Item) -> set[str]:
    """The markers the fixtures (and parameters, and timeouts) of ``item`` call for."""
    names = set(getattr(item, "fixturenames", ()))
    marks = {mark for fixture, mark in BY_FIXTURE.items() if fixture in names}
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        params = {k: v for k, v in callspec.params.items() if k in names}
        if any(isinstance(v, str) and v in POSTGRES_PARAMS for v in params.values()):
            marks.add("postgres")
    timeout = item.get_closest_marker("timeout")
    if timeout is not None and timeout.args and float(timeout.args[0]) > DEFAULT_TIMEOUT_S:
        marks.add("slow")
    return marks


# First: the -m selection (pytest's own hook) must see these markers.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in sorted(marks_of(item) - {m.name for m in item.iter_markers()}):
            item.add_marker(mark)
