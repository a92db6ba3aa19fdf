"""Every name the deploy files use exists in the code: settings, queues, metrics and their
labels, ports, probe paths and roles. A rename in the code fails here, not in production.

YAML files need PyYAML, which is not a declared dependency yet: those tests skip without it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support.deploy import (
    DEPLOY,
    REPO,
    SETTING,
    alert_exprs,
    check_promql,
    compose,
    compose_workers,
    configmap,
    container,
    dashboard_exprs,
    defaults,
    deployments,
    dockerfile_stages,
    exposed_metrics,
    instruction,
    k8s_objects,
    read_env_file,
    secret,
)
from worker.api.app import ApiContext, create_app
from worker.cli import ROLES, build_parser
from worker.config.settings import Settings
from worker.messaging.topology import Topology


def test_exposed_names_follow_prometheus_client_conventions() -> None:
    known = exposed_metrics()
    assert "bcsync_events_handled_total" in known
    assert "bcsync_handler_seconds_bucket" in known
    assert known["bcsync_bc_request_seconds_bucket"] == {"resource", "method", "status", "le"}
    assert "bcsync_dead_letter_depth" in known


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_metric_and_label_in_alerts_and_dashboard_exists(source: str) -> None:
    exprs = alert_exprs() if source == "alerts" else dashboard_exprs()
    assert exprs
    known = exposed_metrics()
    queues = {q.name for q in Topology.from_settings(defaults()).queues}
    problems = {e: p for e in exprs if (p := check_promql(e, known, queues))}
    assert not problems, json.dumps(problems, indent=2)


def test_the_promql_check_catches_wrong_names() -> None:
    """The checker above is only worth something if it rejects what it should."""
    known = exposed_metrics()
    queues = {"bc-sync.exports"}
    assert check_promql("rate(bcsync_events_handled[5m])", known, queues)  # no _total
    assert check_promql('bcsync_consumers{queue="exports"}', known, queues)
    assert check_promql("sum by (org) (rate(bcsync_dead_letters_total[5m]))", known, queues)
    assert check_promql('bcsync_dead_letters_total{reason="x"}', known, queues)
    assert not check_promql(
        'sum by (le) (rate(bcsync_handler_seconds_bucket{type="moment.invoice.created"}[5m]))',
        known,
        queues,
    )


# --- settings ------------------------------------------------------------------------------


def test_every_bc_sync_variable_named_in_deploy_is_a_setting() -> None:
    settings = {"BC_SYNC_" + name.upper() for name in Settings.model_fields}
    unknown: dict[str, set[str]] = {}
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".pyc"):
        names = set(SETTING.findall(path.read_text(encoding="utf-8", errors="replace")))
        if names - settings:
            unknown[str(path.relative_to(REPO))] = names - settings
    assert not unknown, f"not settings of worker/config/settings.py: {unknown}"


def _apply_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], ca: Path) -> Settings:
    for key in [k for k in os.environ if k.startswith("BC_SYNC_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        # The CA file lives in the container; any existing file stands in for it here.
        monkeypatch.setenv(key, str(ca) if key == "BC_SYNC_CA_FILE" else value)
    return Settings(_env_file=None)


def test_kubernetes_configuration_is_valid_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The ConfigMap names the CA file the pods mount from the Secret bc-sync-amqp-ca.
    ca = tmp_path / "ca.crt"
    ca.write_text(secret("bc-sync-amqp-ca")["stringData"]["ca.crt"])
    env = {**configmap(), **secret()["stringData"], "BC_SYNC_AMQP_CA_FILE": str(ca)}
    settings = _apply_env(monkeypatch, env, tmp_path)
    assert settings.amqp_ca_file == ca
    assert settings.http_host == "0.0.0.0"
    assert settings.database_url.get_secret_value().startswith("postgresql+asyncpg://")


def _interpolate(value: str, extra: dict[str, str]) -> str:
    """Compose's ${VAR:-default}: the variable from ``extra`` (an --env-file), else default."""
    return re.sub(
        r"\$\{([A-Z0-9_]+):-([^}]*)\}", lambda m: extra.get(m.group(1), m.group(2)), value
    )


@pytest.mark.parametrize("env_file", [None, "demo.env"])
def test_compose_environment_is_valid_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env_file: str | None
) -> None:
    extra = read_env_file(DEPLOY / env_file) if env_file else {}
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder")
    for name, service in compose_workers().items():
        env = {k: _interpolate(str(v), extra) for k, v in service["environment"].items()}
        assert "${" not in json.dumps(env), f"{name}: an interpolation without a default"
        settings = _apply_env(monkeypatch, env, ca)
        assert settings.http_host == "0.0.0.0", name
        if env_file:
            assert settings.bc_api_url == "https://bc-emulator:8443"
            assert settings.authority_url == "https://bc-emulator:8443"


