"""gRPC streaming calls from an instrumented client (sync and aio channels): each stream is one
CLIENT span from the call to the stream's end, the server's span its child, one client latency
observation; a KServe v2 stream (Triton's ``ModelStreamInfer``) names its model in the endpoint;
beside OpenTelemetry's gRPC client instrumentation there is still one CLIENT span."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.trace import SpanKind

from infersight.conventions import TRITON
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

STREAM = "/layers.Echo/Chat"
LISTEN = "/layers.Echo/Listen"
KSERVE = "/" + TRITON.GRPC_INFER_METHODS[1]  # a stream method of Triton's name (raw bytes here)
PAUSE_S = 0.03  # between the server's replies: the stream outlasts any one message
REPLIES = 3


class Named:
    """A request with a ``model_name``, as tritonclient's ModelInferRequest has (bytes on the wire)."""

    def __init__(self, model: str) -> None:
        self.model_name = model

    def encode(self) -> bytes:
        return self.model_name.encode()


def _chat(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    for request in requests:
        for _ in range(REPLIES):
            time.sleep(PAUSE_S)
            yield request


def _listen(request: bytes, context: Any) -> Iterator[bytes]:
    for _ in range(REPLIES):
        time.sleep(PAUSE_S)
        yield request


async def _chat_async(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        for _ in range(REPLIES):
            await asyncio.sleep(PAUSE_S)
            yield request


def _handlers(chat: Any, listen: Any) -> Any:
    return grpc.method_handlers_generic_handler(
        "layers.Echo",
        {"Chat": grpc.stream_stream_rpc_method_handler(chat), "Listen": grpc.unary_stream_rpc_method_handler(listen)},
    )


def _kserve_handler(chat: Any) -> Any:
    service, method = KSERVE.lstrip("/").split("/")
    return grpc.method_handlers_generic_handler(service, {method: grpc.stream_stream_rpc_method_handler(chat)})


@pytest.fixture
def t() -> Iterator[Captured]:
    with capture() as captured:
        instrument_all(["grpc", "grpc_client"])
        try:
            yield captured
        finally:
            uninstrument_all()


def _sync_server() -> tuple[Any, int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), handlers=(_handlers(_chat, _listen), _kserve_handler(_chat))
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def _spans_of(t: Captured, kinds: set[SpanKind], count: int) -> list[Any]:
    deadline = time.monotonic() + 5  # the server's record reaches the worker after the stream ends
    while time.monotonic() < deadline:
        spans = [s for s in t.spans() if s.kind in kinds]
        if len(spans) >= count:
            return spans
        time.sleep(0.01)
    return [s for s in t.spans() if s.kind in kinds]


def assert_one_stream(t: Captured, port: int, method: str, endpoint: str, ours: bool = True) -> None:
    spans = _spans_of(t, {SpanKind.CLIENT, SpanKind.SERVER}, 2)
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(clients) == 1 and len(servers) == 1, [(s.name, s.kind) for s in t.spans()]
    client, server = clients[0], servers[0]
    assert (client.instrumentation_scope.name == "infersight") is ours
    # traceparent went with the call: the server's span is the client span's child.
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    # From the call to the stream's end: the server's replies, one after another, all inside it.
    assert client.end_time - client.start_time >= REPLIES * PAUSE_S * 1e9
    assert client.end_time >= server.end_time
    labels = {"target": f"127.0.0.1:{port}", "endpoint": endpoint, "outcome": "success"}
    assert t.value("infersight_client_request_duration_seconds_count", **labels) == 1, t.openmetrics()
    if ours:
        assert client.name == method.lstrip("/")


def test_sync_stream_stream_is_one_call(t: Captured) -> None:
    server, port = _sync_server()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            replies = list(channel.stream_stream(STREAM)(iter([b"a"]), timeout=10))
        assert replies == [b"a"] * REPLIES
    finally:
        server.stop(0).wait(5)
    assert_one_stream(t, port, STREAM, STREAM.lstrip("/"))


def test_sync_unary_stream_is_one_call(t: Captured) -> None:
    server, port = _sync_server()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert list(channel.unary_stream(LISTEN)(b"b", timeout=10)) == [b"b"] * REPLIES
    finally:
        server.stop(0).wait(5)
    assert_one_stream(t, port, LISTEN, LISTEN.lstrip("/"))


def test_a_kserve_stream_names_its_model(t: Captured) -> None:
    server, port = _sync_server()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = channel.stream_stream(KSERVE, request_serializer=Named.encode)
            assert list(stream(iter([Named("double")]), timeout=10)) == [b"double"] * REPLIES
    finally:
        server.stop(0).wait(5)
    assert_one_stream(t, port, KSERVE, f"{KSERVE.lstrip('/')}/double")


def test_a_stream_the_server_breaks_is_an_error_call(t: Captured) -> None:
    def broken(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        yield next(requests)
        context.abort(grpc.StatusCode.UNAVAILABLE, "gone")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=(_handlers(broken, _listen),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as raised:
            list(channel.stream_stream(STREAM)(iter([b"a", b"b"]), timeout=10))
    finally:
        server.stop(0).wait(5)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    labels = {"target": f"127.0.0.1:{port}", "endpoint": STREAM.lstrip("/"), "outcome": "error"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not t.value("infersight_client_request_duration_seconds_count", **labels):
        time.sleep(0.01)
    assert t.value("infersight_client_request_duration_seconds_count", **labels) == 1


def test_aio_stream_stream_is_one_call(t: Captured) -> None:
    async def run() -> int:
        server = grpc.aio.server(handlers=(_handlers(_chat_async, _listen), _kserve_handler(_chat_async)))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

                async def requests() -> AsyncIterator[Named]:
                    yield Named("double")

                stream = channel.stream_stream(KSERVE, request_serializer=Named.encode)
                replies = [reply async for reply in stream(requests(), timeout=10)]
                assert replies == [b"double"] * REPLIES
                await asyncio.sleep(0.05)  # the done callback's task reads the status
            return port
        finally:
            await server.stop(0)

    port = asyncio.run(asyncio.wait_for(run(), 20))
    assert_one_stream(t, port, KSERVE, f"{KSERVE.lstrip('/')}/double")


async def _aio_stream(port_box: list[int]) -> None:
    server = grpc.aio.server(handlers=(_handlers(_chat_async, _listen),))
    port = server.add_insecure_port("127.0.0.1:0")
    port_box.append(port)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

            async def requests() -> AsyncIterator[bytes]:
                yield b"a"

            replies = [reply async for reply in channel.stream_stream(STREAM)(requests(), timeout=10)]
            assert replies == [b"a"] * REPLIES
            await asyncio.sleep(0.05)  # the done callback's task reads the status
    finally:
        await server.stop(0)


@pytest.mark.parametrize("contrib_first", [True, False], ids=["contrib_first", "infersight_first"])
@pytest.mark.parametrize("library", ["grpc", "grpc_aio"])
def test_beside_the_contrib_client_a_stream_has_one_client_span(
    library: str, contrib_first: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcInstrumentorClient

    with capture() as t:
        monkeypatch.setattr(otel_trace, "get_tracer_provider", lambda: t.provider)
        contrib = GrpcInstrumentorClient() if library == "grpc" else GrpcAioInstrumentorClient()
        if contrib_first:
            contrib.instrument(tracer_provider=t.provider)
        instrument_all(["grpc", "grpc_client"])
        if not contrib_first:
            contrib.instrument(tracer_provider=t.provider)
        try:
            if library == "grpc":
                server, port = _sync_server()
                try:
                    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                        assert list(channel.stream_stream(STREAM)(iter([b"a"]), timeout=10)) == [b"a"] * REPLIES
                finally:
                    server.stop(0).wait(5)
            else:
                ports: list[int] = []
                asyncio.run(asyncio.wait_for(_aio_stream(ports), 20))
                port = ports[0]
            assert_one_stream(t, port, STREAM, STREAM.lstrip("/"), ours=False)
        finally:
            if contrib_first:
                uninstrument_all()
                contrib.uninstrument()
            else:
                contrib.uninstrument()
                uninstrument_all()
