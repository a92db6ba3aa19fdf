"""The test TCP proxy, plus an outage: drop every connection and refuse new ones for a while
(a broker restart as the worker sees it, without stopping the broker other tests share)."""

from __future__ import annotations

import asyncio

from tests.support.tcp_proxy import TcpProxy


class OutageProxy(TcpProxy):
    """:class:`TcpProxy` that can also refuse connections (``down()`` / ``up()``)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.refusing = False
        self.outages = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        await super()._accept(reader, writer)

    def down(self) -> None:
        """Cut every connection and refuse new ones until :meth:`up`."""
        self.outages += 1
        self.refusing = True
        self.cut()
        self.cuts -= 1  # an outage is counted on its own

    def up(self) -> None:
        self.refusing = False
