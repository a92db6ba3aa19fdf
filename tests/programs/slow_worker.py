"""A worker process whose handler is slow, for shutdown tests.

Runs the real consumer and the real signal handling; each handled event id is appended to the
file named by ``DONE_FILE`` and each started one to ``STARTED_FILE``. ``SLOW_S`` sets the delay.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from worker.config.settings import load_settings
from worker.events.envelope import Event
from worker.events.handlers import Outcome
from worker.log import configure
from worker.messaging.consumer import Consumer
from worker.runtime import run_services


async def main() -> None:
    settings = load_settings(_env_file=None)
    configure("json", "INFO")
    slow = float(os.environ.get("SLOW_S", "2"))

    async def handler(event: Event[Any]) -> Outcome:
        with open(os.environ["STARTED_FILE"], "a") as f:
            f.write(event.id + "\n")
        await asyncio.sleep(slow)
        with open(os.environ["DONE_FILE"], "a") as f:
            f.write(event.id + "\n")
        return Outcome.ok()

    consumer = Consumer(settings, {"moment.customer.created": handler})
    await run_services([consumer])


if __name__ == "__main__":
    asyncio.run(main())
