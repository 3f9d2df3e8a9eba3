"""Starlette and FastAPI: real uvicorn on loopback for each, then the ASGI edge cases in process
(thread pool, streaming, background tasks, disconnects, WebSocket, coexistence with OTel)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import uvicorn
from fastapi import APIRouter, BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse
from opentelemetry import propagate
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from starlette.concurrency import run_in_threadpool

import infersight
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
ABANDONED = "infersight.generator.abandoned"


def fastapi_app(**kwargs: Any) -> Any:
    app = FastAPI(**kwargs)
    items = APIRouter(prefix="/items")

    @items.get("/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.include_router(items, prefix="/v1")

    @app.post("/predict/{name}")
    def predict(name: str, body: dict[str, str]) -> dict[str, Any]:  # sync: FastAPI's thread pool
        with infersight.preprocess(model="clf"):
            words = body["text"].split()
        with infersight.model():
            outgoing: dict[str, str] = {}
            propagate.inject(outgoing)
        with infersight.postprocess():
            return {"n": len(words), "traceparent": outgoing.get("traceparent")}

    @app.get("/nested")
    async def nested() -> dict[str, str]:  # async: the event loop, then threads
        def inner(name: str) -> None:
            with infersight.stage(name):
                pass

        with infersight.stage("outer", model="clf"):
            await run_in_threadpool(inner, "in_threadpool")
            await asyncio.to_thread(inner, "in_to_thread")
        return {}

    @app.get("/stream")
    def stream(tasks: BackgroundTasks) -> Any:
        @infersight.postprocess
        def tokens() -> Iterator[str]:
            for i in range(3):
                time.sleep(0.05)
                yield f"data: token {i}\n\n"

        tasks.add_task(time.sleep, 0.3)  # after the last byte: not billed to the request
        return StreamingResponse(tokens(), media_type="text/event-stream")

    @app.get("/fail")
    async def fail() -> None:
        with infersight.model(model="clf"):
            raise LookupError("handler bug")

    return app


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Mount, Route, WebSocketRoute

    async def item(request: Any) -> JSONResponse:
        with infersight.model(model="st"):
            await asyncio.sleep(0)
        return JSONResponse({"id": request.path_params["item_id"]})

    async def echo(ws: Any) -> None:
        await ws.accept()
        await ws.send_text(await ws.receive_text())
        await ws.close()

    async def own_metrics(request: Any) -> PlainTextResponse:
        return PlainTextResponse("the app's own")

    api = Mount("/api/{version}", routes=[Route("/items/{item_id}", item)])
    return Starlette(routes=[api, WebSocketRoute("/ws", echo), Route("/mine", own_metrics)])


class Uvicorn:
    """uvicorn serving ``app`` on a loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def t() -> Iterator[Captured]:
    with capture(models={"clf": {"version": "7", "slo_p99_seconds": 0.5}}) as captured:
        instrument_all(["starlette", "fastapi"])
        try:
            yield captured
        finally:
            uninstrument_all()


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def count(t: Captured, endpoint: str, outcome: str = "success", model: str = "clf") -> float | None:
    version = "7" if model == "clf" else "unknown"
    labels = {"model": model, "version": version, "endpoint": endpoint, "outcome": outcome}
    return t.value("infersight_request_duration_seconds_count", **labels)


# ---- Real servers ---------------------------------------------------------------------------


