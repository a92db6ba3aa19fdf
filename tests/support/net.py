"""Local ports for the servers a test starts, and an address on which nothing listens."""

from __future__ import annotations

import socket
from contextlib import closing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port_url() -> str:
    """An https URL on which nothing listens."""
    return f"https://127.0.0.1:{free_port()}"
