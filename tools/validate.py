"""`make validate`: every third-party validator of issue 21 over the files they are for.

Each validator prints its name, version and what it checked; a validator that cannot run here
is skipped with one line saying why (never silently). Exit status 1 when any check fails.
Run through `make validate`, which installs the Python validators (the lock) and the Node ones
(tools/validators, `npm ci`) first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "schemas"
DEPLOY = REPO / "deploy"
OBS = DEPLOY / "observability"
NODE_TOOLS = REPO / "tools" / "validators"
BIN = Path(sys.executable).parent


class Skip(Exception):
    """The validator cannot run on this machine; the message says why."""


@dataclass
class Result:
    name: str
    version: str
    checked: str
    status: str  # ok | FAILED | skipped
    seconds: float


def run(
    *args: str | Path, cwd: Path = REPO, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def must(proc: subprocess.CompletedProcess[str], what: str) -> str:
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise AssertionError(f"{what} failed (exit {proc.returncode}):\n{out}")
    return out


def indent(text: str) -> None:
    for line in text.splitlines():
        if line.strip():
            print(f"    {line}")


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise Skip(f"{name} is not installed")
    return found


def rendered(root: Path) -> list[dict[str, Any]]:
    out = must(run(tool("kubectl"), "kustomize", root), f"kubectl kustomize {root}")
    return [o for o in yaml.safe_load_all(out) if o]


# --- the validators ------------------------------------------------------------------------


def validate_pyproject() -> tuple[str, str]:
    version = metadata.version("validate-pyproject")
    indent(must(run(tool("validate-pyproject"), "pyproject.toml"), "validate-pyproject"))
    return version, "pyproject.toml against the PEP 517/621 and setuptools schemas"


def uv_lock() -> tuple[str, str]:
    version = must(run(tool("uv"), "--version"), "uv --version").split()[1]
    indent(must(run("make", "-s", "lock-check"), "make lock-check"))
    return version, (
        "requirements-dev.lock and requirements.lock are what `make lock` (uv pip compile) "
        "makes of pyproject.toml"
    )


def json_schema() -> tuple[str, str]:
    from jsonschema import Draft202012Validator

    version = metadata.version("jsonschema")
    # The event schemas: not the AsyncAPI document, nor the admin API's OpenAPI document
    # (checked by openapi-spec-validator in tests/unit/test_openapi.py).
    not_events = {"asyncapi.json", "openapi.json"}
    types = [p.stem for p in sorted(SCHEMAS.glob("*.json")) if p.name not in not_events]
    for t in types:
        schema = json.loads((SCHEMAS / f"{t}.json").read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        example_path = SCHEMAS / "examples" / f"{t}.json"
        if not example_path.is_file():
            raise AssertionError(f"no example for {t}: add {example_path.relative_to(REPO)}")
        example = json.loads(example_path.read_text(encoding="utf-8"))
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(example)]
        if errors:
            raise AssertionError(f"schemas/examples/{t}.json: " + "; ".join(errors))
    print(f"    {len(types)} event schemas are valid draft 2020-12; each example passes its schema")
    return version, "schemas/*.json (metaschema) and schemas/examples/*.json against them"


def cloudevents_sdk() -> tuple[str, str]:
    from cloudevents.core.formats.json import JSONFormat

    version = metadata.version("cloudevents")
    examples = sorted((SCHEMAS / "examples").glob("*.json"))
    for path in examples:
        event = JSONFormat().read(None, path.read_bytes())
        if event.get_type() != path.stem:
            raise AssertionError(f"{path.name}: the SDK read type {event.get_type()!r}")
    print(f"    {len(examples)} examples read as CloudEvents {event.get_specversion()}")
    return version, "schemas/examples/*.json parsed by the CloudEvents SDK (structured JSON)"


def node_versions() -> dict[str, str]:
    if shutil.which("node") is None:
        raise Skip("node is not installed")
    if not (NODE_TOOLS / "node_modules").is_dir():
        raise Skip("tools/validators/node_modules is missing (make validators: npm ci)")
    out = must(run("node", "check.mjs", "versions", cwd=NODE_TOOLS), "node check.mjs versions")
    versions: dict[str, str] = json.loads(out)
    return versions


def asyncapi_parser() -> tuple[str, str]:
    version = node_versions()["@asyncapi/parser"]
    indent(
        must(
            run("node", "check.mjs", "asyncapi", SCHEMAS / "asyncapi.json", cwd=NODE_TOOLS),
            "AsyncAPI parser",
        )
    )
    return version, "schemas/asyncapi.json with its $refs to the event schemas"


def crd_schemas() -> tuple[str, str]:
    versions = node_versions()
    objects = rendered(DEPLOY / "kubernetes-example")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(objects, handle)
    try:
        indent(must(run("node", "check.mjs", "crds", handle.name, cwd=NODE_TOOLS), "CRD schemas"))
    finally:
        os.unlink(handle.name)
    keda = versions["@kubernetes-models/keda"]
    operator = versions["@kubernetes-models/prometheus-operator"]
    return (
        f"@kubernetes-models/keda {keda}, @kubernetes-models/prometheus-operator {operator}",
        "ScaledObject, TriggerAuthentication, PodMonitor, PrometheusRule against the CRDs",
    )


def kubectl_kustomize() -> tuple[str, str]:
    out = must(run(tool("kubectl"), "version", "--client"), "kubectl version")
    kustomize = next(
        (line.split(":")[1].strip() for line in out.splitlines() if "Kustomize" in line), "?"
    )
    for root in ("kubernetes", "kubernetes-example"):
        kinds = sorted(o["kind"] for o in rendered(DEPLOY / root))
        print(f"    deploy/{root}: {len(kinds)} objects")
    return f"kustomize {kustomize}", "deploy/kubernetes (base) and deploy/kubernetes-example build"


def kubernetes_validate() -> tuple[str, str]:
    version = metadata.version("kubernetes-validate")
    for root in ("kubernetes", "kubernetes-example"):
        objects = [
            o
            for o in rendered(DEPLOY / root)
            if not o["apiVersion"].startswith(("keda.sh/", "monitoring.coreos.com/"))
        ]
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            yaml.safe_dump_all(objects, handle)
        try:
            out = must(
                run(tool("kubernetes-validate"), "--strict", "--quiet", handle.name),
                f"kubernetes-validate deploy/{root}",
            )
        finally:
            os.unlink(handle.name)
        if out:
            indent(out)
        print(f"    deploy/{root}: {len(objects)} core objects valid (strict)")
    return version, (
        "the rendered manifests' core objects against the Kubernetes schemas, strict (the CRD "
        "objects are the CRD validator's)"
    )


def install_promtool() -> str:
    """promtool comes with Debian's prometheus package; installed here when missing."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Skip("promtool is not installed and apt-get cannot install it here (not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
    print("    installing promtool: apt-get install prometheus")
    proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:  # stale or missing package lists: refresh once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        proc = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    found = shutil.which("promtool")
    if found is None:
        raise Skip(f"promtool could not be installed: {proc.stderr.strip()[-300:]}")
    return found


