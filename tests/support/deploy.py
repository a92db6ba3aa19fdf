"""The deploy files as data for the deploy tests: paths, YAML, the Dockerfile's stages, the
Kubernetes objects and compose services, and a check of PromQL names against the code."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from worker import metrics
from worker.config.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
K8S_MONITORING = K8S / "monitoring"  # kustomize Component: PodMonitor, PrometheusRule
K8S_EXAMPLE = DEPLOY / "kubernetes-example"  # overlay: the base + placeholder Secrets
OBS = DEPLOY / "observability"

SETTING = re.compile(r"\bBC_SYNC_[A-Z0-9_]+\b")
# Labels Prometheus adds at scrape time (deploy/observability/prometheus.yml, the PodMonitor),
# not the code.
TARGET_LABELS = {"job", "instance", "pod", "namespace", "component", "app_kubernetes_io_name"}
# Series Prometheus itself produces.
PROMETHEUS_SERIES = {"up"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def load_yaml_docs(path: Path) -> list[Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deploy YAML files")
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def load_yaml(path: Path) -> Any:
    docs = load_yaml_docs(path)
    assert len(docs) == 1, f"{path} should hold one YAML document"
    return docs[0]


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """deploy/Dockerfile as stage name → its instructions (keyword, arguments), in order."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    stages: dict[str, list[tuple[str, str]]] = {}
    instructions: list[tuple[str, str]] = []
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        if keyword.upper() == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", args, re.I)
            assert match, f"every stage is named: {entry}"
            instructions = [("FROM", match.group(1))]
            stages[match.group(2)] = instructions
        else:
            instructions.append((keyword.upper(), args))
    return stages


def instruction(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def defaults() -> Settings:
    return Settings(_env_file=None)


def k8s_objects(*dirs: Path) -> list[dict[str, Any]]:
    """The objects of the base, the monitoring component and the example overlay (or of the
    directories given)."""
    objs: list[dict[str, Any]] = []
    for directory in dirs or (K8S, K8S_MONITORING, K8S_EXAMPLE):
        for path in sorted(directory.glob("*.yaml")):
            if path.name != "kustomization.yaml":
                objs.extend(load_yaml_docs(path))
    return objs


def secret(name: str = "bc-sync-secrets") -> dict[str, Any]:
    """One of the example overlay's placeholder Secrets."""
    return next(o for o in k8s_objects() if o["kind"] == "Secret" and o["metadata"]["name"] == name)


def deployments() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == "Deployment"}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def compose() -> dict[str, Any]:
    return dict(load_yaml(DEPLOY / "docker-compose.yml"))


def compose_workers() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in compose()["services"].items() if k.startswith("bc-sync-")}


def configmap() -> dict[str, str]:
    obj = next(o for o in k8s_objects() if o["kind"] == "ConfigMap")
    return dict(obj["data"])


# --- metrics -------------------------------------------------------------------------------


def exposed_metrics() -> dict[str, set[str]]:
    """Every series name /metrics can expose → its label names (from worker.metrics)."""
    out: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        labels = set(obj._labelnames)
        for family in obj.describe():
            for suffix in SUFFIXES[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                out[family.name + suffix] = labels | extra
    return out


def alert_exprs() -> list[str]:
    doc = load_yaml(OBS / "alerts.yml")
    return [str(r["expr"]) for g in doc["groups"] for r in g["rules"]]


def _walk_targets(panels: list[dict[str, Any]]) -> Iterator[str]:
    for panel in panels:
        for target in panel.get("targets", []):
            yield str(target["expr"])
        yield from _walk_targets(panel.get("panels", []))


def dashboard_exprs() -> list[str]:
    doc = json.loads((OBS / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return list(_walk_targets(doc["panels"]))


SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
OUR_NAME = re.compile(r"\bbcsync_[a-zA-Z0-9_]+\b")


def check_promql(expr: str, known: dict[str, set[str]], queues: set[str]) -> list[str]:
    """Problems with the metric and label names of one PromQL expression."""
    problems = []
    used = set(OUR_NAME.findall(expr))
    problems += [f"unknown metric {n}" for n in sorted(used - known.keys())]
    labels_in_expr: set[str] = set()
    for name, body in SELECTOR.findall(expr):
        if name not in known and name not in PROMETHEUS_SERIES:
            problems.append(f"unknown series {name}")
            continue
        allowed = known.get(name, set()) | TARGET_LABELS
        for label, _op, value in MATCHER.findall(body):
            if label not in allowed:
                problems.append(f"{name} has no label {label}")
            if label == "queue" and value not in queues:
                problems.append(f"{name}{{queue={value!r}}} is not one of our queues")
    for name in used & known.keys():
        labels_in_expr |= known[name]
    for group in GROUPING.findall(expr):
        for label in (x.strip() for x in group.split(",") if x.strip()):
            if label not in labels_in_expr | TARGET_LABELS:
                problems.append(f"grouping by {label}, which none of {sorted(used)} has")
    return problems


def read_env_file(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}
