"""Baseline (a), the physical limit: a bare aio-pika consumer doing one aiohttp POST per message
to a zero-latency aiohttp server, ack after the answer (stack-notes §4 case c).

``python -m tests.bench.raw server`` prints ``PORT <n>`` and serves until SIGTERM;
``python -m tests.bench.raw consume --amqp URL --queue Q --url URL --count N`` consumes N
messages and prints one JSON line ``{"count", "seconds", "rate", "cpu_s"}`` (``cpu_s``: this
process's CPU time from the first message to the last).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

import aio_pika
import aiohttp
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web


async def serve() -> None:
    async def created(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=201, body=b'{"ok":true}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/{tail:.*}", created)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


async def consume(amqp: str, queue_name: str, url: str, count: int, prefetch: int) -> None:
    connection = await aio_pika.connect(amqp)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.get_queue(queue_name, ensure=False)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=prefetch))
    done = asyncio.Event()
    state = {"n": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0}

    async def on_message(message: AbstractIncomingMessage) -> None:
        if not state["first"]:
            state["first"] = time.perf_counter()
            state["cpu0"] = time.process_time()
        async with session.post(url, data=message.body) as resp:
            await resp.read()
        await message.ack()
        state["n"] += 1
        state["last"] = time.perf_counter()
        state["cpu1"] = time.process_time()
        if state["n"] >= count:
            done.set()

    await queue.consume(on_message)
    await done.wait()
    seconds = state["last"] - state["first"]
    cpu = state["cpu1"] - state["cpu0"]
    rate = (count - 1) / seconds
    print(json.dumps({"count": count, "seconds": seconds, "rate": rate, "cpu_s": cpu}))
    await session.close()
    await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.raw")
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("server")
    c = sub.add_parser("consume")
    c.add_argument("--amqp", required=True)
    c.add_argument("--queue", required=True)
    c.add_argument("--url", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--prefetch", type=int, default=100)
    args = parser.parse_args()
    if args.mode == "server":
        asyncio.run(serve())
    else:
        asyncio.run(consume(args.amqp, args.queue, args.url, args.count, args.prefetch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
