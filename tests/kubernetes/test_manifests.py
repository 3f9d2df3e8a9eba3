"""deploy/kubernetes/ builds with kustomize and validates offline against the Kubernetes schemas
(strict) and the Prometheus Operator CRDs; what it deploys is the repo's own files."""

from __future__ import annotations

import base64
import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.kubernetes.tools import ROOT, K8sTools, install

sys.path.insert(0, str(ROOT / "tools"))
import gen_rules

Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def tools() -> K8sTools:
    try:
        return install()
    except RuntimeError as exc:  # only when a tool cannot be built or fetched on this machine
        pytest.skip(f"Kubernetes tools unavailable: {exc}")


@pytest.fixture(scope="module")
def rendered(tools: K8sTools) -> str:
    return tools.build()


@pytest.fixture(scope="module")
def docs(rendered: str) -> Docs:
    return [d for d in yaml.safe_load_all(rendered) if d]


def one(docs: Docs, kind: str, name_prefix: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"{kind} {name_prefix}*: {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    return containers[0]


def env(workload: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(workload).get("env", [])}


def test_everything_validates_against_the_schemas(tools: K8sTools, rendered: str) -> None:
    res = tools.validate(rendered)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 problems" in res.stderr


@pytest.mark.parametrize(
    ("kind", "name", "path", "bad"),
    [
        ("Deployment", "otelcol-gateway", ["spec", "replica"], 2),  # misspelt field
        ("Service", "otelcol-gateway-headless", ["spec", "ports", 0, "port"], "4317"),  # wrong type
        ("PrometheusRule", "infersight-latency", ["spec", "groups", 0, "rules", 0, "expression"], "up"),
        ("PodMonitor", "infersight-model-server", ["spec", "podMetricsEndpoints", 0, "honorLabels"], "yes"),
    ],
)
def test_validator_rejects_a_broken_object(
    tools: K8sTools, docs: Docs, kind: str, name: str, path: list[Any], bad: Any
) -> None:
    broken = copy.deepcopy(one(docs, kind, name))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    res = tools.validate(yaml.safe_dump(broken))
    assert res.returncode == 1, res.stdout + res.stderr
    assert name in res.stdout


def test_the_tier_is_wired(docs: Docs) -> None:
    agent, gateway = one(docs, "DaemonSet", "otelcol-agent"), one(docs, "Deployment", "otelcol-gateway")
    headless = one(docs, "Service", "otelcol-gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    assert env(agent)["GATEWAY_HOSTNAME"] == headless["metadata"]["name"]
    grpc = {p["name"]: p for p in container(gateway)["ports"]}["otlp-grpc"]["containerPort"]
    assert int(env(agent)["GATEWAY_PORT"]) == grpc == headless["spec"]["ports"][0]["port"]
    # Apps send to the agent of their node.
    agent_svc = one(docs, "Service", "otelcol-agent")
    assert agent_svc["spec"]["internalTrafficPolicy"] == "Local"
    server = one(docs, "Deployment", "model-server")
    assert env(server)["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{agent_svc['metadata']['name']}:4317"


def test_configs_are_the_repo_files(docs: Docs) -> None:
    for workload, source in (
        (one(docs, "DaemonSet", "otelcol-agent"), "agent.yaml"),
        (one(docs, "Deployment", "otelcol-gateway"), "otelcol.yaml"),
    ):
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        cm_name = volumes["config"]["configMap"]["name"]
        cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name)
        assert cm["data"]["config.yaml"] == (ROOT / "collector-config" / source).read_text()
        mount = next(m for m in container(workload)["volumeMounts"] if m["name"] == "config")
        assert container(workload)["args"] == ["--config", f"{mount['mountPath']}/config.yaml"]

    secret = one(docs, "Secret", "alertmanager-infersight")
    text = base64.b64decode(secret["data"]["alertmanager.yaml"]).decode()
    assert text == (ROOT / "alertmanager" / "alertmanager.yml").read_text()


def test_dashboards_are_configmaps_for_the_sidecar(docs: Docs) -> None:
    sources = sorted((ROOT / "grafana-dashboards" / "dashboards").glob("*.json"))
    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard")]
    shipped = {k: v for cm in maps for k, v in cm["data"].items()}
    assert shipped == {p.name: p.read_text() for p in sources}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        json.loads(next(iter(cm["data"].values())))
        # kubectl apply keeps a copy in an annotation limited to 256 KiB.
        assert len(json.dumps(cm)) < 256 * 1024, cm["metadata"]["name"]


def test_rules_and_monitors_are_generated_from_the_sources(docs: Docs) -> None:
    assert gen_rules.main(["--check"]) == 0, "run: python tools/gen_rules.py"
    rules = {d["metadata"]["name"]: d["spec"]["groups"] for d in docs if d["kind"] == "PrometheusRule"}
    sources = sorted((ROOT / "prometheus-rules").glob("*.rules.yaml"))
    assert rules == {
        f"infersight-{p.name.removesuffix('.rules.yaml')}": yaml.safe_load(p.read_text())["groups"] for p in sources
    }


def test_pod_monitors_scrape_ports_that_exist_as_prometheus_yml_jobs(docs: Docs) -> None:
    prom = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {f"infersight-{s.app}" for s in gen_rules.SCRAPES}
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        pods = [w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert pods, f"{monitor['metadata']['name']} selects no pods"
        ports = {p["name"] for w in pods for p in container(w)["ports"]}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in ports, (monitor["metadata"]["name"], endpoint["port"])
            job = endpoint["relabelings"][-1]["replacement"]
            assert job in jobs, f"job {job} is not in prometheus/prometheus.yml"
            assert endpoint.get("honorLabels", False) == jobs[job].get("honor_labels", False), job
            assert endpoint["path"] == jobs[job].get("metrics_path", "/metrics"), job


def test_pod_monitors_render_changes_with_the_spec() -> None:
    spec = (gen_rules.Scrape("custom", "custom-app", "web", honor_labels=True, path="/m"),)
    doc = yaml.safe_load(gen_rules.render_pod_monitors(spec))
    endpoint = doc["spec"]["podMetricsEndpoints"][0]
    assert doc["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "custom-app"}
    assert endpoint == {
        "port": "web",
        "path": "/m",
        "honorLabels": True,
        "relabelings": [{"action": "replace", "targetLabel": "job", "replacement": "custom"}],
    }


def test_kustomize_builds_each_source_folder_alone(tools: K8sTools) -> None:
    for folder in ("collector-config", "grafana-dashboards", "alertmanager"):
        built = [d for d in yaml.safe_load_all(tools.build(ROOT / folder)) if d]
        assert built and all(d["kind"] in ("ConfigMap", "Secret") for d in built), folder


def test_manifests_have_no_placeholder_left() -> None:
    for path in sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml")):
        text = path.read_text()
        assert "TODO" not in text and "CHANGEME" not in text, path
        for doc in yaml.safe_load_all(text):
            assert doc is None or isinstance(doc, dict), path


def test_paths(tools: K8sTools) -> None:
    # The cache is outside the repo: nothing third-party is committed.
    for p in (tools.kustomize, tools.kubernetes_validate, tools.prometheus_operator_crds):
        assert not Path(p).resolve().is_relative_to(ROOT), p
