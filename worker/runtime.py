"""Running long-lived roles until SIGTERM/SIGINT, then stopping them in reverse order."""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextlib import suppress
from typing import Any, Generic, Protocol, TypeVar

import structlog

log = structlog.get_logger(__name__)


class Service(Protocol):
    """A role of the worker: consumer, poller, API, notifier."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


async def patiently(
    attempt: Callable[[], Awaitable[T]],
    wait_s: float,
    *,
    retry: Callable[[BaseException], bool],
    event: str,
) -> T:
    """``attempt()`` until it succeeds, retrying what ``retry`` accepts for ``wait_s`` seconds
    (0.5 s doubling to 5 s between tries); anything else, or the deadline, raises."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.5
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not retry(exc) or loop.time() + delay > deadline:
                raise
            log.warning(event, error=type(exc).__name__, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended (its cancellation is expected)."""
    if task is None:
        return
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


class KeyedLocks(Generic[K]):
    """One ``asyncio.Lock`` per key, kept weakly: a lock lives only while some task holds or
    waits for it, so the keys seen (organizations, companies, objects) never pile up."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[K, asyncio.Lock] = weakref.WeakValueDictionary()

    def for_key(self, key: K) -> asyncio.Lock:
        """The lock of ``key`` (a new one when nobody holds or waits for it)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def __len__(self) -> int:
        return len(self._locks)


class FlushEvery:
    """A buffer that a background task writes once per ``_interval`` seconds and once more when
    it stops, so a stop loses nothing. Subclasses set ``_interval`` and define :meth:`flush`."""

    _interval: float
    _task: asyncio.Task[None] | None = None

    async def flush(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self.flush()


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT (a second signal is ignored: draining is under way)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("runtime.stopping", signal=sig.name)
    stop.set()


async def run_services(services: Sequence[Service], stop: asyncio.Event | None = None) -> None:
    """Start every service, wait for ``stop`` (signals by default), then stop them in reverse."""
    if stop is None:
        stop = asyncio.Event()
        stop_on_signals(stop)
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
            log.info("runtime.role_started", role=service.name)
        await stop.wait()
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("runtime.role_stop_failed", role=service.name)
        log.info("runtime.stopped")
