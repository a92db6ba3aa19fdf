"""The compose broker's configuration boots a real RabbitMQ node: rabbitmq.conf is accepted, the
users file and the generated definitions.json are imported at boot, and the worker's user can
declare the topology over them without an argument mismatch.

Runs a second, throw-away node (its own name and ports) with the machine's rabbitmq-server
(Debian's 3.10; the compose file uses the 3.13 image). Skips where that is not possible.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest

from tests.unit.test_deploy_names import DEPLOY, defaults
from worker.messaging.topology import Topology

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    amqp_port: int
    process: subprocess.Popen[bytes]
    output: Path
    log_dir: Path

    def exited(self) -> bool:
        """rabbitmq-server runs in the foreground, so its exit means the boot failed."""
        return self.process.poll() is not None

    def diagnostics(self) -> str:
        logs = [self.output, *self.log_dir.glob("*.log")]
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in logs if p.exists())


@pytest.fixture
def compose_broker() -> Iterator[Node]:
    server = shutil.which("rabbitmq-server")
    if server is None:
        pytest.skip("rabbitmq-server is not installed")
    try:
        owner = pwd.getpwnam("rabbitmq")
    except KeyError:
        pytest.skip("no rabbitmq system user")
    if os.geteuid() != 0:
        pytest.skip("starting a second RabbitMQ node needs root (it switches to rabbitmq)")

    # Not tmp_path: the node runs as the rabbitmq user, which cannot enter pytest's 0700 dirs.
    base = Path(tempfile.mkdtemp(prefix="bc-sync-deploy-rmq-"))
    definitions = base / "definitions.d"
    definitions.mkdir()
    # The same files, under the same names, as docker-compose.yml mounts them.
    shutil.copy(DEPLOY / "rabbitmq" / "compose-users.json", definitions / "00-users.json")
    shutil.copy(DEPLOY / "rabbitmq" / "definitions.json", definitions / "10-topology.json")
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text(encoding="utf-8")
    assert "/etc/rabbitmq/definitions.d" in conf
    amqp_port, http_port = _free_port(), _free_port()
    conf = conf.replace("/etc/rabbitmq/definitions.d", str(definitions))
    conf = conf.replace("management.tcp.port = 15672", f"management.tcp.port = {http_port}")
    conf += f"\nlisteners.tcp.1 = 127.0.0.1:{amqp_port}\nmanagement.tcp.ip = 127.0.0.1\n"
    (base / "rabbitmq.conf").write_text(conf)
    # The compose image enables management; its settings are only valid with the plugin on.
    (base / "enabled_plugins").write_text("[rabbitmq_management].\n")
    for path in [base, *base.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid)

    env = {
        **os.environ,
        "RABBITMQ_NODENAME": f"bcsyncdeploy{os.getpid()}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_DIST_PORT": str(_free_port()),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    output = base / "server.out"
    with output.open("wb") as out:
        # Foreground, in its own process group: its exit shows a failed boot at once, and the
        # whole group (wrapper, su, beam) is ended by id afterwards.
        process = subprocess.Popen(
            [server], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    node = Node(amqp_port, process, output, base / "log")
    try:
        yield node
    finally:
        # A throw-away node: no graceful stop needed (that takes seconds with management).
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        # The wrapper's exit does not mean the node's own processes are gone; they could
        # still create files while the directory is removed.
        for _ in range(200):
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        shutil.rmtree(base, ignore_errors=True)


async def _connect(node: Node, user: str, password: str) -> aio_pika.abc.AbstractConnection:
    """The AMQP listener opens only after the boot-time definitions import has finished."""
    last: Exception | None = None
    for _attempt in range(120):
        try:
            return await aio_pika.connect(
                f"amqp://{user}:{password}@127.0.0.1:{node.amqp_port}/", timeout=5
            )
        except aio_pika.exceptions.ProbableAuthenticationError:
            raise
        except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
            last = exc
            if node.exited():
                break
            await asyncio.sleep(0.5)
    pytest.fail(f"the node did not accept AMQP connections: {last!r}\n{node.diagnostics()}")


async def test_compose_broker_boots_with_users_and_topology(compose_broker: Node) -> None:
    topology = Topology.from_settings(defaults())
    connection = await _connect(compose_broker, "bc-sync", "bc-sync")
    async with connection:
        channel = await connection.channel()
        # Imported at boot: a passive declare finds each queue without creating it.
        for spec in topology.queues:
            await channel.declare_queue(spec.name, passive=True)
        # The worker re-declares everything at start; any argument that differs from the
        # definitions file would close the channel with PRECONDITION_FAILED.
        declared = await topology.apply(await connection.channel())
        assert set(declared) == {q.name for q in topology.queues}

    guest = await _connect(compose_broker, "guest", "guest")  # what `make test` uses
    await guest.close()
    with pytest.raises(aio_pika.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(
            f"amqp://bc-sync:wrong@127.0.0.1:{compose_broker.amqp_port}/", timeout=5
        )
