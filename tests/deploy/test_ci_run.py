""".ci/run starts the services with bounded waits and says why when one does not come up:
its functions run here against fake rabbitmq-server / rabbitmqctl / pg_lsclusters /
pg_ctlcluster on free ports, so nothing real is started or stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]
CI_RUN = REPO / ".ci" / "run"


def fake(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + script)
    path.chmod(0o755)


def run_function(function: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    full_env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "CI_RABBITMQ_PORT": str(free_port()),
        "CI_POSTGRES_PORT": str(free_port()),
        "CI_RABBITMQ_LOG_DIR": str(tmp_path / "rabbitmq-log"),
        "CI_SERVICE_TIMEOUT": "3",
        **env,
    }
    return subprocess.run(
        [bash, "-c", f'source "{CI_RUN}" && {function}'],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        cwd=tmp_path,
    )


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    (tmp_path / "rabbitmq-log").mkdir()
    return tmp_path / "bin"


def test_a_rabbitmq_that_never_starts_fails_within_the_bound_with_its_log(
    tmp_path: Path, bin_dir: Path
) -> None:
    fake(bin_dir, "rabbitmq-server", "exit 0\n")  # -detached "succeeds", the node never runs
    fake(bin_dir, "rabbitmqctl", "exit 69\n")  # await_startup: node not running
    (tmp_path / "rabbitmq-log" / "rabbit@ci.log").write_text(
        "2026-12-03 [error] Failed to start Ranch listener: eaddrinuse\n"
    )
    started = time.monotonic()
    proc = run_function("start_rabbitmq", tmp_path)
    took = time.monotonic() - started
    assert proc.returncode == 1
    assert "RabbitMQ did not finish starting within 3 s" in proc.stderr
    assert "eaddrinuse" in proc.stderr  # the reason, from the log tail
    assert took < 30


def test_a_failing_rabbitmq_start_command_is_not_swallowed(tmp_path: Path, bin_dir: Path) -> None:
    fake(
        bin_dir,
        "rabbitmq-server",
        "echo 'ERROR: node with name rabbit already running' >&2\nexit 1\n",
    )
    fake(bin_dir, "rabbitmqctl", "exit 0\n")
    proc = run_function("start_rabbitmq", tmp_path)
    assert proc.returncode == 1
    assert "rabbitmq-server -detached failed" in proc.stderr


def test_with_two_postgresql_versions_the_cluster_on_the_port_is_started(
    tmp_path: Path, bin_dir: Path
) -> None:
    port = free_port()
    log = tmp_path / "pg.log"
    log.write_text("FATAL:  could not create lock file\n")
    # Two versions, as `ls /etc/postgresql` would show: 15 on another port, 16 on ours.
    fake(
        bin_dir,
        "pg_lsclusters",
        f'echo "15 main 5499 down postgres /var/lib/postgresql/15/main /tmp/pg15.log"\n'
        f'echo "16 main {port} down postgres /var/lib/postgresql/16/main {log}"\n',
    )
    fake(bin_dir, "pg_ctlcluster", f'echo "$@" > "{tmp_path / "started"}"\nexit 0\n')
    proc = run_function("start_postgresql", tmp_path, CI_POSTGRES_PORT=str(port))
    # It started 16/main (the cluster on the port), then reported that nothing listens,
    # with the cluster's log, within the bound.
    assert (tmp_path / "started").read_text().split() == [
        "--skip-systemctl-redirect",
        "16",
        "main",
        "start",
    ]
    assert proc.returncode == 1
    assert f"PostgreSQL 16/main does not listen on 127.0.0.1:{port}" in proc.stderr
    assert "could not create lock file" in proc.stderr


def test_without_a_cluster_on_the_port_the_newest_version_is_started(
    tmp_path: Path, bin_dir: Path
) -> None:
    fake(
        bin_dir,
        "pg_lsclusters",
        'echo "9.6 main 5433 down postgres /d /tmp/a.log"\n'
        'echo "15 main 5434 down postgres /d /tmp/b.log"\n',
    )
    fake(bin_dir, "pg_ctlcluster", f'echo "$@" > "{tmp_path / "started"}"\nexit 3\n')
    proc = run_function("start_postgresql", tmp_path)
    assert (tmp_path / "started").read_text().split()[1:3] == ["15", "main"]
    assert proc.returncode == 1
    assert "PostgreSQL 15/main did not start" in proc.stderr


def test_a_running_service_is_left_alone(tmp_path: Path, bin_dir: Path) -> None:
    """A port that answers means the service runs: no start command is called."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        fake(bin_dir, "rabbitmq-server", f'touch "{tmp_path / "called"}"\nexit 1\n')
        proc = run_function("start_rabbitmq", tmp_path, CI_RABBITMQ_PORT=str(port))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "called").exists()
