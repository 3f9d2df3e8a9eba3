"""Grafana dashboards and provisioning: generated JSON is current, well-formed, uses only
metric names from infersight.conventions, and every panel query returns data on a real
Prometheus holding a backfilled hour of synthetic infersight metrics.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support import synthetic
from tests.support.dashboards import (
    DASHBOARD_DIR,
    iter_panels,
    load_dashboards,
    panel_queries,
    query_range,
    substitute_variables,
)

from infersight.conventions import ALL_METRICS, METRIC, TRITON
from stack import find_binary, http_get, prometheus, wait_until

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "grafana-dashboards" / "generate.py"
PROVISIONING = ROOT / "grafana-dashboards" / "provisioning"
UIDS = {"infersight-overview", "infersight-stages", "infersight-gpu", "infersight-drift"}
UNITS = {"s", "bytes", "percentunit", "reqps", "watt", "celsius", "hertz", "Bps", "short", "none", "ops"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
REQUEST_COUNT = f"{METRIC.REQUEST_DURATION.name}_count"
# Metrics no panel needs: model_info only feeds joins in rules.
NOT_ON_DASHBOARDS = {METRIC.MODEL_INFO.name}

DASHBOARDS = load_dashboards()


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )


# --- generated files are current ------------------------------------------------------


def test_committed_dashboards_are_current() -> None:
    result = run_generator("--check")
    assert result.returncode == 0, f"stale dashboards, run generate.py:\n{result.stderr}"
    assert set(DASHBOARDS) == {f"{uid}.json" for uid in UIDS}


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    for _ in range(2):  # twice: the second run must not change what the first wrote
        assert run_generator("--output-dir", str(tmp_path)).returncode == 0
        for path in sorted(DASHBOARD_DIR.glob("*.json")):
            assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
    text = (tmp_path / "infersight-overview.json").read_text()
    assert text.endswith("}\n") and text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_check_mode_names_a_modified_missing_or_extra_file(tmp_path: Path) -> None:
    shutil.copytree(DASHBOARD_DIR, tmp_path, dirs_exist_ok=True)
    assert run_generator("--check", "--output-dir", str(tmp_path)).returncode == 0
    gpu = tmp_path / "infersight-gpu.json"
    doc = json.loads(gpu.read_text())
    doc["title"] = "edited in the UI"
    gpu.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    result = run_generator("--check", "--output-dir", str(tmp_path))
    assert result.returncode == 1
    assert "infersight-gpu.json" in result.stderr and "infersight-drift.json" not in result.stderr

    (tmp_path / "infersight-drift.json").unlink()
    (tmp_path / "hand-made.json").write_text("{}\n")
    result = run_generator("--check", "--output-dir", str(tmp_path))
    assert result.returncode == 1
    assert "infersight-drift.json" in result.stderr and "hand-made.json" in result.stderr


# --- structure ------------------------------------------------------------------------


@pytest.fixture(params=sorted(DASHBOARDS), ids=lambda name: name.removesuffix(".json"))
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    doc: dict[str, Any] = DASHBOARDS[request.param]
    return doc


def _content_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dashboard) if p.get("type") != "row"]


def test_identity_and_tags(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] in UIDS
    assert "infersight" in dashboard["tags"]
    assert dashboard["title"] and dashboard["description"]
    ids = [p["id"] for p in iter_panels(dashboard)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids), ids


def test_every_panel_is_described_with_units_and_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    problems = []
    for panel in _content_panels(dashboard):
        title = panel.get("title") or f"panel {panel['id']}"
        if not panel.get("description"):
            problems.append(f"{title}: no description")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if unit not in UNITS:
            problems.append(f"{title}: unit {unit!r}")
        if panel.get("datasource") != DATASOURCE:
            problems.append(f"{title}: datasource {panel.get('datasource')}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{title}: no queries")
        for target in targets:
            if target.get("datasource") != DATASOURCE or not target.get("refId"):
                problems.append(f"{title}: target {target.get('refId')!r} datasource {target.get('datasource')}")
        refs = [t.get("refId") for t in targets]
        if len(refs) != len(set(refs)):
            problems.append(f"{title}: duplicate refIds {refs}")
    assert not problems, "\n".join(problems)


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("model", "version", "instance"):
        var = variables[name]
        assert var["type"] == "query" and var["datasource"] == DATASOURCE
        assert var["multi"] and var["includeAll"] and var["allValue"] == ".*"
        assert var["query"].startswith(f"label_values({REQUEST_COUNT}") and var["query"].endswith(f", {name})")
    if dashboard["uid"] == "infersight-gpu":
        assert variables["gpu"]["query"] == f'label_values({METRIC.GPU_UP.name}{{instance=~"$instance"}}, uuid)'
        assert variables["gpu"]["multi"] and variables["gpu"]["includeAll"]
    # Every variable a query uses is defined (Grafana would leave an undefined one as text).
    used = {m for _, expr in panel_queries(dashboard) for m in re.findall(r"\$(\w+)", expr)}
    assert {u for u in used if not u.startswith("__")} <= set(variables)


def test_links_reach_every_other_dashboard_keeping_variables(dashboard: dict[str, Any]) -> None:
    links = {link["url"]: link for link in dashboard["links"]}
    assert set(links) == {f"/d/{uid}" for uid in UIDS - {dashboard["uid"]}}
    assert all(link["includeVars"] and link["keepTime"] for link in links.values())


def test_series_drill_down_links_open_a_dashboard_for_the_series_model() -> None:
    urls = [
        link["url"]
        for doc in DASHBOARDS.values()
        for panel in _content_panels(doc)
        for link in panel["fieldConfig"]["defaults"].get("links") or []
    ]
    assert len(urls) >= 2
    for url in urls:
        path, _, query = url.partition("?")
        assert path.removeprefix("/d/") in UIDS, url
        assert "var-model=${__field.labels.model}" in query and "${__url_time_range}" in query, url


def test_heatmaps_show_exemplars() -> None:
    heatmaps = [(d["uid"], p) for d in DASHBOARDS.values() for p in _content_panels(d) if p["type"] == "heatmap"]
    latency = [p for uid, p in heatmaps if uid == "infersight-overview"]
    assert len(latency) == 1 and latency[0]["targets"][0]["exemplar"] is True
    assert latency[0]["targets"][0]["format"] == "heatmap" and latency[0]["options"]["calculate"] is False
    for _, panel in heatmaps:
        assert "_bucket{" in panel["targets"][0]["expr"] and panel["targets"][0]["format"] == "heatmap"
    gpu_exemplars = [p for uid, p in heatmaps if uid == "infersight-gpu" and p["targets"][0]["exemplar"]]
    assert {METRIC.STAGE_GPU_BUSY.name, METRIC.STAGE_GPU_SM_ACTIVE.name} <= {
        m for p in gpu_exemplars for m in _metric_names(p["targets"][0]["expr"])
    }


# --- metric names ---------------------------------------------------------------------

_SERIES = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_SUFFIX = re.compile(r"_(bucket|sum|count|total)$")
KNOWN = {spec.name for spec in ALL_METRICS} | set(TRITON.METRICS)  # Triton's own, for its models


def _metric_names(expr: str) -> set[str]:
    """Names of the series selected in ``expr`` (every selector in the dashboards has braces)."""
    return {_SUFFIX.sub("", name) if name not in KNOWN else name for name in _SERIES.findall(expr)}


def test_every_metric_is_in_conventions() -> None:
    unknown, used = [], set()
    for name, doc in DASHBOARDS.items():
        for title, expr in panel_queries(doc):
            names = _metric_names(expr)
            assert names, f"{name} / {title}: no series selector in {expr}"
            used |= names
            unknown += [f"{name} / {title}: {n}" for n in sorted(names - KNOWN)]
        for var in doc["templating"]["list"]:
            if var["type"] == "query":
                used_here = set(re.findall(r"label_values\((\w+)", var["query"]))
                unknown += [f"{name} / ${var['name']}: {n}" for n in used_here if _SUFFIX.sub("", n) not in KNOWN]
    assert not unknown, "\n".join(unknown)
    assert KNOWN - used == NOT_ON_DASHBOARDS, f"metrics on no dashboard: {sorted(KNOWN - used)}"


def test_metric_check_catches_a_foreign_name() -> None:
    assert _metric_names('rate(http_requests_total{job="x"}[1m])') == {"http_requests"}
    assert _metric_names(f'{METRIC.ERRORS.name}_total{{model=~"$model"}}') == {METRIC.ERRORS.name}


# --- provisioning ---------------------------------------------------------------------


def _datasources() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yaml").read_text())
    assert doc["apiVersion"] == 1
    return {ds["uid"]: ds for ds in doc["datasources"]}


def test_datasources_link_exemplars_to_jaeger_and_spans_to_gpu_metrics() -> None:
    sources = _datasources()
    prom, jaeger = sources["prometheus"], sources["jaeger"]
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090" and prom["isDefault"]
    assert prom["jsonData"]["exemplarTraceIdDestinations"] == [{"name": "trace_id", "datasourceUid": "jaeger"}]
    assert jaeger["type"] == "jaeger" and not any(ds["type"] == "tempo" for ds in sources.values())
    # The URL is the compose service's query port (jaeger/jaeger.yaml's jaeger_query http endpoint).
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    query = yaml.safe_load((ROOT / "jaeger" / "jaeger.yaml").read_text())["extensions"]["jaeger_query"]
    port = query["http"]["endpoint"].rsplit(":", 1)[1]
    assert "jaeger" in compose["services"] and jaeger["url"] == f"http://jaeger:{port}"
    t2m = jaeger["jsonData"]["tracesToMetrics"]
    assert t2m["datasourceUid"] == "prometheus"
    assert t2m["spanStartTimeShift"].startswith("-") and t2m["spanEndTimeShift"]
    assert {"key": "infersight.gpu.uuid", "value": "uuid"} in t2m["tags"]
    assert {"key": "infersight.model.name", "value": "model"} in t2m["tags"]
    queries = {q["name"]: q["query"] for q in t2m["queries"]}
    gpu_metrics = {n for q in queries.values() for n in _metric_names(q)}
    assert {METRIC.GPU_SM_ACTIVE.name, METRIC.GPU_UTILIZATION.name} <= gpu_metrics <= KNOWN
    for query in queries.values():
        # Grafana expands $X from the environment in provisioning files; only $$ survives.
        assert not re.search(r"(?<!\$)\$(?!\$)", query.replace("$$", "")), query


def test_exemplar_label_matches_the_sdk() -> None:
    from infersight._observations import exemplar_labels

    names = {d["name"] for d in _datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]}
    assert names <= set(exemplar_labels((1, 2)))


def test_dashboard_provider_points_at_the_mounted_folder() -> None:
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yaml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["folder"] == "infersight"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = [str(v) for v in compose["services"]["grafana"]["volumes"]]
    assert "./grafana-dashboards/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    assert "./grafana-dashboards/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_substitution_map() -> None:
    expr = 'rate(x{model=~"$model", gpu=~"${gpu}", v=~"${version:regex}"}[$__rate_interval]) [$__range]'
    assert substitute_variables(expr) == 'rate(x{model=~".*", gpu=~".*", v=~".*"}[1m]) [1h]'
    with pytest.raises(KeyError):
        substitute_variables("x[$__unknown_builtin]")


# --- real engine ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, int]]:
    """A real Prometheus over one backfilled hour of synthetic data: (url, start, end)."""
    promtool, prom = find_binary("promtool"), find_binary("prometheus")
    if promtool is None or prom is None:
        pytest.skip("prometheus/promtool not installed (tools/setup.sh installs them)")
    workdir = tmp_path_factory.mktemp("dashboards-prometheus")
    end = int(time.time()) // 60 * 60 - 120
    synthetic.backfill(synthetic.openmetrics(end), workdir / "prometheus-data", promtool)
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n")
    with prometheus(config, workdir, extra_args=("--storage.tsdb.retention.time=10y",)) as service:
        yield service.url, end - 3600, end


def _run(url: str, expr: str, start: int, end: int) -> str | None:
    """None if ``expr`` succeeds with data over the window, else why not."""
    answer = query_range(url, expr, start + 600, end)  # skip the first 10 min: rates need history
    if answer.get("status") != "success":
        return f"{answer.get('errorType')}: {answer.get('error')}"
    if not answer["data"]["result"]:
        return "empty result"
    values = [v for series in answer["data"]["result"] for _, v in series["values"]]
    if all(v in ("NaN", "+Inf", "-Inf") for v in values):
        return f"no finite value in {len(values)} points"
    return None


def test_every_panel_query_returns_data(backfilled: tuple[str, int, int]) -> None:
    url, start, end = backfilled
    failures, ran = [], 0
    for name, doc in DASHBOARDS.items():
        for title, expr in panel_queries(doc):
            promql = substitute_variables(expr)
            why = _run(url, promql, start, end)
            ran += 1
            if why:
                failures.append(f"{name} / {title}: {why}\n    {promql}")
    assert ran >= 60, ran
    assert not failures, f"{len(failures)} of {ran} panel queries failed:\n" + "\n".join(failures)


def test_the_query_check_fails_for_a_filter_that_matches_nothing(backfilled: tuple[str, int, int]) -> None:
    url, start, end = backfilled
    title, expr = panel_queries(DASHBOARDS["infersight-overview.json"])[0]
    assert _run(url, substitute_variables(expr), start, end) is None, title
    assert _run(url, substitute_variables(expr, {"model": "no-such-model"}), start, end) == "empty result"
    assert _run(url, "histogram_quantile(0.99, rate(", start, end).startswith("bad_data")


def test_template_variables_have_values(backfilled: tuple[str, int, int]) -> None:
    url, _, _ = backfilled
    for name, doc in DASHBOARDS.items():
        for var in doc["templating"]["list"]:
            if var["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
            assert match, var["query"]
            selector, label = substitute_variables(match.group(1)), match.group(2)
            status, body = http_get(f"{url}/api/v1/label/{label}/values?match[]={_quote(selector)}")
            values = json.loads(body)["data"] if status == 200 else []
            assert values, f"{name} ${var['name']}: no values for {var['query']} ({status})"


def test_span_links_open_the_span_gpu_counters(backfilled: tuple[str, int, int]) -> None:
    """tracesToMetrics queries, with the span tags Grafana fills in, return that GPU's series."""
    url, start, end = backfilled
    model, (_, uuid, _) = synthetic.MODELS[0], synthetic.GPUS[0]
    tags = {"infersight.gpu.uuid": uuid, "infersight.model.name": model}
    t2m = _datasources()["jaeger"]["jsonData"]["tracesToMetrics"]
    for query in t2m["queries"]:
        promql = query["query"].replace("$$", "$")
        promql = re.sub(r'\$\{__span\.tags\["([^"]+)"\]\}', lambda m: tags[m.group(1)], promql)
        answer = query_range(url, promql, start + 600, end)
        assert answer.get("status") == "success" and answer["data"]["result"], (query["name"], promql, answer)
        for series in answer["data"]["result"]:
            labels = series["metric"]
            assert labels.get("uuid", uuid) == uuid and labels.get("model", model) == model, labels


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@pytest.fixture
def metrics_endpoint() -> Iterator[tuple[str, list[str]]]:
    """A loopback /metrics serving what infersight exports for a few real requests, with the
    trace ids of those requests: (host:port, trace ids)."""
    import infersight
    from infersight.testing import capture

    with capture(models={"sentiment": {"slo_p99_seconds": 0.25}}) as telemetry:
        for _ in range(5):
            with infersight.request(model="sentiment"), infersight.model():
                time.sleep(0.002)
        payload = telemetry.openmetrics().encode()
        trace_ids = [f"{s.context.trace_id:032x}" for s in telemetry.spans() if s.context is not None]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", trace_ids
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_latency_heatmap_exemplars_carry_the_trace_id_jaeger_links_use(
    metrics_endpoint: tuple[str, list[str]], tmp_path: Path
) -> None:
    """Scrape real infersight output; the heatmap's query gets exemplars whose label (the one the
    Prometheus data source sends to Jaeger) holds the trace id of a real request span."""
    if find_binary("prometheus") is None:
        pytest.skip("prometheus not installed (tools/setup.sh installs it)")
    target, trace_ids = metrics_endpoint
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: model-server\n    static_configs:\n      - targets: ['{target}']\n"
    )
    (heatmap,) = [p for p in _content_panels(DASHBOARDS["infersight-overview.json"]) if p["type"] == "heatmap"]
    expr = substitute_variables(heatmap["targets"][0]["expr"])
    label = _datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"][0]["name"]
    with prometheus(config, tmp_path) as service:

        def exemplars() -> list[dict[str, Any]]:
            now = time.time()
            query = urllib.parse.urlencode({"query": expr, "start": now - 3600, "end": now + 60})
            status, body = http_get(f"{service.url}/api/v1/query_exemplars?{query}")
            found: list[dict[str, Any]] = [e for s in json.loads(body)["data"] for e in s["exemplars"]]
            return found if status == 200 else []

        found = wait_until(exemplars, timeout=20, what="exemplars for the heatmap query")
    assert {e["labels"][label] for e in found} <= set(trace_ids), (found, trace_ids)
