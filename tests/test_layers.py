"""The layered view on loopback: instrumented servers answer with Server-Timing (gRPC: a
trailer), and instrumented clients (requests, httpx sync and async, gRPC sync and aio) record a
CLIENT span the server's span continues, their latency and the network's share of it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from tests.test_asgi import Uvicorn
from werkzeug.serving import make_server

import infersight
from infersight import _server_timing
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

CLIENTS = ["requests", "httpx", "grpc_client"]
SLEEP_S = 0.02  # the model stage: long enough that the server's total is well above zero


def flask_app() -> Any:
    from flask import Flask

    app = Flask("layers")

    @app.get("/predict")
    def predict() -> str:
        with infersight.preprocess(model="clf"):
            pass
        with infersight.model():
            time.sleep(SLEEP_S)
        return "ok"

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


class FlaskServer:
    def __init__(self) -> None:
        self.server = make_server("127.0.0.1", 0, flask_app(), threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_port}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def t() -> Iterator[Captured]:
    with capture() as captured:
        instrument_all(["flask", "starlette", "grpc", *CLIENTS])
        try:
            yield captured
        finally:
            uninstrument_all()


def one(spans: Any, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.kind is kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def assert_layers(t: Captured, target: str, endpoint: str, header: str | None, ours: bool = True) -> None:
    """One CLIENT span, the server's span its child, the client histogram and the remainder."""
    assert header is not None and "total;dur=" in header
    server_total = _server_timing.total_seconds(header)
    assert server_total is not None and server_total >= SLEEP_S
    deadline = time.monotonic() + 5  # the server's record reaches the worker after the response
    while time.monotonic() < deadline and len({s.kind for s in t.spans()} & {SpanKind.CLIENT, SpanKind.SERVER}) < 2:
        time.sleep(0.01)
    spans = t.spans()
    client, server = one(spans, SpanKind.CLIENT), one(spans, SpanKind.SERVER)
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.context.trace_id == client.context.trace_id
    assert (client.instrumentation_scope.name == "infersight") is ours  # type: ignore[union-attr]
    if ours:
        network = client.attributes[infersight.conventions.ATTR.CLIENT_NETWORK]  # type: ignore[index]
        client_total = (client.end_time - client.start_time) / 1e9  # type: ignore[operator]
        assert network == pytest.approx(max(0.0, client_total - server_total), abs=1e-3)
    labels = {"target": target, "endpoint": endpoint}
    assert t.value("infersight_client_request_duration_seconds_count", outcome="success", **labels) == 1
    assert t.value("infersight_client_network_seconds_count", **labels) == 1
    text = t.openmetrics()
    exemplar = f'span_id="{client.context.span_id:016x}",trace_id="{client.context.trace_id:032x}"'
    assert any(
        line.startswith("infersight_client_network_seconds_bucket") and exemplar in line for line in text.splitlines()
    )


def test_flask_header_and_requests_client(t: Captured) -> None:
    with FlaskServer() as base:
        response = requests.get(f"{base}/predict", timeout=10)
        header = response.headers.get("Server-Timing")
        assert header is not None and header.startswith("preprocess;dur=") and ", model;dur=" in header
        model_ms = float(header.split("model;dur=")[1].split(",")[0])
        assert model_ms >= SLEEP_S * 1e3
        assert_layers(t, base.removeprefix("http://"), "/predict", header)
        assert "Server-Timing" not in requests.get(f"{base}/healthz", timeout=10).headers


def test_httpx_sync_client(t: Captured) -> None:
    with FlaskServer() as base, httpx.Client() as client:
        header = client.get(f"{base}/predict").headers.get("server-timing")
        assert_layers(t, base.removeprefix("http://"), "/predict", header)


def test_asgi_header_and_httpx_async_client(t: Captured) -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/predict")
    async def predict() -> dict[str, str]:
        with infersight.model(model="clf"):
            await asyncio.sleep(SLEEP_S)
        return {"ok": "yes"}

    async def call(base: str) -> str | None:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{base}/predict")).headers.get("server-timing")

    with Uvicorn(app) as base:
        header = asyncio.run(asyncio.wait_for(call(base), 10))
        assert header is not None and header.startswith("model;dur=")
        assert_layers(t, base.removeprefix("http://"), "/predict", header)


