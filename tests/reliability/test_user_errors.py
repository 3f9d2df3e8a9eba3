"""Errors inside user code: exceptions in stages, abandoned generators and cancelled asyncio tasks
leave every span closed, the error recorded, and the user's exception unchanged.

Complements tests/test_stages.py (one decorated stage raising, one generator closed, one task
cancelled) with every stage form, garbage-collected generators, cancellation identity and Flask
streams abandoned by the client.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import infersight
from infersight import _errors
from infersight._records import current_request, current_stage
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

ABANDONED = "infersight.generator.abandoned"


class Boom(Exception):
    pass


class Unprintable(Exception):
    """Its message can't be rendered: the SDK must still record it and close the spans."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


@pytest.fixture
def t(caplog: pytest.LogCaptureFixture) -> Iterator[Captured]:
    """A captured runtime; fails the test if the SDK counted an internal error or anything
    (ours or OTel's) logged at ERROR: user errors are the user's, not the SDK's."""
    _errors.reset()
    with capture() as captured, caplog.at_level(logging.WARNING):
        yield captured
        gc.collect()  # finalise what the test abandoned while the runtime is still up
        captured.flush()
    assert _errors.counts() == {}
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], noisy
    assert current_request.get() is None and current_stage.get() is None  # nothing leaked


def one(t: Captured, name: str) -> ReadableSpan:
    spans = t.spans(name)
    assert len(spans) == 1, [s.name for s in t.spans()]
    return spans[0]


def assert_closed(t: Captured) -> list[ReadableSpan]:
    """Every emitted span has an end, not before its start."""
    spans = list(t.spans())
    for span in spans:
        assert span.end_time is not None and span.start_time is not None
        assert span.end_time >= span.start_time, span.name
    return spans


def assert_error_recorded(span: ReadableSpan, exc_type: str) -> None:
    assert span.status.status_code is StatusCode.ERROR, span.name
    assert span.attributes is not None and span.attributes["error.type"] == exc_type
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["exception.type"] == exc_type


def assert_unchanged(raised: BaseException, err: BaseException, args: tuple[Any, ...]) -> None:
    """The same object, its arguments, chain and notes untouched by the SDK."""
    assert raised is err
    assert err.args == args
    assert err.__cause__ is None and err.__context__ is None
    assert not hasattr(err, "__notes__")


# ---- exceptions in every stage form --------------------------------------------------------


def _raise(err: BaseException) -> None:
    raise err


def _sync_forms(name: str) -> dict[str, Callable[[BaseException], Any]]:
    factory = {
        "preprocess": infersight.preprocess,
        "model": infersight.model,
        "postprocess": infersight.postprocess,
    }.get(name)

    def make() -> Any:
        return factory() if factory is not None else infersight.stage(name)

    def decorated(err: BaseException) -> None:
        make()(_raise)(err)

    def bare_decorator(err: BaseException) -> None:
        assert factory is not None
        factory(_raise)(err)

    def context_manager(err: BaseException) -> None:
        with make():
            raise err

    def generator(err: BaseException) -> None:
        @make()
        def gen() -> Iterator[int]:
            yield 1
            raise err

        assert list(gen()) == [1]  # raises before the list is built

    return {
        "decorated": decorated,
        "bare_decorator": bare_decorator,
        "context_manager": context_manager,
        "generator": generator,
    }


def _async_forms(name: str) -> dict[str, Callable[[BaseException], Any]]:
    def make() -> Any:
        return infersight.stage(name)

    async def coroutine(err: BaseException) -> None:
        @make()
        async def f() -> None:
            await asyncio.sleep(0)
            raise err

        await f()

    async def async_context_manager(err: BaseException) -> None:
        async with make():
            await asyncio.sleep(0)
            raise err

    async def async_generator(err: BaseException) -> None:
        @make()
        async def agen() -> AsyncIterator[int]:
            yield 1
            raise err

        assert [i async for i in agen()] == [1]

    return {"coroutine": coroutine, "async_context_manager": async_context_manager, "async_generator": async_generator}


STAGES = ["preprocess", "model", "postprocess", "tokenize"]
SYNC = ["decorated", "bare_decorator", "context_manager", "generator"]
ASYNC = ["coroutine", "async_context_manager", "async_generator"]


