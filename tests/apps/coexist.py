"""One coexistence scenario per process (global providers and patches can't be undone):
``python coexist.py SCENARIO`` prints JSON with the spans the app's provider got, the /metrics
response and the request count infersight recorded."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
os.environ.setdefault("INFERSIGHT_METRICS_PORT", "0")
os.environ.setdefault("INFERSIGHT_GPU", "off")

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SCENARIO = sys.argv[1]
exporter = InMemorySpanExporter()
started: list[str] = []


class StartRecorder(SpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        started.append(span.name)


def app_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(StartRecorder())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def flask_app() -> Any:
    from flask import Flask, request

    import infersight

    app = Flask("coexist")

    @app.post("/predict")
    def predict() -> str:
        with infersight.model("m"):
            pass
        return "ok"

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    @app.get("/blocked")
    def blocked() -> str:
        return "never reached"

    @app.before_request
    def refuse_blocked() -> Any:
        return ("refused", 403) if request.path == "/blocked" else None

    return app


def run_flask() -> dict[str, Any]:
    from flask import Flask

    app: Any = None
    if SCENARIO in ("flask_contrib_before", "flask_contrib_app_before", "flask_contrib_after"):
        trace.set_tracer_provider(app_provider())
    if SCENARIO == "flask_provider_before":
        trace.set_tracer_provider(app_provider())
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    if SCENARIO == "flask_contrib_before":
        FlaskInstrumentor().instrument()
    if SCENARIO == "flask_contrib_app_before":
        app = flask_app()
        FlaskInstrumentor().instrument_app(app)
    import infersight.auto

    if SCENARIO == "flask_contrib_after":
        FlaskInstrumentor().instrument()
    if SCENARIO == "flask_provider_after":
        trace.set_tracer_provider(app_provider())
    app = app or flask_app()
    if SCENARIO == "flask_app_metrics_route":

        @app.get("/metrics")
        def own_metrics() -> str:
            return "the app's own metrics"

    if SCENARIO == "flask_app_metrics_wsgi":
        from prometheus_client import make_wsgi_app
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": make_wsgi_app()})
    assert isinstance(app, Flask)
    client = app.test_client()
    statuses = [client.post("/predict").status_code, client.get("/healthz").status_code]
    statuses.append(client.get("/blocked").status_code)  # answered by a before_request handler
    if SCENARIO == "flask_app_metrics_wsgi":  # a scrape there doesn't wait for infersight's worker
        import infersight

        infersight.get_runtime().worker.drain()  # type: ignore[union-attr]
    metrics = client.get("/metrics")
    return {"statuses": statuses, "metrics_status": metrics.status_code, "metrics": metrics.get_data(as_text=True)}


def run_grpc() -> dict[str, Any]:
    from concurrent import futures

    trace.set_tracer_provider(app_provider())
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorServer

    if SCENARIO == "grpc_contrib_before":
        GrpcInstrumentorServer().instrument()
    import infersight.auto

    if SCENARIO == "grpc_contrib_after":
        GrpcInstrumentorServer().instrument()
    import grpc

    import infersight

    def handler(request: bytes, context: Any) -> bytes:
        with infersight.model("m"):
            pass
        return request

    server = grpc.server(futures.ThreadPoolExecutor(2))
    methods = {"Predict": grpc.unary_unary_rpc_method_handler(handler)}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.Scorer", methods)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.unary_unary("/t.Scorer/Predict")(b"x", timeout=10)
    server.stop(0)
    return {}


def main() -> None:
    import infersight

    out = run_grpc() if SCENARIO.startswith("grpc") else run_flask()
    rt = infersight.get_runtime()
    assert rt is not None
    rt.worker.drain()
    counts: dict[str, float] = {}
    for metric in rt.registry.collect():  # type: ignore[union-attr]
        for sample in metric.samples:
            if sample.name == "infersight_request_duration_seconds_count":
                endpoint = sample.labels["endpoint"]
                counts[endpoint] = counts.get(endpoint, 0.0) + sample.value
    infersight.shutdown()
    out["requests_counted"] = sum(counts.values())
    out["counted_by_endpoint"] = counts
    out["started"] = started
    out["spans"] = [
        {
            "name": s.name,
            "kind": s.kind.name,
            "trace": format(s.context.trace_id, "032x"),
            "id": format(s.context.span_id, "016x"),
            "parent": format(s.parent.span_id, "016x") if s.parent else None,
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps(out))


main()