def promtool() -> tuple[str, str]:
    binary = install_promtool()
    version = must(run(binary, "--version"), "promtool --version").splitlines()[0]
    indent(must(run(binary, "check", "rules", "alerts.yml", cwd=OBS), "promtool check rules"))
    indent(must(run(binary, "test", "rules", "alerts.test.yml", cwd=OBS), "promtool test rules"))
    with tempfile.TemporaryDirectory() as tmp:
        (rule,) = [
            d
            for d in yaml.safe_load_all(
                (DEPLOY / "kubernetes" / "monitoring" / "prometheusrule.yaml").read_text()
            )
            if d
        ]
        Path(tmp, "operator-rules.yml").write_text(
            yaml.safe_dump({"groups": rule["spec"]["groups"]})
        )
        indent(must(run(binary, "check", "rules", "operator-rules.yml", cwd=Path(tmp)), "rules"))
        # Debian's promtool has no Kubernetes discovery: a static target stands in for it.
        config: dict[str, Any] = yaml.safe_load((OBS / "prometheus.yml").read_text())
        for job in config["scrape_configs"]:
            job.pop("kubernetes_sd_configs")
            job["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
        Path(tmp, "prometheus.yml").write_text(yaml.safe_dump(config))
        shutil.copy(OBS / "alerts.yml", Path(tmp, "alerts.yml"))
        indent(must(run(binary, "check", "config", "prometheus.yml", cwd=Path(tmp)), "config"))
    return version.replace("promtool, version ", "").split()[0], (
        "alerts.yml (check rules), alerts.test.yml (test rules, under both job labels), the "
        "PrometheusRule's groups, prometheus.yml (check config)"
    )


def hadolint() -> tuple[str, str]:
    binary = tool("hadolint")
    version = must(run(binary, "--version"), "hadolint --version").split()[-1]
    out = must(run(binary, DEPLOY / "Dockerfile"), "hadolint deploy/Dockerfile")
    print(f"    deploy/Dockerfile: {out or 'no findings'}")
    return version, "deploy/Dockerfile"


def docker_compose() -> tuple[str, str]:
    docker = shutil.which("docker")
    if docker is None:
        raise Skip("no docker CLI on this machine")
    proc = run(docker, "compose", "version")
    if proc.returncode != 0:
        standalone = shutil.which("docker-compose")
        if standalone is None:
            reason = (proc.stderr or proc.stdout).strip().splitlines()[0]
            raise Skip(f"the docker CLI here has no compose plugin (`docker compose`: {reason})")
        command = [standalone]
        version = must(run(standalone, "version", "--short"), "docker-compose version")
    else:
        command = [docker, "compose"]
        version = proc.stdout.strip().split()[-1]
    compose = DEPLOY / "docker-compose.yml"
    must(run(*command, "-f", compose, "config", "--quiet"), "docker compose config")
    must(
        run(*command, "-f", compose, "--env-file", DEPLOY / "demo.env", "config", "--quiet"),
        "docker compose config (demo.env)",
    )
    return version, "deploy/docker-compose.yml, plain and with demo.env"


VALIDATORS: list[tuple[str, Callable[[], tuple[str, str]]]] = [
    ("validate-pyproject", validate_pyproject),
    ("uv (lock check)", uv_lock),
    ("jsonschema", json_schema),
    ("CloudEvents SDK (cloudevents)", cloudevents_sdk),
    ("AsyncAPI parser (@asyncapi/parser)", asyncapi_parser),
    ("KEDA + Prometheus Operator CRD schemas", crd_schemas),
    ("kubectl kustomize", kubectl_kustomize),
    ("kubernetes-validate", kubernetes_validate),
    ("promtool", promtool),
    ("hadolint", hadolint),
    ("Docker Compose", docker_compose),
]


def main() -> int:
    results: list[Result] = []
    for name, check in VALIDATORS:
        print(f"== {name}")
        started = time.monotonic()
        try:
            version, checked = check()
            status = "ok"
        except Skip as why:
            version, checked, status = "-", str(why), "skipped"
            print(f"    SKIPPED: {why}")
        except (AssertionError, subprocess.SubprocessError, OSError, ValueError) as exc:
            version, checked, status = "?", str(exc).splitlines()[0], "FAILED"
            indent(str(exc))
        results.append(Result(name, version, checked, status, time.monotonic() - started))
    print("\nvalidator | version | result | checked")
    for r in results:
        print(f"{r.name} | {r.version} | {r.status} ({r.seconds:.1f} s) | {r.checked}")
    failed = [r.name for r in results if r.status == "FAILED"]
    skipped = [r.name for r in results if r.status == "skipped"]
    print(
        f"\nvalidate: {len(results) - len(failed) - len(skipped)} passed, {len(failed)} failed, "
        f"{len(skipped)} skipped"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