@pytest.mark.parametrize(
    ("stage", "form"),
    [(stage, form) for stage in STAGES for form in SYNC if (stage, form) != ("tokenize", "bare_decorator")],
)
def test_exception_in_a_sync_stage(t: Captured, stage: str, form: str) -> None:
    err = Boom("bad input", 7)
    with pytest.raises(Boom) as info, infersight.request(model="m"):
        _sync_forms(stage)[form](err)
    assert_unchanged(info.value, err, ("bad input", 7))
    spans = assert_closed(t)
    assert sorted(s.name for s in spans) == sorted([stage, "inference"])
    assert_error_recorded(one(t, stage), "Boom")
    assert_error_recorded(one(t, "inference"), "Boom")
    assert one(t, stage).parent.span_id == one(t, "inference").context.span_id  # type: ignore[union-attr]
    assert t.value("infersight_errors_total", model="m", stage=stage, exception_type="Boom") == 1.0
    assert (
        t.value(
            "infersight_request_duration_seconds_count",
            model="m",
            version="unknown",
            endpoint="inference",
            outcome="error",
        )
        == 1.0
    )


@pytest.mark.parametrize("form", ASYNC)
def test_exception_in_an_async_stage(t: Captured, form: str) -> None:
    err = Boom("async bad input")

    async def main() -> None:
        async with infersight.request(model="m"):
            await _async_forms("model")[form](err)

    with pytest.raises(Boom) as info:
        asyncio.run(asyncio.wait_for(main(), 10))
    assert_unchanged(info.value, err, ("async bad input",))
    assert sorted(s.name for s in assert_closed(t)) == ["inference", "model"]
    assert_error_recorded(one(t, "model"), "Boom")
    assert_error_recorded(one(t, "inference"), "Boom")


@pytest.mark.parametrize(
    "exc",
    [KeyboardInterrupt(), SystemExit(3), Unprintable("x")],
    ids=["KeyboardInterrupt", "SystemExit", "unprintable"],
)
def test_base_exceptions_and_unprintable_ones_are_recorded(t: Captured, exc: BaseException) -> None:
    """Not only Exception subclasses; and an exception whose str() raises still gets its spans."""
    with pytest.raises(type(exc)) as info, infersight.request(model="m"), infersight.model():
        raise exc
    assert info.value is exc
    assert sorted(s.name for s in assert_closed(t)) == ["inference", "model"]
    name = type(exc).__qualname__
    assert_error_recorded(one(t, "model"), name)
    assert_error_recorded(one(t, "inference"), name)
    print(f"{name}: message recorded as {one(t, 'model').events[0].attributes['exception.message']!r}")  # type: ignore[index]


def test_error_in_the_outer_of_nested_stages_after_the_inner_closed(t: Captured) -> None:
    with pytest.raises(Boom), infersight.request(model="m"), infersight.model():
        with infersight.stage("kernel"):
            pass
        raise Boom("after the kernel")
    assert one(t, "kernel").status.status_code is StatusCode.UNSET
    assert_error_recorded(one(t, "model"), "Boom")
    assert len(assert_closed(t)) == 3


# ---- generators abandoned half-way --------------------------------------------------------


def _stream(events: list[str]) -> Callable[[], Iterator[int]]:
    @infersight.postprocess(model="m")
    def tokens() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            events.append("user finally ran")

    return tokens


def assert_abandoned(t: Captured, events: list[str]) -> ReadableSpan:
    span = one(t, "postprocess")
    assert span.status.status_code is StatusCode.UNSET and not span.events
    assert span.attributes is not None and span.attributes[ABANDONED] is True
    assert events == ["user finally ran"]
    assert_closed(t)
    return span


def test_generator_garbage_collected_half_way(t: Captured) -> None:
    events: list[str] = []
    with infersight.request(model="m"):
        gen = _stream(events)()
        assert [next(gen) for _ in range(3)] == [0, 1, 2]
        del gen
        gc.collect()
    span = assert_abandoned(t, events)
    assert span.parent.span_id == one(t, "inference").context.span_id  # type: ignore[union-attr]


