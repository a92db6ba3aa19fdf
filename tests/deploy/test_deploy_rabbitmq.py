"""The RabbitMQ files of deploy/ boot a real node of the version installed here (Debian's
3.10.8; deploy/README.md states the supported versions): the compose broker's rabbitmq.conf
with its users and the generated topology, the production cluster.conf with
cluster-advanced.config and policies.json, and an amqps:// listener with a private CA that the
worker trusts through BC_SYNC_AMQP_CA_FILE.

Each test runs a throw-away node (tests/support/rabbitmq_node.py: own name, ports and directory,
stopped by name). Skips where that is not possible.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import ipaddress
import shutil
import ssl
from pathlib import Path

import aio_pika
import pytest
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.deploy import DEPLOY, REPO, defaults
from tests.support.net import free_port
from tests.support.rabbitmq_node import Node, throwaway_node
from tests.support.settings import make_settings
from worker.messaging.topology import Topology

pytestmark = pytest.mark.slow
RMQ = DEPLOY / "rabbitmq"


async def _connect(
    node: Node,
    user: str,
    password: str,
    *,
    scheme: str = "amqp",
    ssl_context: ssl.SSLContext | None = None,
) -> aio_pika.abc.AbstractConnection:
    """The AMQP listener opens only after the boot-time definitions import has finished."""
    last: Exception | None = None
    for _attempt in range(120):
        try:
            return await aio_pika.connect(
                f"{scheme}://{user}:{password}@127.0.0.1:{node.amqp_port}/",
                timeout=5,
                ssl_context=ssl_context,
            )
        except aio_pika.exceptions.ProbableAuthenticationError:
            raise
        except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
            if "CERTIFICATE_VERIFY" in str(exc):
                raise
            last = exc
            if node.exited():
                break
            await asyncio.sleep(0.5)
    pytest.fail(f"the node did not accept AMQP connections: {last!r}\n{node.diagnostics()}")


def _definitions_dir(base: Path, *files: tuple[str, Path]) -> Path:
    """The directory `load_definitions` names, with the files under the names the docs give."""
    target = base / "definitions.d"
    target.mkdir()
    for name, source in files:
        shutil.copy(source, target / name)
    return target


async def test_compose_broker_boots_with_users_and_topology() -> None:
    def config(base: Path, port: int, _name: str) -> str:
        # The same files, under the same names, as docker-compose.yml mounts them.
        definitions = _definitions_dir(
            base,
            ("00-users.json", RMQ / "compose-users.json"),
            ("10-topology.json", RMQ / "definitions.json"),
        )
        conf = (RMQ / "rabbitmq.conf").read_text(encoding="utf-8")
        assert "/etc/rabbitmq/definitions.d" in conf
        conf = conf.replace("/etc/rabbitmq/definitions.d", str(definitions))
        conf = conf.replace("management.tcp.port = 15672", f"management.tcp.port = {free_port()}")
        return conf + f"\nlisteners.tcp.1 = 127.0.0.1:{port}\nmanagement.tcp.ip = 127.0.0.1\n"

    topology = Topology.from_settings(defaults())
    # The compose image enables management; its settings are only valid with the plugin on.
    with throwaway_node(config, plugins=("rabbitmq_management",)) as node:
        connection = await _connect(node, "bc-sync", "bc-sync")
        async with connection:
            channel = await connection.channel()
            # Imported at boot: a passive declare finds each queue without creating it.
            for spec in topology.queues:
                await channel.declare_queue(spec.name, passive=True)
            # The worker re-declares everything at start; any argument that differs from the
            # definitions file would close the channel with PRECONDITION_FAILED.
            declared = await topology.apply(await connection.channel())
            assert set(declared) == {q.name for q in topology.queues}

        guest = await _connect(node, "guest", "guest")  # what `make test` uses
        await guest.close()
        with pytest.raises(aio_pika.exceptions.ProbableAuthenticationError):
            await aio_pika.connect(f"amqp://bc-sync:wrong@127.0.0.1:{node.amqp_port}/", timeout=5)


async def test_cluster_config_and_policies_boot_on_this_version() -> None:
    """cluster.conf + cluster-advanced.config + policies.json (the production files) boot a
    node of the version installed here; the policies reach bc-sync's queues and the worker's
    own declarations agree with them."""
    conf_text = (RMQ / "cluster.conf").read_text(encoding="utf-8")
    peers = [line for line in conf_text.splitlines() if "classic_config.nodes." in line]
    assert len(peers) == 3

    def config(base: Path, port: int, name: str) -> str:
        definitions = _definitions_dir(
            base,
            ("00-users.json", RMQ / "compose-users.json"),
            ("10-topology.json", RMQ / "definitions.json"),
            ("20-policies.json", RMQ / "policies.json"),
        )
        conf = conf_text.replace("/etc/rabbitmq/definitions.d", str(definitions))
        # One node stands in for the three: its peer list names only itself.
        for line in peers[1:]:
            conf = conf.replace(line, "")
        conf = conf.replace(peers[0], peers[0].split("=")[0] + "= " + name)
        return conf + f"\nlisteners.tcp.1 = 127.0.0.1:{port}\n"

    advanced = (RMQ / "cluster-advanced.config").read_text(encoding="utf-8")
    with throwaway_node(config, advanced_config=advanced) as node:
        connection = await _connect(node, "bc-sync", "bc-sync")
        async with connection:
            topology = Topology.from_settings(defaults())
            declared = await topology.apply(await connection.channel())
            assert set(declared) == {q.name for q in topology.queues}
        listed = node.ctl("list_queues", "--no-table-headers", "name", "policy", "type")
        assert listed.returncode == 0, listed.stderr
        rows = {r.split("\t")[0]: r.split("\t")[1:] for r in listed.stdout.splitlines() if r}
        assert rows["bc-sync.exports"] == ["bc-sync-work", "quorum"]
        assert rows["bc-sync.retry.10s"] == ["bc-sync-work", "quorum"]
        assert rows["bc-sync.dead"] == ["bc-sync-dead", "quorum"]
        for key, value in {
            "cluster_partition_handling": "pause_minority",
            "quorum_cluster_size": "3",
            "queue_leader_locator": '<<"balanced">>',
        }.items():
            got = node.ctl("eval", f"application:get_env(rabbit, {key}).")
            assert got.stdout.strip() in {f"{{ok,{value}}}", f"{{ok,{value.strip('<>')}}}"}, (
                key,
                got.stdout,
            )


def _certificates(directory: Path) -> Path:
    """A private CA and a server certificate for 127.0.0.1 signed by it; returns the CA file."""
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("bc-sync test broker CA"))
        .issuer_name(name("bc-sync test broker CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(cert.public_bytes(pem))
    (directory / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.pem"


async def test_the_worker_trusts_a_private_broker_ca_through_the_setting(tmp_path: Path) -> None:
    """amqps:// to a broker whose certificate only a private CA vouches for: with
    BC_SYNC_AMQP_CA_FILE the worker's connections (runtime, topology, dead-letter sampler)
    succeed; without it the TLS handshake fails on the certificate."""
    from worker.app import Runtime
    from worker.messaging.topology import apply_topology
    from worker.ops.sampler import DeadLetterSampler

    ca_holder: list[Path] = []

    def config(base: Path, port: int, _name: str) -> str:
        ca_holder.append(_certificates(base))
        return (
            "listeners.tcp = none\n"
            f"listeners.ssl.1 = 127.0.0.1:{port}\n"
            f"ssl_options.cacertfile = {base / 'ca.pem'}\n"
            f"ssl_options.certfile = {base / 'server.pem'}\n"
            f"ssl_options.keyfile = {base / 'server.key'}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
        )

    with throwaway_node(config) as node:
        ca = tmp_path / "broker-ca.pem"
        shutil.copy(ca_holder[0], ca)
        url = f"amqps://guest:guest@127.0.0.1:{node.amqp_port}/"
        # The listener is up once a client that trusts the CA gets through.
        trusting = ssl.create_default_context(cafile=str(ca))
        await (await _connect(node, "guest", "guest", scheme="amqps", ssl_context=trusting)).close()

        untrusted = make_settings(tmp_path, amqp_url=url)
        with pytest.raises(aio_pika.exceptions.AMQPConnectionError, match="CERTIFICATE_VERIFY"):
            await apply_topology(untrusted)

        settings = make_settings(
            tmp_path, amqp_url=url, amqp_ca_file=ca, secret_key=Fernet.generate_key().decode()
        )
        topology = await apply_topology(settings)
        runtime = await Runtime.open(settings)
        try:
            assert not runtime.connection.is_closed
        finally:
            await runtime.stop()
        sampler = DeadLetterSampler(settings)
        assert await sampler.sample() == 0
        await sampler.stop()
        connection = await aio_pika.connect(url, ssl_context=trusting)
        async with connection:
            channel = await connection.channel()
            for spec in topology.queues:
                await channel.queue_delete(spec.name, if_unused=False, if_empty=False)
            await channel.exchange_delete(topology.exchange)


def test_every_broker_connection_of_the_worker_passes_the_tls_options() -> None:
    """Each aio_pika.connect / connect_robust call in worker/ passes **amqp_tls(settings),
    so no connection path silently ignores BC_SYNC_AMQP_CA_FILE."""
    calls = []
    for path in sorted((REPO / "worker").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                continue
            func = call.func
            if not (
                isinstance(func.value, ast.Name)
                and func.value.id == "aio_pika"
                and func.attr in {"connect", "connect_robust"}
            ):
                continue
            spread = [
                k.value
                for k in call.keywords
                if k.arg is None
                and isinstance(k.value, ast.Call)
                and isinstance(k.value.func, ast.Name)
                and k.value.func.id == "amqp_tls"
            ]
            calls.append((f"{path.relative_to(REPO)}:{call.lineno}", bool(spread)))
    # Runtime, consumer, topology, dlq and sampler all connect through
    # worker.messaging.connection (failover over several addresses), which passes them.
    assert calls and all(w.startswith("worker/messaging/connection.py:") for w, _ in calls), calls
    assert all(ok for _, ok in calls), [where for where, ok in calls if not ok]


def test_the_broker_ca_setting_is_checked_at_start(tmp_path: Path) -> None:
    """A CA without TLS, or a CA file that is not there, stops the worker in one line naming
    BC_SYNC_AMQP_CA_FILE, instead of being ignored."""
    from worker.config.settings import SettingsError, load_settings

    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    with pytest.raises(SettingsError, match=r"BC_SYNC_AMQP_CA_FILE: .*amqps://"):
        load_settings(
            _env_file=None, amqp_url="amqp://guest:guest@127.0.0.1:5672/", amqp_ca_file=ca
        )
    with pytest.raises(SettingsError, match=r"BC_SYNC_AMQP_CA_FILE: .*does not exist"):
        load_settings(_env_file=None, amqp_url="amqps://b:5671/", amqp_ca_file=tmp_path / "no.pem")
    ok = load_settings(_env_file=None, amqp_url="amqps://b:5671/", amqp_ca_file=ca)
    assert ok.amqp_ca_file == ca
