"""The deploy files pass the tools that will consume them: promtool (rules, rule unit tests,
scrape config, the dashboard's queries, the PrometheusRule's groups) and kustomize (the base
and the example overlay). Each test skips when its tool is not installed (Debian:
`apt-get install prometheus`, which .ci/run and make validate do; kubectl ships kustomize)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.deploy import (
    K8S,
    K8S_EXAMPLE,
    K8S_MONITORING,
    OBS,
    dashboard_exprs,
    load_yaml,
    load_yaml_docs,
)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_accepts_the_alert_rules() -> None:
    proc = run(tool("promtool"), "check", "rules", str(OBS / "alerts.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    """Each alert fires on a history that should wake someone and stays quiet otherwise."""
    proc = run(tool("promtool"), "test", "rules", "alerts.test.yml", cwd=OBS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_unit_test() -> None:
    rules = load_yaml(OBS / "alerts.yml")
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = load_yaml(OBS / "alerts.test.yml")
    firing = {
        case["alertname"]
        for t in tests["tests"]
        for case in t["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert names == firing


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each dashboard query (as a recording rule) once Grafana's interval
    variable is replaced by a duration."""
    yaml = pytest.importorskip("yaml")
    exprs = [e.replace("$__rate_interval", "5m") for e in dashboard_exprs()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = run(tool("promtool"), "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_scrape_config_is_valid(tmp_path: Path) -> None:
    """Debian's promtool is built without Kubernetes discovery, so the pod discovery block is
    swapped for a static target; everything else (relabelling, rule files) is checked as is."""
    yaml = pytest.importorskip("yaml")
    promtool = tool("promtool")
    config: dict[str, Any] = load_yaml(OBS / "prometheus.yml")
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
    shutil.copy(OBS / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_scrape_config_reads_the_annotations_the_pods_carry() -> None:
    config = load_yaml(OBS / "prometheus.yml")
    relabel = json.dumps(config["scrape_configs"][0]["relabel_configs"])
    pod_keys = set()
    for path in K8S.glob("deployment-*.yaml"):
        (dep,) = load_yaml_docs(path)
        pod_keys |= set(dep["spec"]["template"]["metadata"]["annotations"])
    for key in pod_keys:
        meta = "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9]", "_", key)
        assert meta in relabel, key


def test_the_prometheusrule_groups_pass_promtool(tmp_path: Path) -> None:
    """What the Prometheus Operator loads is a valid rule file for promtool too."""
    yaml = pytest.importorskip("yaml")
    (rule,) = load_yaml_docs(K8S_MONITORING / "prometheusrule.yaml")
    path = tmp_path / "operator-rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = run(tool("promtool"), "check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("root", [K8S, K8S_EXAMPLE], ids=["base", "example-overlay"])
def test_kustomize_builds_the_manifests(root: Path) -> None:
    yaml = pytest.importorskip("yaml")
    proc = run(tool("kubectl"), "kustomize", str(root))
    assert proc.returncode == 0, proc.stderr
    objs = [o for o in yaml.safe_load_all(proc.stdout) if o]
    kinds = sorted(o["kind"] for o in objs)
    assert kinds.count("Deployment") == 4
    assert {"ScaledObject", "TriggerAuthentication", "PodDisruptionBudget", "Service"} <= set(kinds)
    if root == K8S:  # the base never carries a Secret (it would overwrite the real one)
        assert "Secret" not in kinds
    else:
        assert kinds.count("Secret") == 2
        assert {"PodMonitor", "PrometheusRule"} <= set(kinds)
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "bc-sync", obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "bc-sync"
        if obj["kind"] == "Deployment":
            (c,) = obj["spec"]["template"]["spec"]["containers"]
            assert c["image"] == "registry.example.com/bc-sync:0.1.0"