def test_generator_outliving_its_request_is_closed_by_gc_in_another_thread(t: Captured) -> None:
    """The request ended first; the stream is dropped by another thread (another context)."""
    events: list[str] = []
    holder: list[Any] = []
    with infersight.request(model="m"):
        holder.append(_stream(events)())
        next(holder[0])
    dropper = threading.Thread(target=lambda: (holder.clear(), gc.collect()))
    dropper.start()
    dropper.join(10)
    span = assert_abandoned(t, events)
    request = one(t, "inference")
    assert span.parent.span_id == request.context.span_id  # type: ignore[union-attr]
    assert span.context.trace_id == request.context.trace_id


def test_generator_never_started_makes_no_span(t: Captured) -> None:
    events: list[str] = []
    with infersight.request(model="m"):
        gen = _stream(events)()
        del gen
        gc.collect()
    assert [s.name for s in t.spans()] == ["inference"]


def _undecorated(events: list[str]) -> Iterator[int]:
    """A user's own generator with a ``with`` stage inside: nothing wraps its steps."""
    with infersight.postprocess(model="m"):
        try:
            yield from range(1000)
        finally:
            events.append("user finally ran")


@pytest.mark.parametrize("kind", ["decorated", "undecorated"])
def test_generator_dropped_after_its_request_leaves_later_requests_alone(t: Captured, kind: str) -> None:
    """Closing it must not bring back the finished request's context: the next request and a
    stage outside any request each start a trace of their own."""
    events: list[str] = []
    with infersight.request(model="m", endpoint="first"):
        gen = _stream(events)() if kind == "decorated" else _undecorated(events)
        next(gen)
    del gen
    gc.collect()
    with infersight.request(model="m", endpoint="second"):
        pass
    with infersight.model(model="offline"):
        pass
    assert_abandoned(t, events)
    first, second = t.spans("inference")
    assert second.parent is None and second.context.trace_id != first.context.trace_id
    offline = next(s for s in t.spans("model"))
    assert offline.parent is None and offline.context.trace_id not in (first.context.trace_id, second.context.trace_id)


def test_consumer_code_between_items_is_not_inside_the_generator_stage(t: Captured) -> None:
    events: list[str] = []
    with infersight.request(model="m"):
        for i in _stream(events)():
            with infersight.stage("send"):  # the consumer's own work on each item
                pass
            if i == 2:
                break
    request = one(t, "inference")
    sends = t.spans("send")
    assert len(sends) == 3
    for span in sends:
        assert span.parent.span_id == request.context.span_id  # type: ignore[union-attr]
    assert one(t, "postprocess").parent.span_id == request.context.span_id  # type: ignore[union-attr]


def test_async_generator_broken_out_of_leaves_the_task_context_clean(t: Captured) -> None:
    """No request around the loop: after ``break`` a new request in the same task is a root."""

    @infersight.postprocess(model="m")
    async def tokens() -> AsyncIterator[int]:
        for i in range(1000):
            yield i

    async def main() -> None:
        async for i in tokens():
            if i == 1:
                break
        gc.collect()
        await asyncio.sleep(0.01)  # asyncio's finaliser closes the generator
        async with infersight.request(model="m"):
            pass

    asyncio.run(asyncio.wait_for(main(), 10))
    stream, request = one(t, "postprocess"), one(t, "inference")
    assert stream.attributes is not None and stream.attributes[ABANDONED] is True
    assert request.parent is None and request.context.trace_id != stream.context.trace_id


def test_async_generator_abandoned_with_aclose_and_by_break(t: Captured) -> None:
    events: list[str] = []

    @infersight.postprocess(model="m")
    async def tokens() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                await asyncio.sleep(0)
                yield i
        finally:
            events.append("user finally ran")

    async def main() -> None:
        async with infersight.request(model="m"):
            agen = tokens()
            assert await agen.__anext__() == 0
            await agen.aclose()  # explicit
        async with infersight.request(model="m"):
            async for i in tokens():
                if i == 2:
                    break  # dropped: asyncio's finaliser closes it in a task of its own
            gc.collect()
            for _ in range(10):
                await asyncio.sleep(0)
                if len(events) == 2:
                    break

    asyncio.run(asyncio.wait_for(main(), 10))
    spans = t.spans("postprocess")
    assert len(spans) == 2 and events == ["user finally ran"] * 2
    for span in spans:
        assert span.status.status_code is StatusCode.UNSET and not span.events
        assert span.attributes is not None and span.attributes[ABANDONED] is True
    assert len(assert_closed(t)) == 4