def test_fastapi_over_uvicorn_spans_propagation_metrics_and_exemplars(t: Captured) -> None:
    app = fastapi_app()  # created after instrumenting; the Starlette test's app too
    with Uvicorn(app) as url:
        r = requests.post(f"{url}/predict/x", json={"text": "a b c"}, headers={"traceparent": TRACEPARENT}, timeout=5)
        assert r.status_code == 200
        requests.post(f"{url}/predict/y", json={"text": "a"}, timeout=5)
        assert requests.get(f"{url}/v1/items/3", timeout=5).json() == {"id": 3}
        t.flush()
        scrape = requests.get(f"{url}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=5)
    spans = {s.name: s for s in t.spans() if f"{s.context.trace_id:032x}" == TRACE_ID}
    server = spans["POST /predict/{name}"]
    assert server.kind.name == "SERVER" and server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == PARENT_ID
    assert server.attributes["http.route"] == "/predict/{name}"  # type: ignore[index]
    assert server.attributes["http.request.body.size"] == len(b'{"text": "a b c"}')  # type: ignore[index]
    assert server.attributes["http.response.body.size"] == len(r.content)  # type: ignore[index]
    for stage in ("preprocess", "model", "postprocess"):
        assert spans[stage].parent.span_id == server.context.span_id  # type: ignore[union-attr]
    assert r.json()["traceparent"].split("-")[1:3] == [TRACE_ID, f"{spans['model'].context.span_id:016x}"]
    assert scrape.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in text_string_to_metric_families(scrape.text)}
    hist = families["infersight_request_duration_seconds"]
    counts = [s for s in hist.samples if s.name.endswith("_count") and s.labels["endpoint"] == "/predict/{name}"]
    assert [(s.labels["model"], s.value) for s in counts] == [("clf", 2.0)]
    # Both requests may fall in one bucket, whose exemplar is then the later one's: each exemplar
    # must name the trace of one of this route's requests.
    served = {f"{s.context.trace_id:032x}" for s in t.spans() if s.name == "POST /predict/{name}"}
    exemplars = {
        s.exemplar.labels["trace_id"]
        for s in hist.samples
        if s.exemplar is not None and s.labels.get("endpoint") == "/predict/{name}"
    }
    assert TRACE_ID in served and len(served) == 2
    assert exemplars and exemplars <= served, (exemplars, served)
    endpoints = {s.labels.get("endpoint") for s in hist.samples}
    assert "/v1/items/{item_id}" in endpoints  # an included router's prefixes are in the template
    assert "/metrics" not in endpoints  # scrapes aren't requests
    stages = families["infersight_stage_duration_seconds"]
    assert {s.labels["stage"] for s in stages.samples if s.name.endswith("_count")} == {
        "preprocess",
        "model",
        "postprocess",
    }


