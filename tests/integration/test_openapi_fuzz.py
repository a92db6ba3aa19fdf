"""Property-based run of schemathesis against a live ``bc-sync run --roles api`` (a real
process: real broker, SQLite, msal, the BC emulator over HTTPS), driven by the checked-in
``schemas/openapi.json``.

For every operation and every generated request (valid and invalid inputs): no 5xx, the status
is a documented one, the body and headers match the document; and the same request without a
token, or with a wrong one, is refused with 401 (except the public document and the probes).
The world has data in it first (a saved integration for the document's example organization,
dead letters made by a real consumer), so the answers' schemas are checked on real rows, not
only on empty lists and 404s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.emulator.server import EmulatorProcess
from tests.support.amqp import drop_topology
from tests.support.db import KEY
from tests.support.dead_letters import Spec, make_dead_letters
from tests.support.factories import dialog
from tests.support.settings import API_TOKEN, make_settings
from tests.support.wait import wait_for_sync
from worker.api import contract, openapi
from worker.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOC = json.loads((contract.SCHEMA_DIR / contract.FILE_NAME).read_text(encoding="utf-8"))
schema = schemathesis.openapi.from_dict(DOC)
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
# Generated requests per operation: with ten operations the run stays well under a minute
# (each save or options call is a real token request and BC reads against the emulator).
EXAMPLES = int(os.environ.get("BC_SYNC_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
PUBLIC = {
    (method.upper(), path)
    for path, item in DOC["paths"].items()
    for method, op in item.items()
    if op.get("security") == []
}
EXAMPLE_ORG = openapi.ORG.example


@dataclass
class LiveApi:
    url: str
    settings: Settings
    log: Path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _env(settings: Settings, emulator: EmulatorProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_SYNC_", "OTEL_"))}
    env.update(
        BC_SYNC_AMQP_URL=settings.amqp_url.get_secret_value(),
        BC_SYNC_QUEUE_PREFIX=settings.queue_prefix,
        BC_SYNC_EXCHANGE=settings.exchange,
        BC_SYNC_DATABASE_URL=settings.database_url.get_secret_value(),
        BC_SYNC_BC_API_URL=emulator.url,
        BC_SYNC_AUTHORITY_URL=emulator.url,
        BC_SYNC_CA_FILE=str(emulator.ca_file),
        BC_SYNC_CLIENT_ID=str(settings.client_id),
        BC_SYNC_SECRET_KEY=KEY,
        BC_SYNC_API_TOKEN=f"backoffice={API_TOKEN}",
        BC_SYNC_HTTP_HOST="127.0.0.1",
        BC_SYNC_HTTP_PORT=str(settings.http_port),
        BC_SYNC_OUTBOX_DIR=str(settings.outbox_dir),
        BC_SYNC_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"bc-sync run exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            return requests.get(url + "/readyz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    if not wait_for_sync(ready, 60, 0.2, fail=False):
        raise AssertionError(f"the api role did not get ready:\n{log.read_text()[-3000:]}")


async def _seed_dead_letters(settings: Settings) -> None:
    await make_dead_letters(
        settings,
        [Spec("20001", org=EXAMPLE_ORG), Spec("20002", org=EXAMPLE_ORG, transient=True)],
    )


@pytest.fixture(scope="module")
def live_api(
    amqp_url: str, bc_emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    tmp = tmp_path_factory.mktemp("openapi-fuzz")
    from tests.emulator.seed import DEMO, demo_seed

    async def reset_emulator() -> None:
        control = bc_emulator.new_control()
        try:
            await control.reset()
            await control.seed(demo_seed())
        finally:
            await control.close()

    asyncio.run(reset_emulator())
    settings = make_settings(
        tmp,
        amqp_url=amqp_url,
        http_port=_free_port(),
        client_id=DEMO.client_id,
        retry_delays=(0.2,),
    )
    asyncio.run(_seed_dead_letters(settings))
    log = tmp / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run", "--roles", "api"],
            env=_env(settings, bc_emulator),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{settings.http_port}"
    try:
        _wait_ready(url, proc, log)
        path = f"{url}/v1/organizations/{EXAMPLE_ORG}/integrations/business-central"
        saved = requests.put(path, json=dialog(), headers=AUTH, timeout=30)
        assert saved.status_code == 201, saved.text
        listed = requests.get(url + "/v1/dead-letters", headers=AUTH, timeout=30).json()
        assert listed["count"] == 2, listed
        yield LiveApi(url, settings, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        asyncio.run(drop_topology(settings))
    assert proc.returncode == 0, log.read_text()[-3000:]
    text = log.read_text()
    for secret in (DEMO.client_secret, API_TOKEN, KEY):
        assert secret not in text


def _refused_without_token(case: Any, live_api: LiveApi) -> None:
    """The same request without the token, and with a wrong one: 401 and nothing else."""
    for auth in (None, "Bearer not-the-token", f"Basic {API_TOKEN}"):
        kwargs = case.as_transport_kwargs(base_url=live_api.url)
        headers = {k: v for k, v in (kwargs.pop("headers", None) or {}).items()}
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        if auth is not None:
            headers["Authorization"] = auth
        response = requests.request(**kwargs, headers=headers, timeout=30)
        assert response.status_code == 401, (case.method, case.formatted_path, auth, response.text)
        assert response.json() == {"error": "unauthorized"}
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="bc-sync"'


@schema.parametrize()
@hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_every_operation_answers_as_documented(case: Any, live_api: LiveApi) -> None:
    case.call_and_validate(base_url=live_api.url, headers=AUTH, checks=CHECKS, timeout=30)
    if (case.operation.method.upper(), case.operation.path) not in PUBLIC:
        _refused_without_token(case, live_api)


def test_the_live_api_serves_the_checked_in_document(live_api: LiveApi) -> None:
    served = requests.get(live_api.url + openapi.DOCUMENT_PATH, timeout=10)
    assert served.status_code == 200
    assert served.json() == DOC
