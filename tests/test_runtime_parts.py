"""The runtime's parts: typed, owned, started and stopped by it; what it registered is removed."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, SpanKind
from prometheus_client import CollectorRegistry, Counter

import infersight
from infersight import _errors
from infersight._runtime import Runtime
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import capture


def test_optional_parts_are_none_until_started_and_stopped_on_shutdown() -> None:
    with capture() as t:
        rt = infersight.get_runtime()
        assert rt is not None
        assert (rt.gpu, rt.drift, rt.metrics_server) == (None, None, None)
        port = infersight.start_metrics_server(port=0, addr="127.0.0.1")
        assert rt.metrics_server is not None and rt.metrics_server.port == port
        assert infersight.start_metrics_server() == port  # one server per runtime
        with infersight.request(model="m"):
            pass
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            body = b"".join(iter(lambda: conn.recv(65536), b""))
        counts = [ln for ln in body.decode().splitlines() if ln.startswith("infersight_request_duration_seconds_count")]
        assert len(counts) == 1 and 'model="m"' in counts[0] and counts[0].endswith(" 1.0"), counts
        assert t.registry is rt.registry
    with socket.socket() as probe:  # the server is gone with the runtime
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_sdk_errors_count_into_the_running_runtime_only() -> None:
    with capture() as t:
        _errors.report("test.component")
        assert t.value("infersight_sdk_errors_total", component="test.component") == 1.0
    registry = t.registry
    _errors.report("test.component")  # after shutdown: logged and counted in-process only
    assert registry.get_sample_value("infersight_sdk_errors_total", {"component": "test.component"}) is None
    assert _errors.ERRORS.counting_into(None)


def test_reinit_and_shutdown_remove_only_what_infersight_registered() -> None:
    registry = CollectorRegistry()
    own = Counter("app_requests", "the app's own metric", registry=registry)
    own.inc()
    infersight.init(registry=registry, traces=False, gpu="off")
    try:
        assert registry.get_sample_value("infersight_spans_dropped_total", {"reason": "queue_full"}) == 0.0
        infersight.init(registry=registry, traces=False, gpu="off", service="other")  # re-init
        assert registry.get_sample_value("infersight_spans_dropped_total", {"reason": "queue_full"}) == 0.0
    finally:
        infersight.shutdown()
    names = {metric.name for metric in registry.collect()}
    assert names == {"app_requests"}
    assert registry.get_sample_value("app_requests_total") == 1.0


@pytest.fixture
def no_global_provider() -> Iterator[None]:
    """No global TracerProvider set, as in a fresh process (OTel sets it once per process);
    whatever was global before is put back after."""
    once = trace._TRACER_PROVIDER_SET_ONCE
    before = (trace._TRACER_PROVIDER, once._done)
    trace._TRACER_PROVIDER, once._done = None, False
    try:
        yield
    finally:
        infersight.shutdown()
        trace._TRACER_PROVIDER, once._done = before


def _init_with_own_provider() -> Runtime:
    infersight.init(registry=CollectorRegistry(), traces_exporter="none", metrics_port=0, gpu="off")
    rt = infersight.get_runtime()
    assert rt is not None and rt.owns_provider and trace.get_tracer_provider() is rt.provider
    return rt


def test_shutdown_unsets_the_tracer_provider_it_set_and_a_reinit_makes_a_live_one(no_global_provider: None) -> None:
    first = _init_with_own_provider()
    infersight.shutdown()
    # Not left global once shut down: spans of other libraries would be recorded into it, lost.
    assert isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
    assert not trace.get_tracer("app").start_span("after").is_recording()
    second = _init_with_own_provider()  # not the dead one, taken as if the app had set it
    assert second.provider is not first.provider
    assert trace.get_tracer("app").start_span("live").is_recording()


def test_a_provider_the_app_set_stays_global_after_shutdown(no_global_provider: None) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    theirs = TracerProvider()
    trace.set_tracer_provider(theirs)
    infersight.init(registry=CollectorRegistry(), traces_exporter="none", metrics_port=0, gpu="off")
    rt = infersight.get_runtime()
    assert rt is not None and rt.provider is theirs and not rt.owns_provider
    infersight.shutdown()
    assert trace.get_tracer_provider() is theirs


def test_a_fastapi_app_after_init_and_shutdown_still_gets_infersights_server_span(no_global_provider: None) -> None:
    """FastAPI traces a request itself whenever a global provider is set; with the one a shut
    down runtime left behind, its SERVER span went nowhere and infersight's, yielding to it, too."""
    _init_with_own_provider()
    infersight.shutdown()
    app = FastAPI()

    @app.get("/predict")
    async def predict() -> dict[str, int]:
        with infersight.model(model="clf"):
            pass
        return {"ok": 1}

    async def go() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/predict")).status_code

    with capture() as t:
        instrument_all(["starlette"])
        try:
            assert asyncio.run(go()) == 200
        finally:
            uninstrument_all()
    spans = {(s.name, s.kind) for s in t.spans()}
    assert ("GET /predict", SpanKind.SERVER) in spans, spans
    (server,) = t.spans("GET /predict")
    (model,) = t.spans("model")
    assert model.parent is not None and server.context is not None
    assert model.parent.span_id == server.context.span_id
