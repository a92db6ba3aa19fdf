"""The Prometheus Operator objects (deploy/kubernetes/monitoring) match the rest: the
PrometheusRule carries exactly the promtool-tested alerts.yml, and the PodMonitor scrapes
every bc-sync pod on the port and path the worker serves, with the target label the alerts
match on."""

from __future__ import annotations

import re

from tests.support.deploy import (
    K8S_MONITORING,
    OBS,
    container,
    deployments,
    load_yaml,
    load_yaml_docs,
)
from tools import prometheusrule


def test_the_prometheusrule_is_generated_from_alerts_yml() -> None:
    text = (K8S_MONITORING / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert text == prometheusrule.render(), "run `make deploy-rules` and commit the result"
    (rule,) = load_yaml_docs(K8S_MONITORING / "prometheusrule.yaml")
    assert rule["spec"]["groups"] == load_yaml(OBS / "alerts.yml")["groups"]


def test_the_podmonitor_scrapes_every_role_where_the_worker_serves_metrics() -> None:
    (monitor,) = load_yaml_docs(K8S_MONITORING / "podmonitor.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for name, dep in deployments().items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        ports = {p["name"] for p in container(dep)["ports"]}
        assert endpoint["port"] in ports, name
        assert (
            dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
            == (endpoint["path"])
        )


def test_the_alerts_match_the_label_both_scrape_setups_set() -> None:
    """podTargetLabels turns the pod label app.kubernetes.io/name into the target label
    app_kubernetes_io_name (the operator replaces every non-[a-zA-Z0-9_] by _), which is what
    prometheus.yml sets too and what the `up` alerts select on."""
    (monitor,) = load_yaml_docs(K8S_MONITORING / "podmonitor.yaml")
    sanitized = {re.sub(r"[^a-zA-Z0-9_]", "_", k) for k in monitor["spec"]["podTargetLabels"]}
    assert "app_kubernetes_io_name" in sanitized
    scrape = load_yaml(OBS / "prometheus.yml")
    targets = {r.get("target_label") for r in scrape["scrape_configs"][0]["relabel_configs"]}
    assert "app_kubernetes_io_name" in targets
    rules = [r for g in load_yaml(OBS / "alerts.yml")["groups"] for r in g["rules"]]
    ups = [r["expr"] for r in rules if re.search(r"\bup\{", r["expr"])]
    assert ups and all('up{app_kubernetes_io_name="bc-sync"}' in e for e in ups)
