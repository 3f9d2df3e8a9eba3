"""gRPC over real loopback servers (sync ``grpc.server`` and ``grpc.aio.server``): the KServe v2
example servicer with the tiny pipeline, trace context from metadata, status codes, streams,
the metrics port; and the example server run as users run it, under examples/load/grpc_load.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import requests
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import infersight
from infersight import _errors
from infersight.conventions import ATTR, METRIC, STAGES
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

ROOT = Path(__file__).resolve().parent.parent
GRPC_EXAMPLE = ROOT / "examples" / "grpc_server"
LOAD = ROOT / "examples" / "load"
for _path in (GRPC_EXAMPLE, LOAD):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import grpc_load  # noqa: E402
import grpc_predict_v2_pb2 as pb  # noqa: E402
import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from tests.support.netproxy import DelayProxy  # noqa: E402

from stack import free_port  # noqa: E402

PROXY_DELAY_S = 0.1

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),)
SERVICE = "inference.GRPCInferenceService"
INFER = f"{SERVICE}/ModelInfer"
MODEL = "tiny-sentiment"
T = TypeVar("T")


@pytest.fixture(scope="module")
def example() -> Iterator[types.ModuleType]:
    """examples/grpc_server/server.py, imported without its ``import infersight.auto`` line: the
    tests instrument explicitly, into a captured runtime (the subprocess test runs the line)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "infersight.auto", types.ModuleType("infersight.auto"))
        import server

        yield server
        sys.modules.pop("server", None)


@pytest.fixture(scope="module")
def model(example: types.ModuleType, tiny_model_dir: Path) -> Any:
    return example.SentimentModel(str(tiny_model_dir))  # its dir name is MODEL


@pytest.fixture
def telemetry() -> Iterator[Captured]:
    with capture(metrics_port=0) as t:
        instrument_all(["grpc", "transformers"])
        try:
            yield t
        finally:
            uninstrument_all()


