"""OTLP metric export (INFERSIGHT_METRICS_EXPORTER=otlp): prometheus_client's families become
OTLP metrics, and through our real collector's Prometheus exporter they read as a scrape of
``/metrics`` does: the same names, labels, bucket counts and exemplars."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import infersight
from infersight import _errors
from infersight._metric_export import COMPONENT, MetricPusher, to_metrics_data
from infersight._runtime import get_runtime
from infersight.conventions import METRIC
from infersight.testing import capture
from stack import LOOPBACK, OtlpSink, ensure_collector, http_get, loopback_config, run_collector, wait_until

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID, SPAN_ID = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    hist = Histogram("lat_seconds", "latency", ["model"], buckets=(0.1, 1.0), registry=registry)
    hist.labels("m").observe(0.05)
    hist.labels("m").observe(0.5, {"trace_id": f"{TRACE_ID:032x}", "span_id": f"{SPAN_ID:016x}"})
    hist.labels("m").observe(2.0)
    hist.labels("m").observe(3.0)
    Counter("calls", "calls", ["outcome"], registry=registry).labels("ok").inc(3)
    Gauge("depth", "depth", registry=registry).set(7)
    return registry


def test_families_become_cumulative_otlp_metrics_with_bounds_and_exemplars() -> None:
    data = to_metrics_data(_registry().collect(), Resource.create({"service.name": "t"}), 1, 2)
    metrics = {m.name: m for m in data.resource_metrics[0].scope_metrics[0].metrics}
    assert set(metrics) == {"lat_seconds", "calls", "depth"}  # family names: the collector adds suffixes

    (point,) = metrics["lat_seconds"].data.data_points
    assert dict(point.attributes) == {"model": "m"}  # no le
    assert list(point.explicit_bounds) == [0.1, 1.0]
    assert list(point.bucket_counts) == [1, 1, 2]  # Prometheus' cumulative 1, 2, 4 per bucket
    assert (point.count, point.sum) == (4, pytest.approx(5.55))
    (exemplar,) = point.exemplars
    assert (exemplar.trace_id, exemplar.span_id, exemplar.value) == (TRACE_ID, SPAN_ID, 0.5)
    assert metrics["lat_seconds"].data.aggregation_temporality.name == "CUMULATIVE"

    calls = metrics["calls"].data
    assert calls.is_monotonic and [(dict(p.attributes), p.value) for p in calls.data_points] == [({"outcome": "ok"}, 3)]
    assert [p.value for p in metrics["depth"].data.data_points] == [7]

    # The stock encoder takes it whole (min/max unset: Prometheus has none).
    request = encode_metrics(data)
    hist_pb = request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0]
    assert not hist_pb.HasField("min") and hist_pb.exemplars[0].trace_id == TRACE_ID.to_bytes(16, "big")


class _Refusing:
    def __init__(self) -> None:
        self.calls = 0

    def export(self, data: Any, **kwargs: Any) -> MetricExportResult:
        self.calls += 1
        return MetricExportResult.FAILURE

    def shutdown(self, **kwargs: Any) -> None:
        pass


def test_a_failed_push_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    _errors.reset()
    exporter = _Refusing()
    pusher = MetricPusher(_registry().collect, lambda: exporter, Resource.create({}), 60)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.WARNING, logger="infersight"):
        assert pusher.push() is False
        assert pusher.push() is False
    assert exporter.calls == 2 and pusher.failed == 2
    assert _errors.counts()[COMPONENT] == 2
    assert sum(COMPONENT in r.getMessage() for r in caplog.records) == 1
    _errors.reset()


class _Keeping(_Refusing):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []

    def export(self, data: Any, **kwargs: Any) -> MetricExportResult:
        self.calls += 1
        for metric in data.resource_metrics[0].scope_metrics[0].metrics:
            if metric.name == "calls":
                self.values += [p.value for p in metric.data.data_points]
        return MetricExportResult.SUCCESS


def test_stop_pushes_what_came_since_the_last_push() -> None:
    registry = CollectorRegistry()
    calls = Counter("calls", "calls", registry=registry)
    exporter = _Keeping()
    pusher = MetricPusher(registry.collect, lambda: exporter, Resource.create({}), 3600)  # type: ignore[arg-type,return-value]
    pusher.start()
    calls.inc(2)
    pusher.stop(5)
    assert (exporter.calls, exporter.values, pusher.exported) == (1, [2.0], 1)


def test_otlp_only_serves_no_metrics_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replicas on one node would fight over one metrics port: with otlp alone none is served."""
    flask = pytest.importorskip("flask")
    from infersight.instrumentation import instrument_all, uninstrument_all

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0.2")  # nothing listens: shut down fast
    instrument_all(["flask"])
    try:
        with capture(metrics_exporter="otlp", metrics_export_interval_s=3600, shutdown_timeout_s=0.5) as t:
            app = flask.Flask("otlp-only")
            app.add_url_rule("/p", "p", lambda: "ok")
            client = app.test_client()
            assert client.get("/p").status_code == 200
            assert client.get("/metrics").status_code == 404
            labels = {"endpoint": "/p", "model": "unknown", "version": "unknown", "outcome": "success"}
            assert t.value(f"{METRIC.REQUEST_DURATION.name}_count", **labels) == 1
        with capture():  # the default still serves it
            assert flask.Flask("default").test_client().get("/metrics").status_code == 200
    finally:
        uninstrument_all()


