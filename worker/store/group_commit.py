"""Group commit: concurrent single-statement writes share transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.store.engine import Store


class GroupCommit:
    """Runs single-statement writes of concurrent handlers in shared transactions (group
    commit): while one transaction runs, the next requests queue and go together in the next
    one. ``row_key`` names the row a statement's parameters write: a batch runs in key order,
    so concurrent batches of several processes lock rows in the same order and PostgreSQL
    never has to break a deadlock between them. Each statement stays atomic; a caller returns
    only after its transaction committed. One transaction per write (with SQLite's BEGIN,
    COMMIT and the pool's reset, each a thread hop through aiosqlite) cost more CPU than the
    statements. A batch that fails is run again one statement per transaction, so one bad
    request never fails the others."""

    MAX_BATCH = 64

    def __init__(
        self, store: Store, row_key: Callable[[Mapping[str, Any]], tuple[str, ...]]
    ) -> None:
        self._store = store
        self._row_key = row_key
        self._queue: list[tuple[Any, dict[str, Any], bool, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def run(self, stmt: Any, params: dict[str, Any], *, returning: bool = False) -> Any:
        """The statement's row (``returning``) or its rowcount, once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((stmt, params, returning, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
            try:
                results = await self._execute(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0], error=exc)
                else:
                    for item in batch:
                        await self._one(item)
                continue
            for item, result in zip(batch, results, strict=True):
                _settle(item, result=result)

    async def _one(self, item: tuple[Any, dict[str, Any], bool, asyncio.Future[Any]]) -> None:
        try:
            [result] = await self._execute([item])
        except Exception as exc:
            _settle(item, error=exc)
        else:
            _settle(item, result=result)

    async def _execute(
        self, batch: list[tuple[Any, dict[str, Any], bool, asyncio.Future[Any]]]
    ) -> list[Any]:
        # Rows in key order: concurrent batches of several processes lock them in the same
        # order, so PostgreSQL never has to break a deadlock between them.
        order = sorted(range(len(batch)), key=lambda i: self._row_key(batch[i][1]))
        out: list[Any] = [None] * len(batch)
        async with self._store.write() as conn:
            for i in order:
                stmt, params, returning, _future = batch[i]
                result = await conn.execute(stmt, params)
                out[i] = result.first() if returning else result.rowcount
        return out


def _settle(
    item: tuple[Any, dict[str, Any], bool, asyncio.Future[Any]],
    *,
    result: Any = None,
    error: BaseException | None = None,
) -> None:
    future = item[3]
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
