"""``python -m tests.chaos.cluster`` (``make chaos-cluster``): the chaos soak against a real
three-node RabbitMQ cluster on this machine, stopping the node that leads the exports queue,
then another, and starting them again, while worker processes that know all three addresses
go on (issue 22).

The three nodes are started beside the machine's own broker (which is left alone): names
``bcsynccluster<pid>n<i>@localhost``, their own AMQP and distribution ports, data and logs in a
temporary directory, the package's Erlang cookie (the server switches to the ``rabbitmq``
user). Nodes 2 and 3 join node 1 (``stop_app`` / ``join_cluster`` / ``start_app``); quorum
queue leaders are spread over the nodes (``queue_leader_locator = balanced``). At the end,
on Ctrl-C and on failure, every node is stopped, whatever is left of it is killed by node
name, and its directory is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.support.rabbitmq_node import (
    Node,
    launch,
    node_processes,
    rabbitmq_missing,
    shutdown,
    stop,
)

NODE_PREFIX = "bcsynccluster"


def _config(base: Path, port: int, name: str) -> str:
    return (
        f"listeners.tcp.1 = 127.0.0.1:{port}\n"
        "loopback_users.guest = true\n"
        # Leaders spread over the nodes, not all on the node the declaring client used.
        "queue_leader_locator = balanced\n"
        "cluster_partition_handling = pause_minority\n"
        "log.console = false\n"
        "log.file.level = warning\n"
    )


class Cluster:
    """Three clustered nodes: addresses, the leader of a queue, stopping and starting one."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    @property
    def amqp_url(self) -> str:
        """``BC_SYNC_AMQP_URL`` for the workers: every node's address, comma-separated."""
        return ",".join(n.url() for n in self.nodes)

    def running(self) -> list[Node]:
        return [n for n in self.nodes if not n.exited()]

    def members(self) -> list[str]:
        """Nodes the cluster reports as running, asked of any running node."""
        for node in self.running():
            done = node.ctl("cluster_status", "--formatter", "json", timeout=30)
            if done.returncode == 0:
                return list(json.loads(done.stdout).get("running_nodes", []))
        return []

    def leader(self, queue: str) -> Node | None:
        """The node leading quorum queue ``queue`` now (None while it elects one)."""
        for node in self.running():
            done = node.ctl("list_queues", "name", "leader", "--formatter", "json", timeout=30)
            if done.returncode != 0:
                continue
            for row in json.loads(done.stdout or "[]"):
                if row.get("name") == queue:
                    return next((n for n in self.nodes if n.name == row.get("leader")), None)
            return None
        return None

    def leaders(self) -> dict[str, int]:
        """How many queues each node leads (the spread of the topology)."""
        out = {n.name: 0 for n in self.nodes}
        for node in self.running():
            done = node.ctl("list_queues", "name", "leader", "--formatter", "json", timeout=30)
            if done.returncode == 0:
                for row in json.loads(done.stdout or "[]"):
                    if row.get("leader") in out:
                        out[row["leader"]] += 1
                return out
        return out

    def stop_node(self, node: Node) -> None:
        """Stop the whole node (its Erlang VM exits): connections to it drop, its queue
        replicas go offline, the queues it led elect a new leader."""
        shutdown(node)

    def start_node(self, node: Node) -> None:
        """Boot it again from its data directory: it rejoins the cluster by itself."""
        node.start()
        node.wait_ready()


def _join(node: Node, seed: Node) -> None:
    for args in (("stop_app",), ("join_cluster", seed.name), ("start_app",)):
        done = node.ctl(*args, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{node.name}: rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")


def _leftovers(names: list[str]) -> None:
    """A node of an earlier run with the same name (a killed run): end it by pid."""
    for name in names:
        for pid in node_processes(name):
            with suppress(ProcessLookupError):
                os.kill(pid, 9)


@contextmanager
def running_cluster(size: int = 3, log: object = print) -> Iterator[Cluster]:
    """``size`` clustered nodes, stopped and removed at the end whatever happens."""
    names = [f"{NODE_PREFIX}{os.getpid()}n{i}@localhost" for i in range(1, size + 1)]
    _leftovers(names)
    nodes: list[Node] = []
    try:
        for name in names:
            nodes.append(launch(name, _config, prefix="bc-sync-cluster-rmq-"))
        for node in nodes:
            node.wait_ready()
        for node in nodes[1:]:
            _join(node, nodes[0])
        cluster = Cluster(nodes)
        running = cluster.members()
        if sorted(running) != sorted(names):
            raise RuntimeError(f"cluster formed with {running}, expected {names}")
        yield cluster
    finally:
        for node in nodes:
            with suppress(Exception):
                stop(node)
        _leftovers(names)
        for node in nodes:
            shutil.rmtree(node.base, ignore_errors=True)


def main() -> int:
    from tests.chaos.soak import SoakConfig, run_soak
    from tests.emulator.server import start_subprocess

    parser = argparse.ArgumentParser(prog="python -m tests.chaos.cluster", description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--orgs", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--node-stops", type=int, default=2)
    parser.add_argument("--node-down-s", type=float, default=10.0)
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--database-url", default=os.environ.get("CHAOS_DATABASE_URL"))
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    if (reason := rabbitmq_missing()) is not None:
        print(f"chaos-cluster: cannot start RabbitMQ nodes here: {reason}", file=sys.stderr)
        return 2
    began = time.monotonic()
    with running_cluster() as cluster:
        print(
            f"chaos-cluster: 3 nodes up in {time.monotonic() - began:.1f} s: "
            + ", ".join(f"{n.name} :{n.amqp_port}" for n in cluster.nodes),
            flush=True,
        )
        emulator = start_subprocess()
        try:
            cfg = SoakConfig(
                amqp_url=cluster.amqp_url,
                emulator_url=emulator.url,
                ca_file=emulator.ca_file,
                events=args.events,
                orgs=args.orgs,
                workers=args.workers,
                kills=args.kills,
                cuts=0,
                broker_outages=0,
                cluster=cluster,
                node_stops=args.node_stops,
                broker_outage_s=args.node_down_s,
                bc_outage_s=10.0,
                timeout_s=args.timeout_s,
                seed=args.seed,
                database_url=args.database_url,
                work_dir=args.work_dir,
                chaos_every_s=(3.0, 8.0),
                prefetch=32,
                log=functools.partial(print, flush=True),
            )
            report = asyncio.run(run_soak(cfg))
        finally:
            emulator.stop()
    return report.verdict("chaos soak on a 3-node RabbitMQ cluster")


if __name__ == "__main__":
    sys.exit(main())