# --- queues --------------------------------------------------------------------------------


def test_keda_scales_on_the_exports_queue_of_the_code() -> None:
    exports = Topology.from_settings(defaults()).exports.name
    scaled = next(o for o in k8s_objects() if o["kind"] == "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == exports
    assert trigger["metadata"]["mode"] == "QueueLength"


def test_kubernetes_queue_settings_are_the_defaults_the_policies_assume() -> None:
    """Policies and KEDA name bc-sync.* queues; the ConfigMap must not move them."""
    cm = configmap()
    d = defaults()
    assert cm.get("BC_SYNC_QUEUE_PREFIX", d.queue_prefix) == d.queue_prefix
    assert cm.get("BC_SYNC_EXCHANGE", d.exchange) == d.exchange


# --- ports and probe paths -----------------------------------------------------------------


def api_routes() -> set[str]:
    settings = Settings(_env_file=None, api_token=SecretStr("probe-test"))
    app = create_app(ApiContext(settings=settings))
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_probe_and_scrape_paths_are_routes_of_the_api() -> None:
    routes = api_routes()
    for name, dep in deployments().items():
        c = container(dep)
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] in routes, (name, probe)
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/path"] in routes
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for text in (dockerfile, (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")):
        paths = set(re.findall(r"http://127\.0\.0\.1:[^/]+(/[a-z]+)", text))
        assert paths == {"/healthz"}
    assert {"/healthz", "/readyz", "/metrics"} <= routes


def test_ports_agree_with_the_setting() -> None:
    port = defaults().http_port
    assert configmap()["BC_SYNC_HTTP_PORT"] == str(port)
    for name, dep in deployments().items():
        c = container(dep)
        assert [p["containerPort"] for p in c["ports"] if p["name"] == "http"] == [port], name
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port), name
    service = next(o for o in k8s_objects() if o["kind"] == "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]

    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert f"BC_SYNC_HTTP_PORT={port}" in dockerfile
    assert f"EXPOSE {port}" in dockerfile
    assert f"'BC_SYNC_HTTP_PORT', '{port}'" in dockerfile  # HEALTHCHECK's fallback

    for name, service in compose_workers().items():
        assert service["environment"]["BC_SYNC_HTTP_PORT"] == str(port), name
        check = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/healthz" in check, name
    published = compose()["services"]["bc-sync-api"]["ports"]
    assert [p.rsplit(":", 1)[1] for p in published] == [str(port)]


def test_everything_listens_on_all_interfaces_in_a_container() -> None:
    assert defaults().http_host == "127.0.0.1"  # why the deploy files must override it
    assert "BC_SYNC_HTTP_HOST=0.0.0.0" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert configmap()["BC_SYNC_HTTP_HOST"] == "0.0.0.0"
    for service in compose_workers().values():
        assert service["environment"]["BC_SYNC_HTTP_HOST"] == "0.0.0.0"


# --- roles ---------------------------------------------------------------------------------


def _roles_of(args: list[str]) -> list[str]:
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"
    return list(parsed.roles)


def test_each_kubernetes_deployment_runs_one_role_and_all_roles_run() -> None:
    seen = {}
    for name, dep in deployments().items():
        roles = _roles_of(container(dep)["args"])
        assert len(roles) == 1, name
        assert name == f"bc-sync-{roles[0]}"
        assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == roles[0]
        seen[roles[0]] = name
    assert set(seen) == set(ROLES)


def test_each_compose_worker_runs_one_role_and_all_roles_run() -> None:
    seen = {}
    for name, service in compose_workers().items():
        roles = _roles_of(list(service["command"]))
        assert len(roles) == 1, name
        assert name == f"bc-sync-{roles[0]}"
        seen[roles[0]] = name
    assert set(seen) == set(ROLES)


def test_the_image_default_command_runs_every_role() -> None:
    stages = dockerfile_stages()
    runtime = stages["runtime"]
    assert list(stages)[-1] == "runtime", "a plain docker build must produce the worker"
    assert [json.loads(a) for a in instruction(runtime, "ENTRYPOINT")] == [["bc-sync"]]
    (cmd,) = instruction(runtime, "CMD")
    assert _roles_of(json.loads(cmd)) == list(ROLES)