def test_starlette_over_uvicorn_mounts_websocket_and_owned_paths(t: Captured) -> None:
    app = starlette_app()
    with Uvicorn(app) as url:
        assert requests.get(f"{url}/api/v2/items/42", timeout=5).json() == {"id": "42"}
        assert requests.get(f"{url}/nowhere/1", timeout=5).status_code == 404
        with socket.create_connection((url.split(":")[1][2:], int(url.rsplit(":", 1)[1])), timeout=5) as sock:
            sock.sendall(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 101")  # the upgrade went through untouched
        t.flush()
        metrics = requests.get(f"{url}/metrics", timeout=5)
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert 'endpoint="/api/{version}/items/{item_id}"' in metrics.text
    assert count(t, "/api/{version}/items/{item_id}", model="st") == 1.0
    assert count(t, "unmatched", model="unknown") == 1.0
    assert [s.name for s in t.spans() if s.kind.name == "SERVER"] == ["GET /api/{version}/items/{item_id}", "GET"]
    assert t.spans("model")[0].parent.span_id == t.spans("GET /api/{version}/items/{item_id}")[0].context.span_id  # type: ignore[union-attr]


# ---- In process -----------------------------------------------------------------------------


def test_stages_nest_across_the_thread_pool_and_to_thread(t: Captured) -> None:
    assert call(fastapi_app(), "GET", "/nested").status_code == 200
    outer = t.spans("outer")[0]
    assert outer.parent.span_id == t.spans("GET /nested")[0].context.span_id  # type: ignore[union-attr]
    for name in ("in_threadpool", "in_to_thread"):
        assert t.spans(name)[0].parent.span_id == outer.context.span_id  # type: ignore[union-attr]


def test_stream_ends_at_its_last_byte_with_time_to_first_byte(t: Captured) -> None:
    started = time.perf_counter()
    r = call(fastapi_app(), "GET", "/stream")
    elapsed = time.perf_counter() - started
    assert r.text.count("data: token") == 3 and elapsed >= 0.45  # the background task ran
    t.flush()
    total = t.value(
        "infersight_request_duration_seconds_sum",
        model="unknown",
        version="unknown",
        endpoint="/stream",
        outcome="success",
    )
    first = t.value("infersight_time_to_first_byte_seconds_sum", model="unknown", version="unknown", endpoint="/stream")
    assert total is not None and first is not None
    assert 0.15 <= total < 0.4, total  # three tokens, not the background task's 0.3 s
    assert 0.05 <= first < total
    assert (
        t.value("infersight_time_to_first_byte_seconds_count", model="clf", version="7", endpoint="/predict/{name}")
        is None
    )


def test_exception_passes_through_unchanged_and_is_an_error(t: Captured) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    def boom(request: Any) -> Any:
        raise LookupError("handler bug")

    raised: list[BaseException] = []

    async def go() -> None:
        app = Starlette(routes=[Route("/boom", boom)])
        scope = {"type": "http", "method": "GET", "path": "/boom", "headers": [], "query_string": b""}
        sent: list[Any] = []

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        try:
            await app(scope, receive, send)
        except LookupError as exc:
            raised.append(exc)
        assert sent[0]["status"] == 500  # Starlette's ServerErrorMiddleware answered, then re-raised

    asyncio.run(go())
    assert len(raised) == 1 and type(raised[0]) is LookupError and raised[0].args == ("handler bug",)
    assert count(t, "/boom", "error", model="unknown") == 1.0
    span = t.spans("GET /boom")[0]
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["http.response.status_code"] == 500  # type: ignore[index]


@pytest.mark.parametrize("spec", ["2.3", "2.4"])
def test_client_disconnect_mid_stream_is_not_a_server_error(t: Captured, spec: str) -> None:
    """What servers do when the client hangs up: uvicorn (ASGI 2.3) sends ``http.disconnect`` and
    drops later sends; a 2.4 server's send raises OSError, and Starlette raises ClientDisconnect."""
    app = fastapi_app()
    gone = asyncio.Event()
    raised: list[BaseException] = []

    async def go() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec},
            "method": "GET",
            "path": "/stream",
            "headers": [],
            "query_string": b"",
        }

        async def receive() -> Any:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.body":
                if gone.is_set() and spec == "2.4":
                    raise OSError("client gone")
                gone.set()  # the client hangs up after the first chunk

        try:
            await app(scope, receive, send)
        except Exception as exc:
            raised.append(exc)

    asyncio.run(go())
    assert [type(e).__name__ for e in raised] == ([] if spec == "2.3" else ["ClientDisconnect"])
    t.flush()
    server = t.spans("GET /stream")[0]
    assert server.status.status_code.name == "UNSET"
    assert server.attributes["http.response.status_code"] == 200  # type: ignore[index]
    assert count(t, "/stream", model="unknown") == 1.0


def test_fastapi_native_telemetry_keeps_one_server_span(t: Captured) -> None:
    """FastAPI traces requests itself once a tracer provider is set: its server span is kept."""
    app = fastapi_app(telemetry={"tracer_provider": t.provider, "operation_spans": False})
    assert call(app, "POST", "/predict/x", json={"text": "a"}).status_code == 200
    servers = [s for s in t.spans() if s.kind.name == "SERVER"]
    assert [s.name for s in servers] == ["POST /predict/{name}"]
    assert servers[0].instrumentation_scope.name == "fastapi"
    assert t.spans("model")[0].parent.span_id == servers[0].context.span_id  # type: ignore[union-attr]
    assert count(t, "/predict/{name}") == 1.0


