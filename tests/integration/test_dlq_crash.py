"""A replay killed mid-way (SIGKILL) loses nothing: each message ends up in the exports queue,
the dead-letter queue, or at worst both."""

from __future__ import annotations

import asyncio
import sys

from tests.support.amqp import depth, drain
from tests.support.cli import cli_env
from tests.support.dead_letters import Spec, ids_of, make_dead_letters
from tests.support.wait import wait_for
from worker.config.settings import Settings
from worker.ops import dlq

COUNT = 40


async def test_replay_killed_midway_loses_nothing(settings: Settings) -> None:
    expected = await make_dead_letters(settings, [Spec(str(i)) for i in range(COUNT)])
    exports, dead = settings.queue("exports"), settings.queue("dead")
    # --rate keeps the run long enough (about 2 s) to kill it half-way.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker.cli",
        "dlq",
        "replay",
        "--rate",
        "20",
        env=cli_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        async def started() -> bool:
            return await depth(settings, exports) >= 5

        try:
            await wait_for(started, timeout=30)
        except AssertionError:
            proc.kill()
            out, _ = await proc.communicate()
            raise AssertionError(out.decode()[-3000:]) from None
        proc.kill()
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -9

    seen_exports: list[str] = []
    seen_dead: list[str] = []

    async def everything_accounted_for() -> bool:
        # Draining accumulates, so a message the broker hands back late is still counted.
        seen_exports.extend(ids_of(await drain(settings, exports)))
        seen_dead.extend(ids_of(await drain(settings, dead)))
        return set(seen_exports) | set(seen_dead) == set(expected)

    await wait_for(everything_accounted_for, timeout=20)  # nothing lost
    assert 0 < len(set(seen_exports)) < COUNT  # it really was killed mid-way
    # Each message is in exactly one queue, except at most the one publish in flight at the
    # kill (rate mode publishes one at a time), which may be in both.
    assert len(set(seen_exports) & set(seen_dead)) <= 1
    assert len(seen_exports) == len(set(seen_exports))
    assert len(seen_dead) == len(set(seen_dead))
    # The lock died with the process: the next operation does not wait for it.
    assert await dlq.list_dead_letters(settings, lock_wait=1) == []