def test_async_generator_left_open_when_the_loop_shuts_down(t: Captured) -> None:
    """asyncio.run closes leftover async generators at exit: the span closes either way."""
    events: list[str] = []

    @infersight.postprocess(model="m")
    async def tokens() -> AsyncIterator[int]:
        try:
            while True:
                await asyncio.sleep(0)
                yield 1
        finally:
            events.append("user finally ran")

    kept: list[Any] = []

    async def main() -> None:
        kept.append(tokens())
        await kept[0].__anext__()

    asyncio.run(main())
    assert events == ["user finally ran"]
    span = one(t, "postprocess")
    assert span.end_time is not None
    assert span.attributes is not None and span.attributes[ABANDONED] is True


# ---- asyncio cancellation ------------------------------------------------------------------


def test_cancelled_task_closes_every_span_and_the_cancellation_propagates_unchanged(t: Captured) -> None:
    seen: dict[str, BaseException] = {}
    started = asyncio.Event

    @infersight.model(model="m")
    async def slow(ready: asyncio.Event) -> None:
        with infersight.stage("kernel"):
            ready.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError as exc:
                seen["inner"] = exc
                raise

    async def handler(ready: asyncio.Event) -> None:
        async with infersight.request(model="m"):
            try:
                await slow(ready)
            except asyncio.CancelledError as exc:
                seen["outer"] = exc
                raise

    async def main() -> asyncio.Task[None]:
        ready = started()
        task = asyncio.ensure_future(handler(ready))
        await ready.wait()
        task.cancel("client went away")
        with pytest.raises(asyncio.CancelledError):
            await task
        return task

    task = asyncio.run(asyncio.wait_for(main(), 10))
    assert task.cancelled()  # not swallowed on the way out
    assert seen["outer"] is seen["inner"]
    assert seen["inner"].args == ("client went away",)
    assert sorted(s.name for s in assert_closed(t)) == ["inference", "kernel", "model"]
    for name in ("kernel", "model", "inference"):
        assert_error_recorded(one(t, name), "CancelledError")
    assert t.value("infersight_errors_total", model="m", stage="model", exception_type="CancelledError") == 1.0


def test_timeout_cancels_the_stage_and_the_caller_sees_timeout_error(t: Captured) -> None:
    @infersight.model(model="m")
    async def slow() -> None:
        await asyncio.sleep(30)

    async def main() -> None:
        async with infersight.request(model="m"):
            await asyncio.wait_for(slow(), 0.05)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(main(), 10))
    assert time.monotonic() - started < 5
    assert_error_recorded(one(t, "model"), "CancelledError")  # what the stage itself saw
    assert_error_recorded(one(t, "inference"), "TimeoutError")  # what came out of wait_for


def test_cancelled_while_an_async_generator_stage_streams(t: Captured) -> None:
    @infersight.postprocess(model="m")
    async def tokens() -> AsyncIterator[int]:
        for i in range(1000):
            await asyncio.sleep(0.001)
            yield i

    got: list[int] = []

    async def consume() -> None:
        async with infersight.request(model="m"):
            async for i in tokens():
                got.append(i)

    async def main() -> None:
        task = asyncio.ensure_future(consume())
        while len(got) < 3:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 10))
    assert 3 <= len(got) < 1000
    assert_error_recorded(one(t, "postprocess"), "CancelledError")
    assert_error_recorded(one(t, "inference"), "CancelledError")
    assert len(assert_closed(t)) == 2


# ---- Flask ---------------------------------------------------------------------------------


def make_app(events: list[str], errors: list[BaseException]) -> Any:
    from flask import Flask, Response

    app = Flask("user-errors")

    @app.get("/stream")
    def stream() -> Response:
        @infersight.postprocess(model="m")
        def tokens() -> Iterator[bytes]:
            try:
                for i in range(5000):
                    time.sleep(0.001)
                    yield b"token %d\n" % i
            finally:
                events.append("stream closed")

        return Response(tokens(), mimetype="text/plain")

    @app.get("/fail")
    def fail() -> str:
        with infersight.model(model="m"):
            raise Boom("view bug")

    @app.errorhandler(Boom)
    def on_boom(exc: Boom) -> tuple[str, int]:
        errors.append(exc)
        return "handled", 503

    return app