@contextlib.contextmanager
def sync_server(*servicers: Any, handlers: Any = (), interceptors: Any = None) -> Iterator[grpc.Channel]:
    """A thread-pool server on a free loopback port and a channel to it; both always closed."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    for servicer in servicers:
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers(tuple(handlers))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(0).wait(5)


@contextlib.asynccontextmanager
async def aio_server(*servicers: Any, handlers: Any = ()) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    for servicer in servicers:
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers(tuple(handlers))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


def run_async(coro: Awaitable[T], timeout_s: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))  # type: ignore[arg-type]


def infer_request(*texts: str) -> Any:
    request = pb.ModelInferRequest(model_name=MODEL, id="req-1")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    tensor.contents.bytes_contents.extend(t.encode() for t in texts)
    return request


def only(spans: list[ReadableSpan] | Any, name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one {name!r} span, got {[s.name for s in spans]}"
    return found[0]


def count(t: Captured, endpoint: str, outcome: str, model: str = "unknown") -> float | None:
    return t.value(
        f"{METRIC.REQUEST_DURATION.name}_count", model=model, version="unknown", endpoint=endpoint, outcome=outcome
    )


def assert_server_span_with_stages(t: Captured) -> ReadableSpan:
    """The ModelInfer span continues the client's trace; the pipeline's stages are its children."""
    spans = t.spans()
    server = only(spans, INFER)
    assert server.kind == SpanKind.SERVER
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == PARENT_ID
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    attrs = server.attributes or {}
    assert attrs[ATTR.RPC_SYSTEM] == "grpc"
    assert attrs[ATTR.RPC_SERVICE] == SERVICE
    assert attrs[ATTR.RPC_METHOD] == "ModelInfer"
    assert attrs[ATTR.RPC_GRPC_STATUS_CODE] == 0
    assert attrs[ATTR.MODEL_NAME] == MODEL
    assert server.status.status_code == StatusCode.UNSET
    for stage in STAGES:
        child = only(spans, stage)
        assert child.parent is not None and child.parent.span_id == server.context.span_id
        assert child.context.trace_id == server.context.trace_id
        assert server.start_time <= child.start_time <= child.end_time <= server.end_time  # type: ignore[operator]
    return server


# ---- sync grpc.server --------------------------------------------------------------------


def test_sync_model_infer_continues_the_trace_with_stage_children(
    telemetry: Captured, example: Any, model: Any
) -> None:
    request = infer_request("good great excellent")
    with sync_server(example.InferenceServicer(model)) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=TRACEPARENT, timeout=10)

    assert response.id == "req-1" and response.model_name == MODEL
    label, score = response.outputs
    assert (label.name, label.datatype, list(label.shape)) == ("label", "BYTES", [1])
    assert label.contents.bytes_contents[0] in (b"POSITIVE", b"NEGATIVE")
    assert (score.name, score.datatype) == ("score", "FP32")
    assert 0.5 <= score.contents.fp32_contents[0] <= 1.0
    assert_server_span_with_stages(telemetry)
    assert count(telemetry, INFER, "success", MODEL) == 1
    assert count(telemetry, INFER, "error", MODEL) is None
    # Message sizes, as the server saw them, feed the payload histogram.
    payload = f"{METRIC.PAYLOAD_SIZE.name}_sum"
    assert telemetry.value(payload, model=MODEL, direction="request") == request.ByteSize()
    assert telemetry.value(payload, model=MODEL, direction="response") == response.ByteSize()


class BrokenServicer(pb_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise ValueError("servicer bug")

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.set_code(grpc.StatusCode.UNAVAILABLE)  # a status without an exception
        context.set_details("warming up")
        return pb.ServerReadyResponse(ready=False)

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        time.sleep(0.3)  # slower than the client's deadline: the answer comes too late
        return pb.ServerMetadataResponse(name="late")


def test_sync_status_codes_and_exceptions(telemetry: Captured, example: Any, model: Any) -> None:
    with sync_server(BrokenServicer()) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNKNOWN  # what grpc makes of the exception
        with pytest.raises(grpc.RpcError) as raised:
            stub.ServerReady(pb.ServerReadyRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as raised:
            stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=0.1)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with sync_server(example.InferenceServicer(model)) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:  # context.abort(NOT_FOUND): the client's error
            stub.ModelMetadata(pb.ModelMetadataRequest(name="no-such-model"), timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        bad = pb.ModelInferRequest(model_name=MODEL)
        bad.inputs.add(name="text", datatype="FP32", shape=[1])
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(bad, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # The late call's servicer returns after the client gave up; wait for its record.
    end = time.monotonic() + 5
    while count(telemetry, f"{SERVICE}/ServerMetadata", "error") is None and time.monotonic() < end:
        time.sleep(0.05)
    spans = telemetry.spans()
    live = only(spans, f"{SERVICE}/ServerLive")
    assert live.attributes[ATTR.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.UNKNOWN.value[0]  # type: ignore[index]
    assert live.status.status_code == StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in live.events] == ["ValueError"]  # type: ignore[index]
    ready = only(spans, f"{SERVICE}/ServerReady")
    assert ready.attributes[ATTR.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.UNAVAILABLE.value[0]  # type: ignore[index]
    assert ready.attributes[ATTR.ERROR_TYPE] == "UNAVAILABLE"  # type: ignore[index]
    assert ready.status.status_code == StatusCode.ERROR and not ready.events
    late = only(spans, f"{SERVICE}/ServerMetadata")
    assert late.attributes[ATTR.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]  # type: ignore[index]
    assert late.status.status_code == StatusCode.ERROR
    metadata = only(spans, f"{SERVICE}/ModelMetadata")
    assert metadata.attributes[ATTR.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.NOT_FOUND.value[0]  # type: ignore[index]
    assert metadata.status.status_code == StatusCode.UNSET and not metadata.events
    invalid = only(spans, INFER)
    assert invalid.attributes[ATTR.RPC_GRPC_STATUS_CODE] == grpc.StatusCode.INVALID_ARGUMENT.value[0]  # type: ignore[index]
    # OTel semconv for servers: UNKNOWN/UNAVAILABLE are the server's errors, NOT_FOUND and
    # INVALID_ARGUMENT the client's, so they don't burn the server's error budget.
    assert count(telemetry, f"{SERVICE}/ServerLive", "error") == 1
    assert count(telemetry, f"{SERVICE}/ServerReady", "error") == 1
    assert count(telemetry, f"{SERVICE}/ServerMetadata", "error") == 1
    assert count(telemetry, f"{SERVICE}/ModelMetadata", "success") == 1
    assert count(telemetry, INFER, "success") == 1


class RecordingInterceptor(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)

        def behavior(request: Any, context: Any) -> Any:
            # Ours runs first (outermost): the request record is already open in here.
            self.seen.append((handler_call_details.method, infersight.current_request_handle() is not None))
            return handler.unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(behavior, handler.request_deserializer, handler.response_serializer)


class LiveServicer(pb_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)


def test_user_interceptors_are_kept_and_uninstrument_stops_new_servers(telemetry: Captured) -> None:
    mine = RecordingInterceptor()
    with sync_server(LiveServicer(), interceptors=[mine]) as channel:
        assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert mine.seen == [(f"/{SERVICE}/ServerLive", True)]
    assert count(telemetry, f"{SERVICE}/ServerLive", "success") == 1

    uninstrument_all()
    with sync_server(LiveServicer()) as channel:
        assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert count(telemetry, f"{SERVICE}/ServerLive", "success") == 1  # no second observation


# ---- streams (generic handlers, bytes in and out) -----------------------------------------


def _identity(data: bytes) -> bytes:
    return data


def _stream_handlers(mode: str) -> Any:
    if mode == "sync":

        def count_up(request: bytes, context: Any) -> Iterator[bytes]:
            for i in range(int(request)):
                with infersight.stage("step"):
                    yield str(i).encode()

        def total(requests_: Iterator[bytes], context: Any) -> bytes:
            with infersight.stage("step"):
                return str(sum(int(r) for r in requests_)).encode()

        def echo(requests_: Iterator[bytes], context: Any) -> Iterator[bytes]:
            for r in requests_:
                yield r.upper()

    else:

        async def count_up(request: bytes, context: Any) -> AsyncIterator[bytes]:  # type: ignore[misc]
            for i in range(int(request)):
                with infersight.stage("step"):
                    yield str(i).encode()

        async def total(requests_: AsyncIterator[bytes], context: Any) -> bytes:  # type: ignore[misc]
            with infersight.stage("step"):
                return str(sum([int(r) async for r in requests_])).encode()

        async def echo(requests_: AsyncIterator[bytes], context: Any) -> None:  # type: ignore[misc]
            async for r in requests_:  # the writer API: a coroutine that writes, not a generator
                await context.write(r.upper())

    return grpc.method_handlers_generic_handler(
        "test.Streams",
        {
            "Count": grpc.unary_stream_rpc_method_handler(count_up, _identity, _identity),
            "Total": grpc.stream_unary_rpc_method_handler(total, _identity, _identity),
            "Echo": grpc.stream_stream_rpc_method_handler(echo, _identity, _identity),
        },
    )


def _assert_stream_spans(t: Captured) -> None:
    spans = t.spans()
    for method in ("Count", "Total", "Echo"):
        span = only(spans, f"test.Streams/{method}")
        assert span.kind == SpanKind.SERVER
        assert span.attributes[ATTR.RPC_GRPC_STATUS_CODE] == 0  # type: ignore[index]
        assert count(t, f"test.Streams/{method}", "success") == 1
    count_span, total_span = only(spans, "test.Streams/Count"), only(spans, "test.Streams/Total")
    steps = [s for s in spans if s.name == "step"]
    # One record spans the whole stream: every step nests under its RPC's span.
    assert sorted(s.parent.span_id for s in steps) == sorted(  # type: ignore[union-attr]
        [count_span.context.span_id] * 3 + [total_span.context.span_id]
    )


def test_sync_streams_are_one_span_per_rpc(telemetry: Captured) -> None:
    with sync_server(handlers=[_stream_handlers("sync")]) as channel:
        assert list(channel.unary_stream("/test.Streams/Count")(b"3", timeout=10)) == [b"0", b"1", b"2"]
        assert channel.stream_unary("/test.Streams/Total")(iter([b"1", b"2", b"4"]), timeout=10) == b"7"
        assert list(channel.stream_stream("/test.Streams/Echo")(iter([b"a", b"b"]), timeout=10)) == [b"A", b"B"]
    _assert_stream_spans(telemetry)


def test_aio_streams_are_one_span_per_rpc(telemetry: Captured) -> None:
    async def scenario() -> None:
        async with aio_server(handlers=[_stream_handlers("aio")]) as channel:
            got = [r async for r in channel.unary_stream("/test.Streams/Count")(b"3", timeout=10)]
            assert got == [b"0", b"1", b"2"]
            assert await channel.stream_unary("/test.Streams/Total")(iter([b"1", b"2", b"4"]), timeout=10) == b"7"
            echoed = [r async for r in channel.stream_stream("/test.Streams/Echo")(iter([b"a", b"b"]), timeout=10)]
            assert echoed == [b"A", b"B"]

    run_async(scenario())
    _assert_stream_spans(telemetry)


# ---- grpc.aio.server ---------------------------------------------------------------------


def test_aio_model_infer_continues_the_trace_with_stage_children(telemetry: Captured, example: Any, model: Any) -> None:
    class AioBroken(example.AioInferenceServicer):  # type: ignore[name-defined,misc]
        async def ServerLive(self, request: Any, context: Any) -> Any:
            raise ValueError("async servicer bug")

    # Raw contents, as Triton / KServe client libraries send them.
    request = grpc_load.build_request(["awful bad slow"], MODEL, raw=True)

    async def scenario() -> Any:
        async with aio_server(AioBroken(model)) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            response = await stub.ModelInfer(request, metadata=TRACEPARENT, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNKNOWN
            return response

    response = run_async(scenario())
    labels = example.decode_bytes_tensor(response.raw_output_contents[0])
    assert len(labels) == 1 and labels[0] in (b"POSITIVE", b"NEGATIVE")
    assert len(response.raw_output_contents[1]) == 4  # one FP32
    # The servicer ran the pipeline in a worker thread (asyncio.to_thread): stages still nest.
    assert_server_span_with_stages(telemetry)
    assert count(telemetry, INFER, "success", MODEL) == 1
    live = only(telemetry.spans(), f"{SERVICE}/ServerLive")
    assert live.status.status_code == StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in live.events] == ["ValueError"]  # type: ignore[index]
    assert count(telemetry, f"{SERVICE}/ServerLive", "error") == 1


# ---- the metrics port --------------------------------------------------------------------


def test_first_server_starts_the_metrics_port_and_a_taken_port_is_reported_once() -> None:
    port = free_port()
    with capture(metrics_port=port, metrics_addr="127.0.0.1"):
        instrument_all(["grpc"])
        try:
            with sync_server(LiveServicer()) as channel, sync_server(LiveServicer()):
                pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10)
                time.sleep(0.3)  # the worker flushes every 0.1 s
                body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert f'endpoint="{SERVICE}/ServerLive"' in body
        finally:
            uninstrument_all()

    with socket.socket() as taken:  # another worker process already serves this port
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        before = _errors.counts().get("metrics_server", 0)
        with capture(metrics_port=taken.getsockname()[1], metrics_addr="127.0.0.1"):
            instrument_all(["grpc"])
            try:
                with sync_server(LiveServicer()) as channel, sync_server(LiveServicer()):
                    assert (
                        pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10).live
                    )  # gRPC serves regardless
            finally:
                uninstrument_all()
        assert _errors.counts().get("metrics_server", 0) == before + 1


# ---- the example as users run it ---------------------------------------------------------


def test_example_server_under_grpc_load(tiny_model_dir: Path, tmp_path: Path) -> None:
    """server.py as users run it (the default sync server; --aio is covered in-process above)."""
    grpc_port, metrics_port = free_port(), free_port()
    env = dict(
        os.environ,
        MODEL=str(tiny_model_dir),
        OTEL_TRACES_EXPORTER="none",
        INFERSIGHT_GPU="off",
        INFERSIGHT_METRICS_PORT=str(metrics_port),
        INFERSIGHT_METRICS_ADDR="127.0.0.1",
        OMP_NUM_THREADS="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    argv = [sys.executable, str(GRPC_EXAMPLE / "server.py"), "--port", str(grpc_port)]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        try:
            ready = channel.unary_unary(
                f"/{SERVICE}/ServerReady",
                request_serializer=pb.ServerReadyRequest.SerializeToString,
                response_deserializer=pb.ServerReadyResponse.FromString,
            )
            assert ready(pb.ServerReadyRequest(), wait_for_ready=True, timeout=90).ready, log.read_text()
        finally:
            channel.close()
        result = grpc_load.run(
            f"127.0.0.1:{grpc_port}",
            duration_s=1.5,
            rps=12,
            concurrency=2,
            mode="shift",
            traceparent=True,
            timeout_s=10,
        )
        assert result.requests >= 5 and result.errors == 0, result.summary()
        time.sleep(0.4)  # the SDK flushes records every 0.1 s
        body = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        line = next(
            (
                ln
                for ln in body.splitlines()
                if ln.startswith(f"{METRIC.REQUEST_DURATION.name}_count")
                and f'endpoint="{INFER}"' in ln
                and 'outcome="success"' in ln
            ),
            None,
        )
        assert line is not None, body[-3000:]
        assert f'model="{MODEL}"' in line
        assert float(line.rsplit(" ", 1)[1]) == result.requests
        # The load generator puts the server's own time (its server-timing trailer) beside the
        # client's; through a proxy that delays each crossing, only the client's grows.
        assert len(result.server_s) == result.requests, result.summary()
        assert "server's own time (Server-Timing" in result.summary()
        with DelayProxy(("127.0.0.1", grpc_port), delay_s=PROXY_DELAY_S) as proxy:
            delayed = grpc_load.run(f"127.0.0.1:{proxy.port}", duration_s=1.5, rps=8, concurrency=2, timeout_s=10)
        assert delayed.requests >= 3 and delayed.errors == 0 and len(delayed.server_s) == delayed.requests
        gap = delayed.quantile(0.5) - delayed.server_quantile(0.5)
        assert gap > PROXY_DELAY_S, delayed.summary()  # a call crosses the proxy twice
        assert delayed.server_quantile(0.5) < result.quantile(0.99) + PROXY_DELAY_S, (
            result.summary(),
            delayed.summary(),
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_generated_modules_match_the_proto(tmp_path: Path) -> None:
    """The committed *_pb2*.py are what examples/grpc_server/gen_proto.sh makes of the .proto."""
    from grpc_tools import protoc

    proto = GRPC_EXAMPLE / "grpc_predict_v2.proto"
    rc = protoc.main(
        ["protoc", f"-I{GRPC_EXAMPLE}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", str(proto)]
    )
    assert rc == 0
    for name in ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2_grpc.py"):
        assert (tmp_path / name).read_text() == (GRPC_EXAMPLE / name).read_text(), f"run gen_proto.sh: {name} is stale"
