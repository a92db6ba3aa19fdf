"""Throw-away RabbitMQ nodes for the deploy tests: the machine's rabbitmq-server (Debian's
3.10) started in the foreground under its own name, ports and directory, and stopped by name.

The server script switches to the `rabbitmq` user in a new session, so killing our child's
process group does not reach the Erlang VM (beam.smp) or the epmd it may start. A node is
therefore stopped with `rabbitmqctl -n NODE stop`; whatever of it is still there afterwards
(found by the node name in its environment) is killed by pid, and so is an epmd that this
node started. tests/support/session_checks.py fails the run if any process the tests started
is left.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.wait import wait_for_sync

NODE_PREFIX = "bcsyncdeploy"
_counter = itertools.count(1)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def node_processes(node: str) -> list[int]:
    """Every process (beam.smp, erl_child_setup, epmd, inet_gethost, ...) of this node."""
    return [p for p in pids() if _environ(p).get("RABBITMQ_NODENAME") == node]


@dataclass
class Node:
    name: str
    amqp_port: int
    base: Path
    process: subprocess.Popen[bytes]
    output: Path
    env: dict[str, str] = field(default_factory=dict)  # what it was started with

    def exited(self) -> bool:
        """rabbitmq-server runs in the foreground, so its exit means the boot failed."""
        return self.process.poll() is not None

    def diagnostics(self) -> str:
        """The node's error lines (why a boot failed) and the tail of its output and logs."""
        logs = [p for p in [self.output, *(self.base / "log").glob("*.log")] if p.exists()]
        texts = [p.read_text(errors="replace") for p in logs]
        errors = [line for t in texts for line in t.splitlines() if "[error]" in line][:40]
        return "\n".join([*errors, "...", *(t[-2000:] for t in texts)])

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.amqp_port}/"

    def start(self) -> None:
        """Start the server process again: the same name, ports and data directory."""
        self.process = _spawn(self.env, self.output)

    def wait_ready(self, timeout: float = 90) -> None:
        """Until the node's RabbitMQ application runs (``await_startup`` fails at once while
        the node has not registered yet, stack-notes §3, so it is polled)."""

        def up() -> bool:
            if self.exited():
                raise RuntimeError(f"node {self.name} exited while booting:\n{self.diagnostics()}")
            with suppress(subprocess.TimeoutExpired):
                return self.ctl("await_startup", "--timeout", "10", timeout=20).returncode == 0
            return False

        if not wait_for_sync(up, timeout, 0.3, fail=False):
            raise RuntimeError(f"node {self.name} not up in {timeout:.0f} s")


def rabbitmq_missing() -> str | None:
    """Why no extra RabbitMQ node can be started here, or None when one can."""
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        return "rabbitmq-server is not installed"
    try:
        pwd.getpwnam("rabbitmq")
    except KeyError:
        return "no rabbitmq system user"
    if os.geteuid() != 0:
        return "starting a second RabbitMQ node needs root (it switches to rabbitmq)"
    return None


def require_rabbitmq() -> pwd.struct_passwd:
    if (reason := rabbitmq_missing()) is not None:
        pytest.skip(reason)
    return pwd.getpwnam("rabbitmq")


@contextmanager
def throwaway_node(
    config: Callable[[Path, int, str], str],
    *,
    plugins: tuple[str, ...] = (),
    advanced_config: str | None = None,
) -> Iterator[Node]:
    """A running node; ``config(base_dir, amqp_port, node_name)`` returns its rabbitmq.conf
    text. Files the config names go under ``base_dir`` (readable by the node's user)."""
    require_rabbitmq()
    name = f"{NODE_PREFIX}{os.getpid()}n{next(_counter)}@localhost"
    node = launch(name, config, plugins=plugins, advanced_config=advanced_config)
    try:
        yield node
    finally:
        stop(node)
        shutil.rmtree(node.base, ignore_errors=True)


def launch(
    name: str,
    config: Callable[[Path, int, str], str],
    *,
    plugins: tuple[str, ...] = (),
    advanced_config: str | None = None,
    prefix: str = "bc-sync-deploy-rmq-",
) -> Node:
    """Start (not wait for) a node named ``name`` in a fresh directory; the caller stops it
    (:func:`stop`) and removes ``node.base``."""
    owner = pwd.getpwnam("rabbitmq")
    # Not tmp_path: the node runs as the rabbitmq user, which cannot enter pytest's 0700 dirs.
    base = Path(tempfile.mkdtemp(prefix=prefix))
    amqp_port = free_port()
    (base / "rabbitmq.conf").write_text(config(base, amqp_port, name))
    (base / "enabled_plugins").write_text(f"[{','.join(plugins)}].\n")
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    if advanced_config is not None:
        (base / "advanced.config").write_text(advanced_config)
        env["RABBITMQ_ADVANCED_CONFIG_FILE"] = str(base / "advanced.config")
    for path in [base, *base.rglob("*")]:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    output = base / "server.out"
    output.touch()
    os.chown(output, owner.pw_uid, owner.pw_gid)
    return Node(name, amqp_port, base, _spawn(env, output), output, env)


def _spawn(env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    with output.open("ab") as out:
        return subprocess.Popen(["rabbitmq-server"], env=env, stdout=out, stderr=subprocess.STDOUT)


def shutdown(node: Node) -> None:
    """``rabbitmqctl stop`` (the Erlang VM exits), killing the server process if it stays."""
    if not node.exited():
        with suppress(subprocess.TimeoutExpired):
            node.ctl("stop", timeout=60)
    with suppress(subprocess.TimeoutExpired):
        node.process.wait(timeout=30)
    if node.process.poll() is None:
        node.process.kill()
        node.process.wait(timeout=10)


def stop(node: Node) -> None:
    """Stop the node by name, then end by pid whatever of it (beam, epmd, ...) is left."""
    shutdown(node)
    # An epmd started by this node carries its name in its environment; an epmd that was
    # already running (the machine's broker's) does not, and stays.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = node_processes(node.name)
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        if wait_for_sync(lambda: not node_processes(node.name), 5, 0.05, fail=False):
            return