@pytest.fixture
def flask_app(t: Captured) -> Iterator[tuple[Any, list[str], list[BaseException]]]:
    events: list[str] = []
    errors: list[BaseException] = []
    instrument_all(["flask"])
    try:
        yield make_app(events, errors), events, errors
    finally:
        uninstrument_all()


def test_flask_view_exception_reaches_the_error_handler_unchanged(t: Captured, flask_app: Any) -> None:
    app, _, errors = flask_app
    response = app.test_client().get("/fail")
    assert response.status_code == 503
    assert len(errors) == 1 and type(errors[0]) is Boom and errors[0].args == ("view bug",)
    assert_error_recorded(one(t, "model"), "Boom")
    server = one(t, "GET /fail")
    assert server.status.status_code is StatusCode.ERROR  # a 503
    assert len(assert_closed(t)) == 2


def test_flask_stream_closed_by_the_wsgi_server_half_way(t: Captured, flask_app: Any) -> None:
    """What a WSGI server does when the client disconnects: stop iterating, call close()."""
    app, events, _ = flask_app
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/stream",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
    }
    statuses: list[str] = []
    body = app(environ, lambda status, headers, *_: statuses.append(status))
    chunks = iter(body)
    assert next(chunks) == b"token 0\n" and next(chunks) == b"token 1\n"
    body.close()
    assert statuses == ["200 OK"] and events == ["stream closed"]
    span = one(t, "postprocess")
    assert span.attributes is not None and span.attributes[ABANDONED] is True
    assert span.status.status_code is StatusCode.UNSET
    assert one(t, "GET /stream").attributes["http.response.status_code"] == 200  # type: ignore[index]
    assert len(assert_closed(t)) == 2


def test_flask_stream_abandoned_by_a_real_client(t: Captured, flask_app: Any) -> None:
    """Over loopback: the client reads a few tokens and hangs up; werkzeug's write fails and it
    closes the response, which closes the stage."""
    from werkzeug.serving import make_server

    app, events, _ = flask_app
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while b"token 2" not in received:
                received += sock.recv(4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        started = time.monotonic()
        while not events and time.monotonic() - started < 10:
            time.sleep(0.01)
        print(f"stream closed {time.monotonic() - started:.3f} s after the client hung up")
        assert events == ["stream closed"]
        t.flush()
        span = one(t, "postprocess")
        assert span.attributes is not None and span.attributes[ABANDONED] is True
        assert_closed(t)
    finally:
        server.shutdown()
        thread.join(5)


# ---- grpc.aio: the client cancels ----------------------------------------------------------


def test_grpc_aio_call_cancelled_by_the_client(t: Captured) -> None:
    """grpc.aio cancels the servicer's task: its stage closes with the cancellation recorded, and
    the RPC is CANCELLED (the client's doing), not a server error."""
    import grpc
    from tests.test_grpc import aio_server, run_async

    started: list[asyncio.Event] = []
    finished: list[str] = []

    async def wait(request: bytes, context: Any) -> bytes:
        with infersight.model(model="m"):
            started[0].set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                finished.append("cancelled")
                raise
        return b"never"

    handler = grpc.method_handlers_generic_handler(
        "test.Slow", {"Wait": grpc.unary_unary_rpc_method_handler(wait, lambda b: b, lambda b: b)}
    )

    async def scenario() -> None:
        started.append(asyncio.Event())
        async with aio_server(handlers=[handler]) as channel:
            call = channel.unary_unary("/test.Slow/Wait")(b"x", timeout=10)
            await started[0].wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            for _ in range(200):  # the server side learns of it asynchronously
                if finished:
                    break
                await asyncio.sleep(0.01)

    instrument_all(["grpc"])
    try:
        run_async(scenario())
    finally:
        uninstrument_all()
    assert finished == ["cancelled"]
    t.flush()
    stage = one(t, "model")
    assert_error_recorded(stage, "CancelledError")
    server = one(t, "test.Slow/Wait")
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert server.status.status_code is StatusCode.UNSET and not server.events
    assert stage.parent.span_id == server.context.span_id  # type: ignore[union-attr]
    assert_closed(t)
