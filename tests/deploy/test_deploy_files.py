"""The deploy files do what their comments promise: a slim non-root image, a compose stack that
waits for healthy dependencies, hardened pods that drain before SIGKILL, autoscaling on the
exports queue, broker policies that agree with the queues the worker declares."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from pydantic import SecretStr

from tests.support.deploy import (
    DEPLOY,
    K8S,
    K8S_EXAMPLE,
    K8S_MONITORING,
    OBS,
    REPO,
    compose,
    compose_workers,
    configmap,
    container,
    defaults,
    deployments,
    dockerfile_stages,
    instruction,
    k8s_objects,
    load_yaml,
    read_env_file,
    secret,
)
from worker.api.app import ApiContext, ApiServer, create_app
from worker.bc.http import ssl_context
from worker.config.settings import Settings
from worker.messaging.topology import DELIVERY_LIMIT, Topology

# Seconds the consumer may still need after its grace period: it waits up to 5 s for the
# cancelled handlers to requeue (worker/messaging/consumer.py), then closes connections.
REQUEUE_AND_CLOSE_S = 10


# --- Dockerfile ----------------------------------------------------------------------------


def test_image_is_multi_stage_slim_and_non_root() -> None:
    stages = dockerfile_stages()
    assert list(stages) == ["builder", "base", "emulator", "runtime"]
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    version = re.search(r"^ARG PYTHON_VERSION=(\S+)$", text, re.M)
    assert version is not None and version.group(1) == "3.11"
    assert instruction(stages["builder"], "FROM") == ["python:${PYTHON_VERSION}-slim"]
    assert instruction(stages["base"], "FROM") == ["python:${PYTHON_VERSION}-slim"]
    assert instruction(stages["runtime"], "FROM") == ["base"]
    assert instruction(stages["emulator"], "FROM") == ["base"]
    # The builder's toolchain and sources stay behind: only the venv is copied.
    assert instruction(stages["base"], "COPY") == ["--from=builder /opt/venv /opt/venv"]
    (user,) = instruction(stages["base"], "USER")
    uid = re.search(r"^ARG UID=(\d+)$", text, re.M)
    assert uid is not None and int(uid.group(1)) >= 10000
    assert user == "${UID}:${UID}"
    assert not instruction(stages["runtime"], "USER"), "the runtime must not switch users"
    # The worker image carries no test code; only the demo emulator stage does.
    assert not [c for c in instruction(stages["runtime"], "COPY") if "tests" in c]
    assert instruction(stages["emulator"], "COPY") == ["tests /app/tests"]


def test_image_healthcheck_uses_python_not_curl() -> None:
    (check,) = instruction(dockerfile_stages()["runtime"], "HEALTHCHECK")
    assert "curl" not in check and "wget" not in check
    cmd = json.loads(check[check.index("CMD") + 3 :].strip())
    assert cmd[:2] == ["python", "-c"]
    assert "urllib.request.urlopen" in cmd[2] and "/healthz" in cmd[2]
    compile(cmd[2], "<healthcheck>", "exec")


def _healthcheck_code() -> str:
    (check,) = instruction(dockerfile_stages()["runtime"], "HEALTHCHECK")
    return str(json.loads(check[check.index("CMD") + 3 :].strip())[2])


async def _exit_code(code: str, port: int) -> int:
    env = {**os.environ, "BC_SYNC_HTTP_PORT": str(port)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(proc.wait(), 30)


async def test_healthchecks_and_probes_reach_the_api_without_a_token() -> None:
    """The image's HEALTHCHECK and compose's healthcheck succeed against the real API server
    and fail once it is gone; the probe paths answer without the bearer token."""
    settings = Settings(_env_file=None, api_token=SecretStr("a-token-the-probes-do-not-have"))
    server = ApiServer(create_app(ApiContext(settings=settings)), "127.0.0.1", 0)
    await server.start()
    port = server.port
    checks = [_healthcheck_code()]
    if importlib.util.find_spec("yaml") is not None:  # compose's check needs the YAML parsed
        compose_check = compose_workers()["bc-sync-api"]["healthcheck"]["test"][3]
        checks.append(compose_check.replace(":8080/", f":{port}/"))
    try:
        for code in checks:
            assert await _exit_code(code, port) == 0, code
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz", "/metrics"):
                async with http.get(f"http://127.0.0.1:{port}{path}") as resp:
                    assert resp.status == 200, path
    finally:
        await server.stop()
    for code in checks:
        assert await _exit_code(code, port) != 0, code


def test_image_entrypoint_is_the_console_script() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    (entry,) = instruction(dockerfile_stages()["runtime"], "ENTRYPOINT")
    assert json.loads(entry) == ["bc-sync"]
    assert pyproject["project"]["scripts"]["bc-sync"] == "worker.cli:main"


def test_dockerignore_allows_only_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: nothing is sent unless named"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for stage in dockerfile_stages().values():
        for args in instruction(stage, "COPY"):
            if not args.startswith("--from"):
                copied |= {p.rstrip("/") for p in args.split()[:-1]}
    assert copied <= allowed
    for name in allowed:
        assert (REPO / name).exists(), name
    assert {"**/.env", "**/__pycache__"} <= set(lines)


def test_builder_stage_files_are_enough_to_build_the_package(tmp_path: Path) -> None:
    """What the builder COPYs (pyproject.toml, README.md, worker/) is a complete project: the
    metadata builds, with the readme, every worker module and the `bc-sync` console script.
    (setuptools' egg_info, so no wheel package and no download is needed here.)"""
    context = tmp_path / "context"
    context.mkdir()
    for args in instruction(dockerfile_stages()["builder"], "COPY"):
        *sources, _dest = args.split()
        for src in sources:
            path = REPO / src
            if path.is_dir():
                shutil.copytree(path, context / src, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(path, context / src)
    out = tmp_path / "meta"
    out.mkdir()
    setup = "from setuptools import setup; setup()"
    proc = subprocess.run(
        [sys.executable, "-c", setup, "egg_info", "--egg-base", str(out)],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (info,) = out.glob("*.egg-info")
    assert "bc-sync = worker.cli:main" in (info / "entry_points.txt").read_text()
    packaged = set((info / "SOURCES.txt").read_text().split())
    modules = {str(p.relative_to(REPO)) for p in (REPO / "worker").rglob("*.py")}
    assert modules <= packaged, sorted(modules - packaged)
    assert "Moment" in (info / "PKG-INFO").read_text()  # the readme made it in


# --- docker compose ------------------------------------------------------------------------


def test_compose_shares_one_environment_anchor_between_roles() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    assert "x-bc-sync-env: &bc-sync-env" in text
    workers = compose_workers()
    envs = [w["environment"] for w in workers.values()]
    assert all(env == envs[0] for env in envs)
    images = {(w["image"], json.dumps(w["build"], sort_keys=True)) for w in workers.values()}
    assert len(images) == 1, "one image for every role"
    (build,) = {json.dumps(w["build"]) for w in workers.values()}
    build_cfg = json.loads(build)
    assert (DEPLOY / build_cfg["context"] / build_cfg["dockerfile"]).resolve() == (
        DEPLOY / "Dockerfile"
    )
    assert build_cfg["target"] in dockerfile_stages()


def test_compose_services_wait_for_healthy_dependencies() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if name == "demo-tls":  # one-shot job
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dep, cond in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert cond["condition"] in {"service_healthy", "service_completed_successfully"}
    for name, worker in compose_workers().items():
        assert {"rabbitmq", "postgres"} <= set(worker["depends_on"]), name
        assert worker["depends_on"]["bc-emulator"]["required"] is False, name
    assert services["bc-sync-notify"]["depends_on"]["mailpit"]["condition"] == "service_healthy"
    assert services["bc-sync-consume"]["deploy"]["replicas"] == 2
    for name in ("bc-sync-poll", "bc-sync-notify", "bc-sync-api"):
        assert services[name].get("deploy", {}).get("replicas", 1) == 1, name


def test_compose_urls_point_at_the_compose_services() -> None:
    services = compose()["services"]
    env = compose_workers()["bc-sync-api"]["environment"]
    amqp = urlsplit(env["BC_SYNC_AMQP_URL"])
    assert amqp.hostname in services and amqp.port == 5672
    users = json.loads((DEPLOY / "rabbitmq" / "compose-users.json").read_text())
    assert _rabbit_password_ok(users, amqp.username or "", amqp.password or "")

    db = urlsplit(env["BC_SYNC_DATABASE_URL"])
    pg = services["postgres"]["environment"]
    assert db.hostname in services and db.port == 5432
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    smtp = urlsplit(env["BC_SYNC_SMTP_URL"])
    assert smtp.scheme == "smtp" and smtp.hostname == "mailpit" and smtp.port == 1025
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")


def test_compose_mounts_exist_and_rabbitmq_loads_the_definitions() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
    mounts = dict(v.split(":")[:2] for v in services["rabbitmq"]["volumes"])
    conf = _rabbit_conf(DEPLOY / "rabbitmq" / "rabbitmq.conf")
    folder = conf["load_definitions"]
    loaded = sorted((t, s) for s, t in mounts.items() if t.startswith(folder + "/"))
    assert [s for _, s in loaded] == [
        "./rabbitmq/compose-users.json",
        "./rabbitmq/definitions.json",
    ]
    # Users first: the queues need the vhost, which only the users file declares.
    assert [Path(t).name for t, _ in loaded] == ["00-users.json", "10-topology.json"]
    assert mounts["./rabbitmq/rabbitmq.conf"].startswith("/etc/rabbitmq/conf.d/")
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13-management")
    assert services["postgres"]["image"] == "postgres:16"


def test_compose_stop_grace_covers_the_drain() -> None:
    grace = float(compose_workers()["bc-sync-api"]["environment"]["BC_SYNC_SHUTDOWN_GRACE_S"])
    for name, worker in compose_workers().items():
        stop = worker["stop_grace_period"]
        assert stop.endswith("s")
        assert float(stop[:-1]) >= grace + REQUEUE_AND_CLOSE_S, name
        assert worker["read_only"] is True and worker["cap_drop"] == ["ALL"], name


def _emulator_args() -> dict[str, str]:
    emulator = compose()["services"]["bc-emulator"]
    command = emulator["entrypoint"] + emulator["command"]
    assert command[:3] == ["python", "-m", "tests.emulator"]
    return dict(zip(command[3::2], command[4::2], strict=True))


def test_demo_profile_runs_the_emulator_from_the_emulator_stage() -> None:
    services = compose()["services"]
    emulator = services["bc-emulator"]
    assert emulator["profiles"] == ["demo"] and services["demo-tls"]["profiles"] == ["demo"]
    assert emulator["build"]["target"] == "emulator" in dockerfile_stages()
    args = _emulator_args()
    assert args["--port"] == "8443" and args["--seed"] == "demo"
    # Listening under the service name also puts that name into the emulator's certificate.
    assert args["--host"] == "bc-emulator" in services
    # Every option given exists in the emulator's command line.
    usage = subprocess.run(
        [sys.executable, "-m", "tests.emulator", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for option in args:
        assert re.search(rf"{option}\b", usage), option

    demo = read_env_file(DEPLOY / "demo.env")
    assert demo["COMPOSE_PROFILES"] == "demo"
    for key in ("BC_SYNC_BC_API_URL", "BC_SYNC_AUTHORITY_URL"):
        url = urlsplit(demo[key])
        assert (url.scheme, url.hostname, url.port) == ("https", args["--host"], 8443)
    # The emulator writes ca.pem into --cert-dir, a volume every worker mounts read-only.
    folder = args["--cert-dir"]
    assert f"demo-tls:{folder}" in emulator["volumes"]
    assert demo["BC_SYNC_CA_FILE"] == f"{folder}/ca.pem"
    for worker in compose_workers().values():
        assert f"demo-tls:{folder}:ro" in worker["volumes"]
    # demo-tls hands the fresh (root-owned) volume to the image's non-root user.
    uid = re.search(r"^ARG UID=(\d+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert uid is not None
    prepare = " ".join(services["demo-tls"]["entrypoint"])
    assert f"os.chown('{folder}', {uid.group(1)}, {uid.group(1)})" in prepare
    assert f"demo-tls:{folder}" in services["demo-tls"]["volumes"]


async def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, host: str) -> bytes:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=host
        )
        data = await reader.read()
        writer.close()
        return data
    finally:
        server.close()
        await server.wait_closed()


async def test_emulator_certificate_is_trusted_by_the_worker_under_the_compose_name(
    tmp_path: Path,
) -> None:
    """The emulator's certificate for `--host bc-emulator` (made the way EmulatorServer.start
    makes it), given as BC_SYNC_CA_FILE, lets the worker's own TLS context verify
    https://bc-emulator:8443; other names, or no CA file, fail the handshake."""
    from tests.emulator import tls

    host = _emulator_args()["--host"]
    files = tls.generate(tmp_path, (host,))
    server = tls.server_context(files)
    assert await _handshake(server, ssl_context(files.cert), host) == b"ok"
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server, ssl_context(files.cert), "api.businesscentral.dynamics.com")
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server, ssl_context(None), host)


# --- Kubernetes ----------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert [i["name"] for i in kustomization["images"]] == ["bc-sync"]
    # The base applies no Secret: `kubectl apply -k` never overwrites the real ones.
    assert not [o for o in k8s_objects(K8S) if o["kind"] == "Secret"]
    for directory in (K8S_MONITORING, K8S_EXAMPLE):
        listed = set(load_yaml(directory / "kustomization.yaml")["resources"])
        on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert on_disk <= listed, directory
    for dep in deployments().values():
        assert container(dep)["image"] == "bc-sync"


def test_pods_are_hardened() -> None:
    uid = re.search(r"^ARG UID=(\d+)$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert uid is not None
    names = {(o["kind"], o["metadata"]["name"]) for o in k8s_objects()}
    for name, dep in deployments().items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == int(uid.group(1)), name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        assert ("ServiceAccount", pod["serviceAccountName"]) in names
        c = container(dep)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        # Read-only root: /tmp is the writable emptyDir (BC_SYNC_OUTBOX_DIR lives there).
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
        assert "memory" in c["resources"]["limits"], name
        for source in c["envFrom"]:
            ref = (
                ("ConfigMap", source["configMapRef"]["name"])
                if "configMapRef" in source
                else ("Secret", source["secretRef"]["name"])
            )
            assert ref in names, f"{name} reads missing {ref}"
    namespace = next(o for o in k8s_objects() if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert "/tmp/outbox" in (DEPLOY / "Dockerfile").read_text()


def test_termination_grace_covers_the_drain() -> None:
    grace = float(configmap().get("BC_SYNC_SHUTDOWN_GRACE_S", defaults().shutdown_grace_s))
    for name, dep in deployments().items():
        pod = dep["spec"]["template"]["spec"]
        pre_stop = container(dep).get("lifecycle", {}).get("preStop", {})
        pause = float(pre_stop["exec"]["command"][1]) if pre_stop else 0.0
        assert pod["terminationGracePeriodSeconds"] >= grace + REQUEUE_AND_CLOSE_S + pause, name


def test_replicas_per_role() -> None:
    deps = deployments()
    assert deps["bc-sync-poll"]["spec"]["replicas"] == 1
    assert deps["bc-sync-notify"]["spec"]["replicas"] == 1
    assert deps["bc-sync-api"]["spec"]["replicas"] >= 2
    # KEDA owns the consume replica count; a replicas field would fight it on every apply.
    assert "replicas" not in deps["bc-sync-consume"]["spec"]
    scaled = next(o for o in k8s_objects() if o["kind"] == "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "bc-sync-consume"
    assert 2 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_selectors_match_their_pods() -> None:
    deps = deployments()
    for name, dep in deps.items():
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items(), name

    def pods_matching(selector: dict[str, str]) -> set[str]:
        return {
            n
            for n, d in deps.items()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        }

    pdbs = {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == "PodDisruptionBudget"}
    assert pdbs, "a PodDisruptionBudget"
    for name, pdb in pdbs.items():
        assert pods_matching(pdb["spec"]["selector"]["matchLabels"]) == {name}
        assert pdb["spec"]["maxUnavailable"] == 1
    service = next(o for o in k8s_objects() if o["kind"] == "Service")
    assert pods_matching(service["spec"]["selector"]) == {"bc-sync-api"}
    port_names = {p["name"] for p in container(deps["bc-sync-api"])["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_keda_authenticates_with_the_worker_secret() -> None:
    objs = k8s_objects()
    scaled = next(o for o in objs if o["kind"] == "ScaledObject")
    auth_name = scaled["spec"]["triggers"][0]["authenticationRef"]["name"]
    auth = next(o for o in objs if o["kind"] == "TriggerAuthentication")
    assert auth["metadata"]["name"] == auth_name
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert set(refs) == {"host", "tls", "ca"}
    for ref in refs.values():
        assert ref["key"] in secret(ref["name"])["stringData"], ref
    assert refs["host"] == {
        "parameter": "host",
        "name": "bc-sync-secrets",
        "key": "BC_SYNC_AMQP_URL",
    }
    # KEDA and the workers trust the same CA: the one the pods mount as BC_SYNC_AMQP_CA_FILE.
    assert secret("bc-sync-amqp-ca")["stringData"]["tls"] == "enable"
    ca_file = Path(configmap()["BC_SYNC_AMQP_CA_FILE"])
    for name, dep in deployments().items():
        mount = next(m for m in container(dep)["volumeMounts"] if m["name"] == "amqp-ca")
        volume = next(
            v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "amqp-ca"
        )
        (item,) = volume["secret"]["items"]
        assert volume["secret"]["secretName"] == refs["ca"]["name"], name
        assert item["key"] == refs["ca"]["key"], name
        assert Path(mount["mountPath"]) / item["path"] == ca_file, name
    # When KEDA cannot read the queue, it holds a known consumer count.
    scaled_spec = scaled["spec"]
    fallback = scaled_spec["fallback"]
    assert fallback["failureThreshold"] >= 1
    assert scaled_spec["minReplicaCount"] <= fallback["replicas"] <= scaled_spec["maxReplicaCount"]


def test_secret_example_holds_placeholders_only() -> None:
    example = secret()
    data = example["stringData"]
    assert "data" not in example
    assert {
        "BC_SYNC_SECRET_KEY",
        "BC_SYNC_API_TOKEN",
        "BC_SYNC_AMQP_URL",
        "BC_SYNC_DATABASE_URL",
        "BC_SYNC_SMTP_URL",
    } <= set(data)
    for key, value in data.items():
        assert "REPLACE_ME" in value, f"{key} looks like a real value"
    assert data["BC_SYNC_DATABASE_URL"].startswith("postgresql+asyncpg://")
    # Secrets live in the Secret only, never in the ConfigMap.
    assert not set(configmap()) & set(data)


# --- RabbitMQ ------------------------------------------------------------------------------


def _rabbit_password_ok(definitions: dict[str, Any], user: str, password: str) -> bool:
    """rabbit_password_hashing_sha256: base64(salt[4] + sha256(salt + password))."""
    entry = next(u for u in definitions["users"] if u["name"] == user)
    assert entry["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(entry["password_hash"])
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def _rabbit_conf(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not `key = value`: {line}"
            pairs[key.strip()] = value.strip()
    return pairs


def test_compose_users_file_declares_vhost_users_and_permissions() -> None:
    users = json.loads((DEPLOY / "rabbitmq" / "compose-users.json").read_text())
    vhost = {q["vhost"] for q in Topology.from_settings(defaults()).definitions()["queues"]}
    assert {v["name"] for v in users["vhosts"]} == vhost
    assert _rabbit_password_ok(users, "guest", "guest")  # what `make test` uses
    assert not _rabbit_password_ok(users, "guest", "bc-sync")
    for user in users["users"]:
        assert any(p["user"] == user["name"] and p["vhost"] in vhost for p in users["permissions"])


def test_cluster_policies_cover_every_queue_and_agree_with_the_code() -> None:
    topology = Topology.from_settings(defaults())
    policies = json.loads((DEPLOY / "rabbitmq" / "policies.json").read_text())["policies"]
    for queue in topology.queues:
        matching = [p for p in policies if re.search(p["pattern"], queue.name)]
        assert len(matching) == 1, f"{queue.name}: {[p['name'] for p in matching]}"
        (policy,) = matching
        assert policy["apply-to"] in {"queues", "quorum_queues"}
        definition = policy["definition"]
        assert definition["queue-leader-locator"] == "balanced"
        # A policy's overflow wins over the queue argument, and the worker's at-least-once
        # dead-lettering needs its own reject-publish/DLX arguments: policies leave them alone.
        assert not {"overflow", "dead-letter-exchange", "dead-letter-routing-key"} & set(definition)
        if queue is topology.dead:
            # A limit on the dead-letter queue would drop messages that are browsed often.
            assert "delivery-limit" not in definition
        elif queue is topology.exports:
            assert queue.arguments["x-delivery-limit"] == DELIVERY_LIMIT
            assert definition["delivery-limit"] == DELIVERY_LIMIT
    assert not [p for p in policies if re.search(p["pattern"], "other-app.queue")]


def test_cluster_config_forms_three_nodes_with_three_replicas() -> None:
    conf = _rabbit_conf(DEPLOY / "rabbitmq" / "cluster.conf")
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    nodes = [v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes.")]
    assert len(set(nodes)) == 3
    assert conf["cluster_formation.target_cluster_size_hint"] == "3"
    assert conf["queue_leader_locator"] == "balanced"
    assert conf["cluster_partition_handling"] == "pause_minority"
    # 3.13+ only (3.10 refuses to boot with it): in its own file, added on those versions.
    assert not [k for k in conf if "continuous_membership_reconciliation" in k]
    newer = _rabbit_conf(DEPLOY / "rabbitmq" / "cluster-3.13.conf")
    assert newer["quorum_queue.continuous_membership_reconciliation.target_group_size"] == "3"
    assert newer["quorum_queue.continuous_membership_reconciliation.enabled"] == "true"
    assert "load_definitions" in conf
    advanced = (DEPLOY / "rabbitmq" / "cluster-advanced.config").read_text()
    assert re.search(r"\{quorum_cluster_size,\s*3\}", advanced)
    # Every queue the worker declares is a quorum queue, so the settings above apply to all.
    for queue in Topology.from_settings(defaults()).queues:
        assert queue.arguments["x-queue-type"] == "quorum"


# --- observability -------------------------------------------------------------------------


def test_alerts_cover_what_ops_asked_for() -> None:
    rules = [r for g in load_yaml(OBS / "alerts.yml")["groups"] for r in g["rules"]]
    by_name = {r["alert"]: r for r in rules}
    wanted = {
        "BcSyncDeadLettersGrowing": "bcsync_dead_letters_total",
        "BcSyncPollerLagHigh": "bcsync_poller_lag_seconds",
        "BcSyncNoConsumers": "bcsync_consumers",
        "BcSyncBcThrottled": "bcsync_bc_throttled_total",
        "BcSyncCredentialsRejected": "bcsync_credentials_rejected_total",
        "BcSyncRetriesRecovered": "bcsync_retries_recovered_total",
        "BcSyncWorkerDown": "up",
    }
    for name, metric in wanted.items():
        assert re.search(rf"\b{metric}\b", by_name[name]["expr"]), name
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
    # No rule depends on the scrape job's name (`bc-sync` here, `<ns>/bc-sync` with a
    # PodMonitor): targets are matched on app_kubernetes_io_name, set by both.
    assert not [r["alert"] for r in rules if "job=" in r["expr"]]
    assert all('app_kubernetes_io_name="bc-sync"' in r["expr"] for r in rules if "up{" in r["expr"])


def test_dashboard_shows_what_ops_asked_for() -> None:
    doc = json.loads((OBS / "grafana-dashboard.json").read_text())
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needle in (
        "sum by (outcome) (rate(bcsync_events_handled_total",
        "histogram_quantile(0.5, sum by (le) (rate(bcsync_handler_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(bcsync_handler_seconds_bucket",
        "sum by (le, resource) (rate(bcsync_bc_request_seconds_bucket",
        "sum by (status) (rate(bcsync_bc_request_seconds_count",
        "bcsync_bc_throttled_total",
        "bcsync_bc_retries_total",
        "bcsync_retry_hops_total",
        "bcsync_dead_letter_depth",
        "sum by (code) (rate(bcsync_dead_letters_total",
        "bcsync_consumers",
        "bcsync_poller_lag_seconds",
        "bcsync_notifications_sent_total",
    ):
        assert needle in exprs, needle
    # Every panel queries the data source chosen in the dashboard's variable.
    assert [v["name"] for v in doc["templating"]["list"]] == ["datasource"]
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    # No two panels overlap on the grid.
    cells: set[tuple[int, int]] = set()
    for p in doc["panels"]:
        g = p["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, p["title"]
        assert g["x"] + g["w"] <= 24
        cells |= mine
