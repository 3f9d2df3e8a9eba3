"""The runtime's parts: typed, owned, started and stopped by it; what it registered is removed."""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, Counter

import infersight
from infersight import _errors
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