def _say(request: bytes, context: Any) -> bytes:
    with infersight.model(model="clf"):
        time.sleep(SLEEP_S)
    context.set_trailing_metadata((("own-key", "kept"),))
    return request


async def _say_async(request: bytes, context: Any) -> bytes:
    with infersight.model(model="clf"):
        await asyncio.sleep(SLEEP_S)
    return request


METHOD = "/layers.Echo/Say"


def _grpc_sync_call() -> tuple[int, dict[str, Any]]:
    handler = grpc.method_handlers_generic_handler("layers.Echo", {"Say": grpc.unary_unary_rpc_method_handler(_say)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=(handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply, call = channel.unary_unary(METHOD).with_call(b"hi", timeout=10)
        assert reply == b"hi"
        return port, dict(call.trailing_metadata())
    finally:
        server.stop(0).wait(5)


async def _grpc_aio_call() -> tuple[int, dict[str, Any]]:
    handler = grpc.method_handlers_generic_handler(
        "layers.Echo", {"Say": grpc.unary_unary_rpc_method_handler(_say_async)}
    )
    server = grpc.aio.server(handlers=(handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(METHOD)(b"hi", timeout=10)
            assert await call == b"hi"
            return port, dict(await call.trailing_metadata())
    finally:
        await server.stop(0)


def test_grpc_sync_trailer_and_channel(t: Captured) -> None:
    port, trailing = _grpc_sync_call()
    assert trailing["own-key"] == "kept"  # the servicer's own trailers stay
    assert_layers(t, f"127.0.0.1:{port}", METHOD.lstrip("/"), trailing.get("server-timing"))


def test_grpc_aio_trailer_and_channel(t: Captured) -> None:
    port, trailing = asyncio.run(asyncio.wait_for(_grpc_aio_call(), 20))
    assert_layers(t, f"127.0.0.1:{port}", METHOD.lstrip("/"), trailing.get("server-timing"))


def test_the_setting_turns_the_header_off() -> None:
    with capture(server_timing=False) as t:
        instrument_all(["flask", "requests"])
        try:
            with FlaskServer() as base:
                response = requests.get(f"{base}/predict", timeout=10)
            assert "Server-Timing" not in response.headers
            target = base.removeprefix("http://")
            assert (
                t.value(
                    "infersight_client_request_duration_seconds_count",
                    target=target,
                    endpoint="/predict",
                    outcome="success",
                )
                == 1
            )
            assert t.value("infersight_client_network_seconds_count", target=target, endpoint="/predict") is None
        finally:
            uninstrument_all()


def test_client_errors_pass_through_unchanged_and_are_counted(t: Captured) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:9/nothing", timeout=2)  # the discard port: refused
    assert (
        t.value(
            "infersight_client_request_duration_seconds_count",
            target="127.0.0.1:9",
            endpoint="/nothing",
            outcome="error",
        )
        == 1
    )
    span = one(t.spans(), SpanKind.CLIENT)
    assert not span.status.is_ok


def test_calls_inside_otels_suppression_are_not_recorded(t: Captured) -> None:
    # An OTLP/HTTP exporter sends under suppress_instrumentation: recording its sends would make
    # spans to export, whose export makes more.
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with FlaskServer() as base:
        with suppress_instrumentation():
            requests.get(f"{base}/predict", timeout=10)
        labels = {"target": base.removeprefix("http://"), "endpoint": "/predict"}
        assert t.value("infersight_client_request_duration_seconds_count", outcome="success", **labels) is None
        requests.get(f"{base}/predict", timeout=10)
        assert t.value("infersight_client_request_duration_seconds_count", outcome="success", **labels) == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("preprocess;dur=0.41, model;dur=1.83, total;dur=2.61", 0.00261),
        ('total;desc="all";dur="12.5"', 0.0125),
        ("model;dur=3", None),
        ("total;dur=abc", None),
        ("total;dur=-1", None),
        (None, None),
    ],
)
def test_reading_the_total(header: str | None, seconds: float | None) -> None:
    assert _server_timing.total_seconds(header) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize("ns", [0, 4_999, 5_000, 14_999, 1_234_567, 1_995_000, 999_999, 12_345_678_901, -2_500_000])
def test_durations_written_as_milliseconds_with_two_decimals(ns: int) -> None:
    """The header's durations, written with integer arithmetic, read as the float formatting
    would write them (halves round up)."""
    assert _server_timing._ms(ns) == f"{ns / 1e6:.2f}"


def _contrib(library: str) -> Any:
    if library == "requests":
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        return RequestsInstrumentor()
    if library == "httpx":
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        return HTTPXClientInstrumentor()
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcInstrumentorClient

    return GrpcInstrumentorClient() if library == "grpc" else GrpcAioInstrumentorClient()


@pytest.mark.parametrize("contrib_first", [True, False], ids=["contrib_first", "infersight_first"])
@pytest.mark.parametrize("library", ["requests", "httpx", "grpc", "grpc_aio"])
def test_beside_the_contrib_client_there_is_one_client_span(
    library: str, contrib_first: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Theirs is the call's CLIENT span and the exemplar; infersight adds only its metrics."""
    with capture() as t:
        # otel-grpc's sync channel wrapper takes the global provider: this test's, for now.
        monkeypatch.setattr(otel_trace, "get_tracer_provider", lambda: t.provider)
        contrib = _contrib(library)
        ours = [
            "flask",
            "grpc",
            "requests" if library == "requests" else "httpx" if library == "httpx" else "grpc_client",
        ]
        if contrib_first:
            contrib.instrument(tracer_provider=t.provider)
        instrument_all(ours)
        if not contrib_first:
            contrib.instrument(tracer_provider=t.provider)
        try:
            if library in ("requests", "httpx"):
                with FlaskServer() as base:
                    get = requests.get if library == "requests" else httpx.get
                    header = get(f"{base}/predict", timeout=10).headers.get("server-timing")
                    assert_layers(t, base.removeprefix("http://"), "/predict", header, ours=False)
            elif library == "grpc":
                port, trailing = _grpc_sync_call()
                assert_layers(t, f"127.0.0.1:{port}", METHOD.lstrip("/"), trailing.get("server-timing"), ours=False)
            else:
                port, trailing = asyncio.run(asyncio.wait_for(_grpc_aio_call(), 20))
                assert_layers(t, f"127.0.0.1:{port}", METHOD.lstrip("/"), trailing.get("server-timing"), ours=False)
        finally:
            if contrib_first:  # undone in reverse: each side's unwrap takes off the outer wrapper
                uninstrument_all()
                contrib.uninstrument()
            else:
                contrib.uninstrument()
                uninstrument_all()


def test_uninstrument_takes_off_only_infersight_wrapper_beneath_the_contrib_one() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    from infersight.instrumentation._common import is_wrapped

    contrib = HTTPXClientInstrumentor()
    with capture():
        instrument_all(["httpx"])
        contrib.instrument()
        try:
            uninstrument_all()  # ours is the inner wrapper here
            current = vars(httpx.HTTPTransport)["handle_request"]
            assert is_wrapped(current) and not is_wrapped(current.__wrapped__)  # theirs alone
        finally:
            contrib.uninstrument()
    assert not is_wrapped(vars(httpx.HTTPTransport)["handle_request"])


def test_a_traced_call_into_a_flask_app_otel_flask_traces_has_one_server_span() -> None:
    """The client's traceparent reaches both server instrumentations: the SERVER span is
    otel-flask's, the child of the client's span, with infersight's stages beneath it."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    with capture() as t:
        instrument_all(["flask", "requests"])
        app = flask_app()
        FlaskInstrumentor().instrument_app(app, tracer_provider=t.provider)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            assert requests.get(f"http://127.0.0.1:{server.server_port}/predict", timeout=10).ok
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(s.name == "model" for s in t.spans()):
                time.sleep(0.01)
            spans = t.spans()
            client, served = one(spans, SpanKind.CLIENT), one(spans, SpanKind.SERVER)
            assert served.instrumentation_scope.name != "infersight"  # type: ignore[union-attr]
            assert served.parent is not None and served.parent.span_id == client.context.span_id
            (model,) = [s for s in spans if s.name == "model"]
            assert model.parent is not None and model.parent.span_id == served.context.span_id
        finally:
            server.shutdown()
            thread.join(5)
            FlaskInstrumentor().uninstrument_app(app)
            uninstrument_all()


def test_the_value_sums_a_repeated_stage_and_keeps_names_to_tokens() -> None:
    from infersight._records import RequestRecord, StageRecord

    rec = RequestRecord("GET", SpanKind.SERVER.value, "/", 1, 0, True)
    rec.start_ns = 0
    for start, end in ((1_000_000, 2_000_000), (3_000_000, 5_500_000)):
        stage = StageRecord("tok enize", None, rec, rec.span_id, 1, True)
        stage.start_ns, stage.end_ns = start, end
        rec.stages.append(stage)
    assert _server_timing.value(rec, at_ns=7_000_000) == "tok_enize;dur=3.50, total;dur=7.00"
    assert _server_timing.total_seconds(_server_timing.value(rec, at_ns=7_000_000)) == pytest.approx(0.007)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["preprocess", "model", "post process", "total", "ü"]),
            st.integers(-3_000_000, 50_000_000),  # a duration; negative: clocks of two threads
            st.booleans(),  # finished yet
        ),
        max_size=6,
    )
)
def test_the_value_is_each_finished_stage_summed_by_name_then_the_total(
    stages: list[tuple[str, int, bool]],
) -> None:
    from infersight._records import RequestRecord, StageRecord

    rec = RequestRecord("GET", SpanKind.SERVER.value, "/", 1, 0, True)
    rec.start_ns = 1_000
    spent: dict[str, int] = {}
    for name, duration, finished in stages:
        stage = StageRecord(name, None, rec, rec.span_id, 1, True)
        stage.start_ns, stage.end_ns = 10_000_000, (10_000_000 + duration if finished else 0)
        rec.stages.append(stage)
        if finished:
            token = _server_timing._token(name)
            spent[token] = spent.get(token, 0) + duration
    spent.pop("total", None)
    spent["total"] = 99_000_000 - rec.start_ns
    expected = ", ".join(f"{name};dur={_server_timing._ms(ns)}" for name, ns in spent.items())
    assert _server_timing.value(rec, at_ns=99_000_000) == expected


def _missing(request: bytes, context: Any) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
    return b""


async def _missing_async(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such model")
    return b""


def test_grpc_client_errors_reach_the_caller_unchanged(t: Captured) -> None:
    def handler(fn: Any) -> Any:
        return grpc.method_handlers_generic_handler("layers.Echo", {"Say": grpc.unary_unary_rpc_method_handler(fn)})

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=(handler(_missing),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as sync_error:
            channel.unary_unary(METHOD)(b"hi", timeout=10)
    finally:
        server.stop(0).wait(5)
    assert sync_error.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]

    async def aio() -> tuple[int, Any]:
        aio_server = grpc.aio.server(handlers=(handler(_missing_async),))
        aio_port = aio_server.add_insecure_port("127.0.0.1:0")
        await aio_server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{aio_port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as aio_error:
                    await channel.unary_unary(METHOD)(b"hi", timeout=10)
                return aio_port, aio_error.value.code()
        finally:
            await aio_server.stop(0)

    aio_port, code = asyncio.run(asyncio.wait_for(aio(), 20))
    assert code is grpc.StatusCode.NOT_FOUND
    for p in (port, aio_port):
        labels = {"target": f"127.0.0.1:{p}", "endpoint": METHOD.lstrip("/"), "outcome": "error"}
        assert t.value("infersight_client_request_duration_seconds_count", **labels) == 1
    clients = [s for s in t.spans() if s.kind is SpanKind.CLIENT]
    assert [s.attributes["rpc.grpc.status_code"] for s in clients] == [5, 5]  # type: ignore[index]
