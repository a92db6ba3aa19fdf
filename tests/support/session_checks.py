"""Session checks (a conftest plugin): no secret of the tests in what the product produced, and
no process a test started left running at the end."""

from __future__ import annotations

import os
import signal
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from tests.support.wait import wait_for_sync

# --- suite-wide secret scan (issue 9) ------------------------------------------------------------
# Every client secret and token the tests use must never show up in what the product produces:
# log output (captured per test), AMQP headers and bodies built in this process (dead letters,
# retries, outgoing events), admin API answers, metrics and mails (.eml files). Cheap: plain
# substring checks, on text already in memory, plus one walk of the session's temp dir.

SECRET_SCAN_MIN_LEN = 8  # shorter "secrets" (e.g. "s", "wrong") would match ordinary text


class SecretScan:
    """Collects secrets and the places where one was found."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.scanned = 0
        self.hits: list[str] = []

    def add(self, *values: str | None) -> None:
        for value in values:
            if value and len(value) >= SECRET_SCAN_MIN_LEN:
                self.secrets.add(value)

    def current(self) -> set[str]:
        from worker.log import _known_secrets

        return self.secrets | {s for s in _known_secrets if len(s) >= SECRET_SCAN_MIN_LEN}

    def check(self, where: str, text: str | bytes | None) -> None:
        if not text:
            return
        self.scanned += 1
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for secret in self.current():
            if secret in text:
                # Name the place and the secret's first characters only.
                self.hits.append(f"{where}: {secret[:4]}…")


SECRET_SCAN = SecretScan()


def _collect_test_secrets() -> None:
    from tests.emulator.seed import DEMO

    SECRET_SCAN.add(DEMO.client_secret)


def _patch_producers() -> None:
    """Wrap where messages and API answers are built, so their content is scanned (once)."""
    from aio_pika import Message
    from aiohttp import web

    if getattr(Message, "_secret_scan", False):
        return
    message_init = Message.__init__
    response_init = web.Response.__init__

    def scanned_message(self: Any, body: bytes, *args: Any, **kwargs: Any) -> None:
        message_init(self, body, *args, **kwargs)
        SECRET_SCAN.check("amqp headers", repr(kwargs.get("headers")))
        SECRET_SCAN.check("amqp body", body)

    def scanned_response(self: Any, *args: Any, **kwargs: Any) -> None:
        response_init(self, *args, **kwargs)
        for key in ("text", "body"):
            value = kwargs.get(key)
            if isinstance(value, str | bytes):
                SECRET_SCAN.check("http answer", value)

    Message.__init__ = scanned_message  # type: ignore[method-assign]
    web.Response.__init__ = scanned_response  # type: ignore[method-assign]
    Message._secret_scan = True  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    _collect_test_secrets()
    _patch_producers()
    # Inherited by every process a test starts (and what those start, e.g. a RabbitMQ node's
    # beam and epmd, or a worker or emulator subprocess): how the leftover check finds them.
    os.environ[SESSION_MARKER] = str(os.getpid())


# --- every process a test starts is gone at the end (issue 21) ----------------------------------
SESSION_MARKER = "BCSYNC_TEST_SESSION"
LEFTOVER_GRACE_S = 10.0  # processes still shutting down when the last test ends


def leftover_processes() -> dict[int, str]:
    """Processes other than this one that carry this session's marker: pid -> command line."""
    me = str(os.getpid())
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or another user's process
            continue
        if f"{SESSION_MARKER}={me}".encode() in environ.split(b"\0"):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")[:160]
    return found


def check_leftover_processes(session: pytest.Session) -> None:
    """Fail the run when a process a test started outlives the tests (a RabbitMQ node that
    escaped its test's cleanup, an emulator, a worker), then end it by pid."""
    if not Path("/proc/self/environ").exists():
        return
    left: dict[int, str] = {}

    def all_gone() -> bool:
        nonlocal left
        left = leftover_processes()
        return not left

    wait_for_sync(all_gone, LEFTOVER_GRACE_S, 0.2, fail=False)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"leftover processes: {len(left)}")
        for pid, command in left.items():
            reporter.write_line(f"  left running by the tests: pid {pid}: {command}")
    for pid in left:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if left and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for title, content in report.sections:
        if title.startswith("Captured"):
            SECRET_SCAN.check(f"{report.nodeid} {title}", content)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from prometheus_client import REGISTRY, generate_latest

    SECRET_SCAN.check("metrics", generate_latest(REGISTRY))
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else None
    if base is not None and base.exists():
        for path in base.rglob("*.eml"):
            SECRET_SCAN.check(f"mail {path.name}", path.read_bytes())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    line = (
        f"secret scan: {len(SECRET_SCAN.current())} secrets, {SECRET_SCAN.scanned} outputs "
        f"scanned, {len(SECRET_SCAN.hits)} found"
    )
    if reporter is not None:
        reporter.write_line(line)
        for hit in SECRET_SCAN.hits[:20]:
            reporter.write_line(f"  secret found in {hit}")
    if SECRET_SCAN.hits and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    check_leftover_processes(session)