def _scraped(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    status, text = http_get(url, headers={"Accept": "application/openmetrics-text"})
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_pushed_metrics_scrape_from_the_collector_as_from_metrics(
    protocol: str, sink: OtlpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = ensure_collector()
    shipped = yaml.safe_load((ROOT / "collector-config" / "otelcol.yaml").read_text())
    cfg, ports = loopback_config(shipped, tmp_path, f"{LOOPBACK}:{sink.port}")
    cfg_path = tmp_path / "otelcol.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    endpoint = (
        f"http://{LOOPBACK}:{ports['otlp_grpc']}"
        if protocol == "grpc"
        else f"http://{LOOPBACK}:{ports['otlp_http']}/v1/metrics"
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_INSECURE", "true")
    health = f"http://{LOOPBACK}:{ports['health_check']}/"
    url = f"http://{LOOPBACK}:{ports['prometheus']}/metrics"

    with run_collector(collector, cfg_path, tmp_path / "collector.log", health_url=health):
        settings: dict[str, Any] = {"metrics_export_interval_s": 3600, "otlp_metrics_protocol": protocol}
        with capture(metrics_exporter="otlp", gil_probe=False, **settings) as t:
            for i in range(12):
                with infersight.request(model="sst2", endpoint="/predict"), infersight.model():
                    time.sleep(0.002 if i % 2 else 0.03)
            trace_ids = {f"{s.context.trace_id:032x}" for s in t.spans()}
            rt = get_runtime()
            assert rt is not None and rt.metric_pusher is not None and rt.metric_pusher.push()
            local = {
                (s.name, tuple(sorted(s.labels.items()))): s
                for family in t.registry.collect()
                for s in family.samples
                if not s.name.endswith("_created")
            }
            instance = rt.metric_pusher.resource.attributes["service.instance.id"]

        count = f"{METRIC.REQUEST_DURATION.name}_count"

        def arrived() -> dict[Any, Any] | None:
            scraped = _scraped(url)
            return scraped if any(name == count for name, _ in scraped) else None

        scraped = wait_until(arrived, 20, f"{count} at the collector's Prometheus exporter", interval=0.2)

    # Every sample of the registry, under its own name and labels, plus the process's job and
    # instance (the collector's scope labels aside); request and stage histograms bucket for bucket.
    by_name: dict[str, list[tuple[dict[str, str], Any]]] = {}
    for (name, labels), sample in scraped.items():
        by_name.setdefault(name, []).append((dict(labels), sample))
    for (name, labels), sample in local.items():
        matches = [
            s for got, s in by_name.get(name, []) if dict(labels).items() <= got.items() and got["instance"] == instance
        ]
        assert len(matches) == 1, f"{name}{dict(labels)} not scraped once from the collector"
        if name.startswith((METRIC.REQUEST_DURATION.name, METRIC.STAGE_DURATION.name)):
            assert matches[0].value == sample.value, (name, labels)
    buckets = [s for got, s in by_name[f"{METRIC.REQUEST_DURATION.name}_bucket"] if got.get("model") == "sst2"]
    assert sum(s.value for s in buckets if s.labels["le"] == "+Inf") == 12
    exemplars = [s.exemplar for s in buckets if s.exemplar is not None]
    assert exemplars, "no exemplar on the request histogram"
    assert {e.labels["trace_id"] for e in exemplars} <= trace_ids
    assert {s.labels["job"] for _, s in by_name[count]} == {"inference-server"}