def test_fastapi_tracing_switched_on_only_by_our_provider_is_left_to_us(
    t: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``import infersight.auto`` sets the global provider, which switches FastAPI's own tracing
    on: the server span stays infersight's, for an app created after infersight started, and
    from its second request for one created before."""
    from opentelemetry import trace

    rt = infersight.get_runtime()
    assert rt is not None
    monkeypatch.setattr(rt, "owns_provider", True)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: t.provider)  # as if set globally
    uninstrument_all()
    before = fastapi_app()
    instrument_all(["starlette", "fastapi"])
    after = fastapi_app()
    for app in (after, after, before, before):
        assert call(app, "POST", "/predict/x", json={"text": "a"}).status_code == 200
    servers = [s for s in t.spans() if s.kind.name == "SERVER"]
    assert sorted(s.instrumentation_scope.name for s in servers) == [
        "fastapi",
        "infersight",
        "infersight",
        "infersight",
    ]
    assert len(t.spans("fastapi.endpoint")) == 1  # the first request of the app made before
    ours = [s for s in servers if s.instrumentation_scope.name == "infersight"]
    assert all(s.attributes["infersight.model.name"] == "clf" for s in ours)  # type: ignore[index]
    assert count(t, "/predict/{name}") == 4.0


@pytest.mark.parametrize("contrib_first", [True, False])
def test_with_contrib_fastapi_instrumentation_there_is_one_server_span(t: Captured, contrib_first: bool) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    uninstrument_all()
    app = fastapi_app()
    if contrib_first:
        FastAPIInstrumentor.instrument_app(app, tracer_provider=t.provider)
        instrument_all(["starlette"])
    else:
        instrument_all(["starlette"])
        FastAPIInstrumentor.instrument_app(app, tracer_provider=t.provider)
    try:
        assert call(app, "POST", "/predict/x", json={"text": "a"}).status_code == 200
        assert call(app, "GET", "/metrics").status_code == 200
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    servers = [s for s in t.spans() if s.kind.name == "SERVER"]
    assert [s.name for s in servers] == ["POST /predict/{name}", "GET"]
    assert servers[0].instrumentation_scope.name == "opentelemetry.instrumentation.fastapi"
    for stage in ("preprocess", "model", "postprocess"):
        assert t.spans(stage)[0].parent.span_id == servers[0].context.span_id  # type: ignore[union-attr]
    assert count(t, "/predict/{name}") == 1.0


def test_with_contrib_asgi_middleware_outside_there_is_one_server_span(t: Captured) -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app = OpenTelemetryMiddleware(fastapi_app(), tracer_provider=t.provider)
    assert call(app, "POST", "/predict/x", json={"text": "a"}).status_code == 200
    servers = [s for s in t.spans() if s.kind.name == "SERVER"]
    assert len(servers) == 1 and servers[0].instrumentation_scope.name == "opentelemetry.instrumentation.asgi"
    assert t.spans("model")[0].parent.span_id == servers[0].context.span_id  # type: ignore[union-attr]
    assert count(t, "/predict/{name}") == 1.0


@pytest.mark.parametrize("theirs", ["no-exporter", "sampled-out", "exporting"])
def test_contrib_middleware_on_a_provider_of_its_own_is_passed_over_when_it_exports_nothing(
    t: Captured, theirs: str
) -> None:
    """As BentoML does: contrib's middleware inside the app, on a tracer provider of its own.
    Exporting, its span is the server span; recording nothing, or recording for no exporter
    (BentoML's defaults), infersight's is, continuing the caller's traceparent."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    provider = TracerProvider(sampler=ALWAYS_OFF if theirs == "sampled-out" else ALWAYS_ON)
    exported = InMemorySpanExporter()
    if theirs == "exporting":
        provider.add_span_processor(SimpleSpanProcessor(exported))
    app = fastapi_app()
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    headers = {"traceparent": TRACEPARENT}
    assert call(app, "POST", "/predict/x", json={"text": "a"}, headers=headers).status_code == 200
    ours = [s for s in t.spans() if s.kind.name == "SERVER"]
    theirs_servers = [s for s in exported.get_finished_spans() if s.kind.name == "SERVER"]
    assert len(ours) + len(theirs_servers) == 1, (ours, theirs_servers)
    server = (theirs_servers or ours)[0]
    assert bool(theirs_servers) == (theirs == "exporting")
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert f"{server.parent.span_id:016x}" == PARENT_ID  # type: ignore[union-attr]
    for stage in ("preprocess", "model", "postprocess"):
        assert t.spans(stage)[0].parent.span_id == server.context.span_id, stage  # type: ignore[union-attr]
    assert count(t, "/predict/{name}") == 1.0

    # No traceparent: their span starts the trace; when it goes nowhere, infersight's does.
    assert call(app, "POST", "/predict/x", json={"text": "a"}).status_code == 200
    if theirs != "exporting":
        root = [s for s in t.spans() if s.kind.name == "SERVER"][-1]
        assert root.parent is None and f"{root.context.trace_id:032x}" != TRACE_ID
        assert t.spans("model")[-1].parent.span_id == root.context.span_id  # type: ignore[union-attr]
    assert count(t, "/predict/{name}") == 2.0


def test_metrics_are_served_while_every_thread_of_the_pool_is_busy(t: Captured) -> None:
    import anyio.to_thread

    app = fastapi_app()

    async def go() -> httpx.Response:
        limiter = anyio.to_thread.current_default_thread_limiter()  # this event loop's
        limiter.total_tokens = 1
        async with limiter:  # the one thread the sync endpoints get is taken: requests would queue
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await asyncio.wait_for(client.get("/metrics"), 20)

    response = asyncio.run(go())
    assert response.status_code == 200 and b"infersight_" in response.content


def test_a_path_the_app_owns_stays_the_apps_and_metrics_move_to_their_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with capture(metrics_path="/mine", metrics_port=port, metrics_addr="127.0.0.1") as t:
        instrument_all(["starlette"])
        try:
            app = starlette_app()
            assert call(app, "GET", "/api/v1/items/1").status_code == 200
            scrape = requests.get(f"http://127.0.0.1:{port}/mine", timeout=5)  # open since the first request
            assert call(app, "GET", "/mine").text == "the app's own"
        finally:
            uninstrument_all()
    assert scrape.status_code == 200 and "infersight_request_duration_seconds" in scrape.text
    assert t.spans("GET /mine")


def test_route_template_on_starlette_versions_without_scope_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before Starlette 1.7 the router didn't put the route in the scope: the Route.handle hook
    finds it. A router routing as those versions did stands in for them."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Match, Route, Router

    from infersight.instrumentation import starlette as patcher

    class OldRouter(Router):
        async def app(self, scope: Any, receive: Any, send: Any) -> None:
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
            await self.not_found(scope, receive, send)

    async def user(request: Any) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["uid"])

    app = Starlette()
    app.router = OldRouter([Route("/users/{uid}", user)])
    monkeypatch.setattr(patcher, "_route_in_scope", lambda: False)
    with capture() as t:
        instrument_all(["starlette"])
        try:
            assert call(app, "GET", "/users/5").text == "5"
        finally:
            uninstrument_all()
    assert [s.name for s in t.spans()] == ["GET /users/{uid}"]


def test_malformed_headers_leave_the_request_to_the_app(t: Captured) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    sent: list[Any] = []

    async def go() -> None:
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x",)], "query_string": b""}

        async def receive() -> Any:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await Starlette(routes=[Route("/", hello)])(scope, receive, send)

    asyncio.run(go())
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"hi"
    assert t.value("infersight_sdk_errors_total", component="asgi") == 1.0


def test_health_probes_and_excluded_urls_get_no_span_and_no_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import FastAPI

    def app_with_probe() -> Any:
        app = FastAPI()

        @app.get("/healthz")
        def healthz() -> str:
            return "ok"

        @app.get("/items/{item_id}")
        def item(item_id: int) -> int:
            return item_id

        return app

    def served(**env: str) -> dict[str, float]:
        for name in ("OTEL_PYTHON_EXCLUDED_URLS", "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with capture() as t:
            instrument_all(["starlette", "fastapi"])
            try:
                app = app_with_probe()
                assert [call(app, "GET", p).status_code for p in ("/healthz", "/items/3")] == [200, 200]
                t.flush()
            finally:
                uninstrument_all()
            spans = {s.name for s in t.spans() if s.kind.name == "SERVER"}
            counted = {
                ep: t.value(
                    "infersight_request_duration_seconds_count",
                    model="unknown",
                    version="unknown",
                    endpoint=ep,
                    outcome="success",
                )
                or 0.0
                for ep in ("/healthz", "/items/{item_id}")
            }
        assert {name.split(" ", 1)[1] for name in spans} == {ep for ep, n in counted.items() if n}
        return counted

    assert served() == {"/healthz": 0.0, "/items/{item_id}": 1.0}  # a probe, excluded by default
    assert served(OTEL_PYTHON_FASTAPI_EXCLUDED_URLS="items") == {"/healthz": 1.0, "/items/{item_id}": 0.0}
    assert served(OTEL_PYTHON_EXCLUDED_URLS="items,healthz") == {"/healthz": 0.0, "/items/{item_id}": 0.0}


def test_excluded_url_decisions_are_remembered_by_all_of_the_urls_parts() -> None:
    """The request path remembers each URL's decision: by every part the URL is made of (the
    framework's own variable too), a part that can't be a key (a bytearray host) still decided."""
    from types import SimpleNamespace

    from infersight._excluded_urls import ExcludedUrls
    from infersight.instrumentation._asgi import _excluded

    rt = SimpleNamespace(excluded_urls=ExcludedUrls({"OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": r"secret=1,//probe/"}))

    def scope(path: str, query: bytes = b"", root: str = "") -> dict[str, Any]:
        return {"path": path, "query_string": query, "root_path": root, "scheme": "http"}

    cases = [
        ("fastapi", scope("/predict"), b"h", False),
        ("fastapi", scope("/predict", b"secret=1"), b"h", True),
        ("fastapi", scope("/predict"), b"h", False),  # the same URL again: still not excluded
        ("starlette", scope("/predict", b"secret=1"), b"h", False),  # another framework's variable
        ("fastapi", scope("/healthz"), b"h", False),  # the default list is replaced by the variable's
        ("fastapi", scope("/x"), b"probe", True),  # the host is part of the URL
        ("fastapi", scope("/x", root="/probe"), b"h", False),  # "//probe/" needs the host, not the root
        ("fastapi", scope("/x"), bytearray(b"probe"), True),  # unhashable: decided, not remembered
    ]
    for _ in range(2):  # the second round answers from what the first remembered
        assert [_excluded(rt, fw, sc, host) for fw, sc, host, _ in cases] == [want for *_, want in cases]
    assert len(rt.excluded_urls.seen) == len(cases) - 2  # one URL twice, one not hashable


EXPECTED_HTTP = (
    "http.request.method",
    "url.path",
    "http.route",
    "http.response.status_code",
    "error.type",
    "client.address",
    "http.request.body.size",
    "http.response.body.size",
)


def test_server_span_attributes_made_off_the_request_thread(t: Captured) -> None:
    """The HTTP attributes come from what the request kept (method, path, scheme, client, route,
    status, sizes); the request's own attributes win over them, and a malformed Content-Length
    is left out."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from infersight._records import current_request

    async def unavailable(request: Any) -> PlainTextResponse:
        rec = current_request.get()
        assert rec is not None
        rec.set_attr("url.scheme", "overridden")
        return PlainTextResponse("busy", status_code=503)

    app = Starlette(routes=[Route("/busy/{n}", unavailable, methods=["PUT"])])
    r = call(app, "PUT", "/busy/3", content="abc", headers={"content-length": "3"})
    assert r.status_code == 503
    call(app, "PUT", "/busy/4", content="abc", headers={"content-length": "3x"})
    first, second = t.spans("PUT /busy/{n}")
    attrs = dict(first.attributes or {})
    assert {k: attrs.get(k) for k in EXPECTED_HTTP} == {
        "http.request.method": "PUT",
        "url.path": "/busy/3",
        "http.route": "/busy/{n}",
        "http.response.status_code": 503,
        "error.type": "503",
        "client.address": "127.0.0.1",
        "http.request.body.size": 3,
        "http.response.body.size": 4,
    }
    assert attrs["url.scheme"] == "overridden"  # type: ignore[index]
    assert "http.request.body.size" not in (second.attributes or {})
    assert second.attributes["url.path"] == "/busy/4"  # type: ignore[index]
