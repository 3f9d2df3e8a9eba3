"""Flask over real HTTP on loopback: spans, propagation in and out, metrics with exemplars."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests
from opentelemetry import propagate
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from werkzeug.serving import make_server

import infersight
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def make_app():  # type: ignore[no-untyped-def]
    from flask import Flask, Response, jsonify, request

    app = Flask("test-app")

    @app.post("/predict/<name>")
    def predict(name: str):  # type: ignore[no-untyped-def]
        with infersight.preprocess(model="clf"):
            words = request.json["text"].split()  # type: ignore[index]
        with infersight.model():
            outgoing: dict[str, str] = {}
            propagate.inject(outgoing)
        with infersight.postprocess():
            return jsonify(n=len(words), traceparent=outgoing.get("traceparent"))

    @app.get("/fail")
    def fail():  # type: ignore[no-untyped-def]
        raise RuntimeError("handler bug")

    @app.get("/stream")
    def stream():  # type: ignore[no-untyped-def]
        def tokens():  # type: ignore[no-untyped-def]
            for i in range(3):
                with infersight.model(model="clf"):  # one model step per token
                    time.sleep(0.08)
                yield f"data: token{i}\n\n"

        return Response(tokens(), mimetype="text/event-stream")

    @app.get("/stream/broken")
    def broken_stream():  # type: ignore[no-untyped-def]
        def tokens():  # type: ignore[no-untyped-def]
            yield "data: token0\n\n"
            raise RuntimeError("generator bug")

        return Response(tokens(), mimetype="text/event-stream")

    return app


@pytest.fixture
def served() -> Iterator[tuple[str, Captured]]:
    app_before = make_app()  # created BEFORE instrumentation
    with capture(models={"clf": {"version": "7", "slo_p99_seconds": 0.5}}) as t:
        instrument_all(["flask"])
        server = make_server("127.0.0.1", 0, app_before, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", t
        finally:
            server.shutdown()
            thread.join(5)
            uninstrument_all()


def test_request_becomes_server_span_with_three_stage_children(served: tuple[str, Captured]) -> None:
    url, t = served
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    r = requests.post(f"{url}/predict/x", json={"text": "a b c"}, headers=headers, timeout=5)
    assert r.status_code == 200
    spans = {s.name: s for s in t.spans()}
    server = spans["POST /predict/<name>"]
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert f"{server.parent.span_id:016x}" == PARENT_ID
    assert server.parent.is_remote
    assert server.attributes["http.route"] == "/predict/<name>"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["infersight.model.version"] == "7"
    for stage in ("preprocess", "model", "postprocess"):
        assert spans[stage].parent.span_id == server.context.span_id
    # Propagation out: a call made inside the model stage carries the model span as parent.
    out = r.json()["traceparent"]
    assert out.split("-")[1] == TRACE_ID
    assert out.split("-")[2] == f"{spans['model'].context.span_id:016x}"


def test_metrics_route_serves_openmetrics_with_exemplars(served: tuple[str, Captured]) -> None:
    url, t = served
    for _ in range(3):
        requests.post(f"{url}/predict/x", json={"text": "a b"}, timeout=5)
    t.flush()
    r = requests.get(f"{url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=5)
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    hist = families["infersight_request_duration_seconds"]
    count = [s for s in hist.samples if s.name.endswith("_count") and s.labels["endpoint"] == "/predict/<name>"]
    assert count and count[0].value == 3
    assert count[0].labels["model"] == "clf"
    exemplars = [s.exemplar for s in hist.samples if s.exemplar is not None]
    assert exemplars, "no exemplar on the request histogram"
    trace_ids = {f"{s.context.trace_id:032x}" for s in t.spans()}
    assert exemplars[0].labels["trace_id"] in trace_ids
    stages = families["infersight_stage_duration_seconds"]
    seen = {s.labels["stage"] for s in stages.samples if s.name.endswith("_count")}
    assert seen == {"preprocess", "model", "postprocess"}
    # Plain Prometheus text is served to scrapers that don't ask for OpenMetrics.
    plain = requests.get(f"{url}/metrics", timeout=5)
    assert plain.headers["Content-Type"].startswith("text/plain")


def test_server_error_is_an_error_outcome(served: tuple[str, Captured]) -> None:
    url, t = served
    assert requests.get(f"{url}/fail", timeout=5).status_code == 500
    assert (
        t.value(
            "infersight_request_duration_seconds_count",
            model="unknown",
            version="unknown",
            endpoint="/fail",
            outcome="error",
        )
        == 1.0
    )
    span = t.spans("GET /fail")[0]
    assert span.status.status_code.name == "ERROR"


def test_app_created_after_instrumentation_and_metrics_route_off() -> None:
    with capture(metrics_path="") as t:
        instrument_all(["flask"])
        try:
            app = make_app()
            client = app.test_client()
            assert client.post("/predict/y", json={"text": "x"}).status_code == 200
            assert client.get("/metrics").status_code == 404
            assert t.spans("POST /predict/<name>")
        finally:
            uninstrument_all()


def test_unmatched_routes_collapse_to_one_endpoint_label(served: tuple[str, Captured]) -> None:
    url, t = served
    for i in range(20):
        requests.get(f"{url}/random/{i}", timeout=5)
    assert (
        t.value(
            "infersight_request_duration_seconds_count",
            model="unknown",
            version="unknown",
            endpoint="unmatched",
            outcome="success",
        )
        == 20.0
    )


def test_extra_pages_such_as_drift_are_served_next_to_metrics() -> None:
    with capture():
        rt = infersight.get_runtime()
        assert rt is not None
        rt.exposition.pages["/drift"] = lambda: ("text/html; charset=utf-8", b"<html>report</html>")
        instrument_all(["flask"])
        try:
            response = make_app().test_client().get("/drift")
        finally:
            uninstrument_all()
    assert response.status_code == 200
    assert response.data == b"<html>report</html>"


def test_streamed_response_ends_at_its_last_byte_with_time_to_first_byte(served: tuple[str, Captured]) -> None:
    url, t = served
    r = requests.get(f"{url}/stream", timeout=5)
    assert r.text.count("data: token") == 3
    labels = {"model": "clf", "version": "7", "endpoint": "/stream"}  # the model its stages named
    # The server closes the body just after the client has the last chunk.
    total = _wait_for(t, "infersight_request_duration_seconds_sum", outcome="success", **labels)
    first = t.value("infersight_time_to_first_byte_seconds_sum", **labels)
    # Before: the request ended when the view returned its generator (~0 s), with no first byte.
    assert total is not None and total >= 0.2, total  # the three model steps ran inside it
    assert first is not None and 0.05 <= first < total, (first, total)
    server = t.spans("GET /stream")[0]
    assert server.attributes["http.response.body.size"] == len(r.content)
    steps = t.spans("model")
    assert len(steps) == 3 and all(s.parent.span_id == server.context.span_id for s in steps)  # type: ignore[union-attr]
    # The model stages ran in the generator: attributed to the request, not lost.
    assert t.value("infersight_stage_duration_seconds_count", model="clf", stage="model") == 3.0


def test_a_failing_stream_is_an_error_and_the_next_request_starts_clean(served: tuple[str, Captured]) -> None:
    url, t = served
    try:
        assert requests.get(f"{url}/stream/broken", timeout=5).content.startswith(b"data: token0")
    except requests.RequestException:
        pass  # the server cuts the body short: the client may see a broken chunked encoding
    r = requests.post(f"{url}/predict/x", json={"text": "a"}, timeout=5)
    assert r.status_code == 200
    labels = {"model": "unknown", "version": "unknown", "endpoint": "/stream/broken"}
    assert _wait_for(t, "infersight_request_duration_seconds_count", outcome="error", **labels) == 1.0
    (broken,) = t.spans("GET /stream/broken")
    after = t.spans("POST /predict/<name>")[0]
    assert after.context.trace_id != broken.context.trace_id  # the stream's context did not leak
    assert after.parent is None


def _wait_for(t: Captured, sample: str, **labels: str) -> float | None:
    deadline = time.monotonic() + 5
    while True:
        t.flush()
        value = t.value(sample, **labels)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.02)
