"""Beside the OpenTelemetry a team already runs: one SERVER span per request whatever the
order, the app's provider and processors fed, the app's /metrics left alone, health probes
excluded. Each scenario runs in its own process (tests/apps/coexist.py): global providers and
patches can't be undone in one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "tests" / "apps" / "coexist.py"


def run(scenario: str, **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(APP), scenario],
        env={**os.environ, "PYTHONPATH": str(ROOT / "sdk"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def server_span_with_stage_child(out: dict[str, Any], name: str) -> dict[str, Any]:
    """The one SERVER span of the one request, with infersight's model stage as its child."""
    spans = out["spans"]
    servers = [s for s in spans if s["kind"] == "SERVER" and name in s["name"]]
    assert len([s for s in spans if "blocked" in s["name"]]) <= 1, spans
    assert len(servers) == 1, spans
    (stage,) = [s for s in spans if s["name"] == "model"]
    assert stage["parent"] == servers[0]["id"] and stage["trace"] == servers[0]["trace"], spans
    clients = [s for s in spans if s["kind"] == "CLIENT"]  # the caller's, when instrumented too
    assert [s for s in spans if s["kind"] not in ("SERVER", "CLIENT") and s["name"] != "model"] == [], spans
    for client in clients:
        assert servers[0]["parent"] == client["id"] and servers[0]["trace"] == client["trace"], spans
    return servers[0]


@pytest.mark.parametrize(
    "scenario",
    [
        "flask_contrib_before",  # FlaskInstrumentor().instrument(), then the import
        "flask_contrib_app_before",  # an app instrumented by instrument_app before the import
        "flask_contrib_after",
    ],
)
def test_flask_beside_otel_flask_has_one_server_span(scenario: str) -> None:
    out = run(scenario)
    assert out["statuses"] == [200, 200, 403] and out["metrics_status"] == 200
    assert "infersight_request_duration_seconds_count" in out["metrics"]
    server_span_with_stage_child(out, "/predict")
    assert [s["kind"] for s in out["spans"] if "blocked" in s["name"]] == ["SERVER"]
    assert out["counted_by_endpoint"] == {"/predict": 1.0, "/blocked": 1.0}  # /healthz is a probe


@pytest.mark.parametrize("scenario", ["grpc_contrib_before", "grpc_contrib_after"])
def test_grpc_beside_the_otel_interceptor_has_one_server_span_in_one_trace(scenario: str) -> None:
    out = run(scenario)
    server_span_with_stage_child(out, "Predict")
    assert [s["kind"] for s in out["spans"] if "Predict" in s["name"]].count("CLIENT") == 1  # infersight's channel
    assert out["requests_counted"] == 1.0


@pytest.mark.parametrize("scenario", ["flask_provider_before", "flask_provider_after"])
def test_the_apps_provider_gets_infersights_spans_with_on_start(scenario: str) -> None:
    out = run(scenario)
    server = server_span_with_stage_child(out, "/predict")
    assert server["name"] == "POST /predict"
    assert sorted(out["started"]) == ["GET /blocked", "POST /predict", "model"]


def test_an_app_route_at_the_metrics_path_stays_the_apps() -> None:
    out = run("flask_app_metrics_route")
    assert out["metrics_status"] == 200 and out["metrics"] == "the app's own metrics"
    assert out["counted_by_endpoint"]["/predict"] == 1.0


def test_prometheus_clients_wsgi_app_at_the_metrics_path_serves_infersights_metrics() -> None:
    """Mounted in front of the app, it serves the default registry, where infersight's are."""
    out = run("flask_app_metrics_wsgi")
    assert out["metrics_status"] == 200
    counts = [ln for ln in out["metrics"].splitlines() if ln.startswith("infersight_request_duration_seconds_count")]
    predict = [ln for ln in counts if 'endpoint="/predict"' in ln]
    assert len(predict) == 1 and predict[0].endswith(" 1.0"), counts


def test_excluded_urls_follow_the_otel_variables() -> None:
    assert "/healthz" not in run("flask_contrib_after")["counted_by_endpoint"]  # a probe: excluded
    out = run("flask_contrib_after", OTEL_PYTHON_FLASK_EXCLUDED_URLS="predict")
    assert out["counted_by_endpoint"] == {"/healthz": 1.0, "/blocked": 1.0}
    assert [s["name"] for s in out["spans"] if "predict" in s["name"]] == []  # contrib excludes it too
    out = run("flask_contrib_after", OTEL_PYTHON_EXCLUDED_URLS="healthz,predict,blocked")
    assert out["counted_by_endpoint"] == {}


def test_sdk_disabled_means_no_spans_but_metrics() -> None:
    out = run("flask_provider_before", OTEL_SDK_DISABLED="true")
    assert out["spans"] == [] and out["started"] == []
    assert out["counted_by_endpoint"]["/predict"] == 1.0


@pytest.mark.parametrize("app", ["instrumented_flask.py", "instrumented_fastapi.py"])
def test_under_opentelemetry_instrument_with_both_entry_points_one_server_span(app: str) -> None:
    """``opentelemetry-instrument`` loads the contrib instrumentors and infersight's."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "-u", app],
        cwd=ROOT / "tests" / "apps",
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT / "sdk"),
            "OTEL_TRACES_EXPORTER": "console",
            "INFERSIGHT_METRICS_PORT": "0",
            "INFERSIGHT_GPU": "off",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = [ln.split(":", 1)[1].strip(' ",') for ln in result.stdout.splitlines() if ln.startswith('    "name"')]
    kinds = [ln.split('"SpanKind.')[1].rstrip('",') for ln in result.stdout.splitlines() if '"kind"' in ln]
    by_kind = sorted(zip(names, kinds, strict=True))
    assert [k for k in kinds if k == "SERVER"] == ["SERVER"] * 3, result.stdout[-3000:]
    assert [n for n, k in by_kind if k == "SERVER"] == ["POST /predict"] * 3
    assert [n for n, k in by_kind if n == "model"] == ["model"] * 3


def test_an_app_owned_batch_processor_still_counts_what_it_exported() -> None:
    code = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import infersight.auto, infersight
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # after the import
for _ in range(3):
    with infersight.request(model="m"), infersight.model():
        pass
rt = infersight.get_runtime()
rt.worker.drain()
provider.force_flush()
value = rt.registry.get_sample_value
print(json.dumps({"exported": value("infersight_spans_exported_total"), "got": len(exporter.get_finished_spans())}))
"""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "sdk"),
        "OTEL_TRACES_EXPORTER": "none",
        "INFERSIGHT_METRICS_PORT": "0",
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"exported": 6.0, "got": 6}, out  # 3 requests x 2 spans, through the app's exporter
