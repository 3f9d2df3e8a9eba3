"""The collector distribution and its config: static checks and one real run.

The real run starts the built binary on a loopback copy of collector-config/otelcol.yaml
whose Tempo exporter points at an in-process OTLP gRPC sink, sends spans with the
Python SDK, and checks tail sampling (what reached the sink) and span metrics with
exemplars (what the prometheus exporter serves).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from infersight.conventions import ATTR, SPAN
from stack import (
    LOOPBACK,
    ROOT,
    OtlpSink,
    ensure_collector,
    free_port,
    http_get,
    loopback_config,
    manifest_modules,
    run_collector,
    wait_until,
)

CONFIG_DIR = ROOT / "collector-config"
# Not collector configs: the ocb manifest, and the kustomization that makes them ConfigMaps.
NOT_CONFIGS = ("builder-config.yaml", "kustomization.yaml")
SHIPPED_CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml") if p.name not in NOT_CONFIGS)
PRODUCTION = CONFIG_DIR / "otelcol.yaml"
KINDS = ("receivers", "processors", "connectors", "exporters", "extensions")

# Old component names that still load (with a warning) but are deprecated.
DEPRECATED = {
    "otlp": "receiver only; exporter is otlp_grpc",
    "otlphttp": "otlp_http",
    "spanmetrics": "span_metrics",
    "prometheusremotewrite": "prometheus_remote_write",
    "resourcedetection": "resource_detection",
}


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


@pytest.fixture(scope="session")
def collector() -> Path:
    return ensure_collector()


@pytest.fixture(scope="session")
def components(collector: Path) -> dict[str, Any]:
    out = subprocess.run([str(collector), "components"], capture_output=True, text=True, timeout=30, check=True)
    parsed: dict[str, Any] = yaml.safe_load(out.stdout)
    return parsed


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text())
    return cfg


def test_configs_found() -> None:
    assert PRODUCTION in SHIPPED_CONFIGS


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_config_validates(collector: Path, path: Path) -> None:
    res = subprocess.run(
        [str(collector), "validate", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_binary_has_exactly_the_manifest(components: dict[str, Any]) -> None:
    for kind, modules in manifest_modules().items():
        built = sorted(c["module"].split()[0] for c in components.get(kind) or [])
        assert built == sorted(modules), kind


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_config_uses_current_names(components: dict[str, Any], path: Path) -> None:
    cfg = yaml.safe_load(path.read_text())
    for kind in KINDS:
        names = {c["name"] for c in components.get(kind) or []}
        for component_id in cfg.get(kind) or {}:
            t = _type(component_id)
            assert t in names, f"{kind}: {component_id} is not in the binary"
            if kind != "receivers":
                assert t not in DEPRECATED, f"{component_id}: deprecated, use {DEPRECATED[t]}"


def test_memory_limiter_first_everywhere(config: dict[str, Any]) -> None:
    pipelines = config["service"]["pipelines"]
    assert pipelines
    for name, pipe in pipelines.items():
        procs = pipe.get("processors") or []
        assert procs and procs[0] == "memory_limiter", name
        assert "batch" in procs, name


def test_span_metrics_before_sampling(config: dict[str, Any]) -> None:
    pipelines = config["service"]["pipelines"]
    span_metrics = [c for c in config["connectors"] if _type(c) == "span_metrics"]
    assert len(span_metrics) == 1
    sm = span_metrics[0]
    assert config["connectors"][sm]["exemplars"]["enabled"] is True
    dims = {d["name"] for d in config["connectors"][sm]["dimensions"]}
    assert {ATTR.MODEL_NAME, ATTR.STAGE} <= dims
    # Span metrics are fed by the pipelines that receive from otlp, which do no sampling;
    # sampling happens only in pipelines fed by a connector.
    feeding = [n for n, p in pipelines.items() if sm in p.get("exporters", [])]
    assert feeding
    for name in feeding:
        assert "otlp" in pipelines[name]["receivers"], name
        assert not any(_type(p) == "tail_sampling" for p in pipelines[name]["processors"]), name
    sampled = [n for n, p in pipelines.items() if any(_type(x) == "tail_sampling" for x in p["processors"])]
    assert sampled
    for name in sampled:
        assert "otlp" not in pipelines[name]["receivers"], f"{name} must not see raw OTLP"
        assert any(_type(e) == "otlp_grpc" for e in pipelines[name]["exporters"]), name


def test_tempo_queue_is_persistent(config: dict[str, Any]) -> None:
    tempo = [e for e in config["exporters"] if _type(e) == "otlp_grpc"]
    assert len(tempo) == 1
    exp = config["exporters"][tempo[0]]
    assert exp["sending_queue"]["enabled"] is True
    assert exp["sending_queue"]["storage"] == "file_storage"
    assert "file_storage" in config["service"]["extensions"]
    assert exp["retry_on_failure"]["enabled"] is True
    assert config["exporters"]["prometheus"]["enable_open_metrics"] is True


# ---- the real run -------------------------------------------------------------------


def _send_spans(otlp_port: int, model: str) -> dict[str, list[str]]:
    """One error trace, one slow trace, 20 fast OK traces, 10 fast traces the SDK kept; returns
    trace ids by kind."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    provider = TracerProvider(resource=Resource.create({"service.name": "collector-test"}))
    exporter = OTLPSpanExporter(endpoint=f"{LOOPBACK}:{otlp_port}", insecure=True, timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
    tracer = provider.get_tracer("collector-test")
    ids: dict[str, list[str]] = {"error": [], "slow": [], "fast": [], "kept": []}

    def trace(kind: str, duration_ns: int = 0, error: bool = False) -> None:
        start = time.time_ns() - duration_ns
        attrs = {ATTR.MODEL_NAME: model}
        if kind == "kept":
            attrs[ATTR.TRACE_KEPT] = "ratio"  # the SDK's tail keep already chose it
        with tracer.start_as_current_span(SPAN.REQUEST, start_time=start, attributes=attrs, end_on_exit=False) as root:
            with tracer.start_as_current_span(
                SPAN.MODEL, start_time=start, attributes={ATTR.MODEL_NAME: model, ATTR.STAGE: SPAN.MODEL}
            ):
                pass
            if error:
                root.set_status(Status(StatusCode.ERROR, "boom"))
            root.end()
            ids[kind].append(format(root.get_span_context().trace_id, "032x"))

    try:
        trace("error", error=True)
        trace("slow", duration_ns=800_000_000)  # over the 500 ms latency policy
        for _ in range(20):
            trace("fast")
        for _ in range(10):
            trace("kept")
        assert provider.force_flush(10_000), "SDK could not flush spans to the collector"
    finally:
        provider.shutdown()
    return ids


def test_real_run_samples_and_exports_span_metrics(
    collector: Path, config: dict[str, Any], sink: OtlpSink, tmp_path: Path
) -> None:
    cfg, ports = loopback_config(config, tmp_path, f"{LOOPBACK}:{sink.port}")
    cfg_path = tmp_path / "otelcol-test.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    model = "sentiment-test"
    sm = cfg["connectors"]["span_metrics"]
    # OTel name -> Prometheus name, as the exporter's UnderscoreEscapingWithSuffixes does.
    calls_metric = sm.get("namespace", "traces.span.metrics").replace(".", "_") + "_calls_total"
    model_label = ATTR.MODEL_NAME.replace(".", "_")

    health = f"http://{LOOPBACK}:{ports['health_check']}/"
    with run_collector(collector, cfg_path, tmp_path / "collector.log", health_url=health):
        ids = _send_spans(ports["otlp_grpc"], model)
        sent = {t for v in ids.values() for t in v}

        # First the span metrics: they count every span, sampled or not, and carry
        # exemplars, which the connector keeps for one flush (1 s here) only.
        url = f"http://{LOOPBACK}:{ports['prometheus']}/metrics"
        pattern = re.compile(
            rf'^{calls_metric}\{{(?=[^}}]*{model_label}="{model}")'
            rf'(?=[^}}]*span_name="{SPAN.REQUEST}")[^}}]*\}} (\S+)(?: # \{{([^}}]*)\}}.*)?$',
            re.M,
        )

        # Poll often and collect exemplars across scrapes: a new series is first
        # reported as 0 (so rate() sees its first increase), possibly with the exemplars.
        exemplar_ids: set[str] = set()

        def scrape() -> str | None:
            status, text = http_get(url, headers={"Accept": "application/openmetrics-text"})
            matches = list(pattern.finditer(text))
            exemplar_ids.update(re.findall(r'trace_id="([0-9a-f]{32})"', " ".join(m.group(2) or "" for m in matches)))
            total = sum(float(m.group(1)) for m in matches)
            return text if status == 200 and total >= len(sent) and exemplar_ids else None

        text = wait_until(scrape, 30, f"{calls_metric} for {len(sent)} root spans, with exemplars", interval=0.1)
        assert sum(float(m.group(1)) for m in pattern.finditer(text)) == len(sent)
        assert exemplar_ids <= sent, "exemplars point at traces we did not send"
        assert "# EOF" in text  # it really was OpenMetrics

        # Tail sampling: the error, the slow and the SDK-kept traces reach "Tempo", whole.
        keep = set(ids["error"] + ids["slow"] + ids["kept"])
        wait_until(lambda: keep <= sink.trace_ids(), 30, "error and slow traces exported")
        for trace_id in keep:
            assert len(sink.spans[trace_id]) == 2, trace_id

    # 10% probabilistic of 20 fast traces: keeping all would happen with p = 1e-20.
    fast_kept = set(ids["fast"]) & sink.trace_ids()
    assert len(fast_kept) < len(ids["fast"])


def test_persistent_queue_survives_a_restart(collector: Path, config: dict[str, Any], tmp_path: Path) -> None:
    """Tempo down: the sampled error trace waits in the file_storage queue, survives a
    collector restart, and is delivered once Tempo is back."""
    tempo_port = free_port()  # nothing listens here until the second run
    cfg, ports = loopback_config(config, tmp_path, f"{LOOPBACK}:{tempo_port}")
    cfg_path = tmp_path / "otelcol-test.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    health = f"http://{LOOPBACK}:{ports['health_check']}/"
    log1 = tmp_path / "run1.log"

    with run_collector(collector, cfg_path, log1, health_url=health):
        ids = _send_spans(ports["otlp_grpc"], "queue-test")
        # The error trace passed sampling and the Tempo exporter is retrying it.
        wait_until(
            lambda: "otlp_grpc/traces" in log1.read_text() and "retry" in log1.read_text().lower(),
            30,
            "the Tempo exporter retrying",
        )
    queue_files = [p for p in (tmp_path / "queue").iterdir() if p.is_file()]
    assert queue_files, "file_storage wrote no queue file"

    sink = OtlpSink(tempo_port)
    sink.start()
    try:
        with run_collector(collector, cfg_path, tmp_path / "run2.log", health_url=health):
            wait_until(lambda: set(ids["error"]) <= sink.trace_ids(), 30, "queued error trace delivered")
    finally:
        sink.stop()
