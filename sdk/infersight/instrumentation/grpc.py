"""gRPC servers, sync (``grpc.server``) and asyncio (``grpc.aio.server``): every RPC becomes a
server span and a latency observation labelled with its full method name.

The module functions ``grpc.server`` / ``grpc.aio.server`` are patched, so each server created
afterwards gets our interceptor first in its chain. The interceptor wraps the method handler's
behaviour: the request record is opened inside the code that runs the servicer (the pool thread,
or the RPC's asyncio task), so stage spans from the servicer nest under it. The first server
created also starts the ``/metrics`` HTTP server on ``INFERSIGHT_METRICS_PORT`` (0: off).
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from opentelemetry.propagators.textmap import default_getter
from opentelemetry.trace import SpanContext, SpanKind

from .. import _errors, _runtime
from .. import _server_timing as server_timing
from ..conventions import ATTR, OUTCOME_ERROR, OUTCOME_SUCCESS, SERVER_TIMING_HEADER
from ._common import extract_remote_parent, unwrap, wrap

__all__ = ["instrument", "uninstrument"]

_OK = grpc.StatusCode.OK
_UNKNOWN = grpc.StatusCode.UNKNOWN
_CANCELLED = grpc.StatusCode.CANCELLED
_DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED
# OTel semantic conventions: on a server, only these codes make the span an error; the others
# (INVALID_ARGUMENT, NOT_FOUND, ...) are the client's mistake, not the server's.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_NUMBER = {status: status.value[0] for status in grpc.StatusCode}
_BY_NUMBER = {number: status for status, number in _NUMBER.items()}
_TRACEPARENT = "traceparent"
# The client went away: neither the servicer's fault nor an exception worth recording.
_CANCELLED_TYPES = (GeneratorExit, asyncio.CancelledError)


class _Call:
    """What one RPC knows before its behaviour runs: method names and the remote parent."""

    __slots__ = ("endpoint", "method", "parent", "service")

    def __init__(self, details: Any) -> None:
        full = str(getattr(details, "method", "") or "").lstrip("/")
        self.endpoint = full  # "inference.GRPCInferenceService/ModelInfer"
        self.service, _, self.method = full.rpartition("/")
        self.parent: SpanContext | None = None
        metadata = getattr(details, "invocation_metadata", None)
        if metadata:
            carrier = {}
            for item in metadata:
                key, value = item[0], item[1]
                if isinstance(value, str):  # binary (-bin) entries carry no trace context
                    carrier[key.lower()] = value
            self.parent = extract_remote_parent(carrier, default_getter, _TRACEPARENT)

    def start(self) -> tuple[Any, Any]:
        return _runtime.start_request(self.endpoint, SpanKind.SERVER, self.endpoint, self.parent)


def _status_of(context: Any) -> grpc.StatusCode | None:
    try:
        code = context.code()
    except Exception:
        return None
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # some grpc.aio versions hand back the raw integer
        return _BY_NUMBER.get(code)
    return None


def _deadline_passed(context: Any) -> bool:
    try:
        remaining = context.time_remaining()
    except Exception:
        return False
    return remaining is not None and remaining <= 0


def _is_abort(exc: BaseException) -> bool:
    # sync ``context.abort`` raises a bare ``Exception()``; grpc.aio raises ``AbortError``.
    return isinstance(exc, grpc.aio.AbortError) or (type(exc) is Exception and not exc.args)


def _byte_size(message: Any) -> int:
    size = getattr(message, "ByteSize", None)
    if size is None:
        return -1
    try:
        return int(size())
    except Exception:
        return -1


def _finish(
    rec: Any, tokens: Any, call: _Call, context: Any, request: Any, response: Any, error: BaseException | None
) -> None:
    """Close the record with the RPC's final status; what grpc itself will send the client."""
    if rec is None:
        return
    recorded: BaseException | None = None
    try:
        code = _status_of(context)
        if error is not None:
            if isinstance(error, _CANCELLED_TYPES):
                code = code or _CANCELLED
            elif code is None or code is _OK:
                code = _UNKNOWN  # what grpc answers for an exception from the servicer
        if (code is None or code is _OK or code is _CANCELLED) and _deadline_passed(context):
            code = _DEADLINE_EXCEEDED  # what the client saw, though the servicer returned
        code = code or _OK
        failed = code in _SERVER_ERRORS
        if error is not None and not _is_abort(error) and not isinstance(error, _CANCELLED_TYPES):
            if failed:
                recorded = error  # exception event and ERROR status on the span
            else:
                rec.set_attr(ATTR.ERROR_TYPE, type(error).__qualname__)
        elif failed:
            rec.set_attr(ATTR.ERROR_TYPE, code.name)
        number = _NUMBER[code]
        rec.status_code = number
        rec.protocol = "grpc"
        rec.outcome = OUTCOME_ERROR if failed else OUTCOME_SUCCESS
        attrs = {
            ATTR.RPC_SYSTEM: "grpc",
            ATTR.RPC_SERVICE: call.service,
            ATTR.RPC_METHOD: call.method,
            ATTR.RPC_GRPC_STATUS_CODE: number,
        }
        if rec.attrs:
            attrs.update(rec.attrs)  # the servicer's own attributes win
        rec.attrs = attrs
        if request is not None:
            rec.payload_in = _byte_size(request)
        if response is not None:
            rec.payload_out = _byte_size(response)
    except Exception as exc:
        _errors.report("grpc", exc)
    _runtime.finish_request(rec, tokens, recorded)


def _add_server_timing(rec: Any, context: Any) -> None:
    """The servicer is done: its trailers (sent after the last message) carry what it spent,
    added to any trailing metadata of its own."""
    try:
        rt = _runtime.get_runtime()
        if rt is None or not rt.config.server_timing:
            return
        own = tuple(context.trailing_metadata() or ())
        if any(item[0] == SERVER_TIMING_HEADER for item in own):
            return
        context.set_trailing_metadata((*own, (SERVER_TIMING_HEADER, server_timing.value(rec))))
    except Exception as exc:
        _errors.report("grpc", exc)


# ---- Behaviour wrappers: one per handler shape, sync and async ----------------------------


class _Rpc:
    """One RPC's record: opened on entry, in the code that runs the servicer, and closed on exit
    with the outcome, whatever the handler's shape (function, coroutine or generator)."""

    __slots__ = ("_rec", "_tokens", "call", "context", "request", "response")

    def __init__(self, call: _Call, context: Any, request: Any, unary_request: bool) -> None:
        self.call = call
        self.context = context
        self.request = request if unary_request else None  # a request stream has no one size
        self.response: Any = None

    def __enter__(self) -> _Rpc:
        self._rec, self._tokens = self.call.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._rec is not None:
            _add_server_timing(self._rec, self.context)
        _finish(self._rec, self._tokens, self.call, self.context, self.request, self.response, ev)


def _wrap_unary_response(behavior: Callable[..., Any], call: _Call, unary_request: bool) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(behavior):

        async def async_unary(request: Any, context: Any) -> Any:
            with _Rpc(call, context, request, unary_request) as rpc:
                rpc.response = await behavior(request, context)
            return rpc.response

        return async_unary

    def unary(request: Any, context: Any) -> Any:
        with _Rpc(call, context, request, unary_request) as rpc:
            rpc.response = behavior(request, context)
        return rpc.response

    return unary


def _wrap_stream_response(behavior: Callable[..., Any], call: _Call, unary_request: bool) -> Callable[..., Any]:
    """Streamed responses: the record spans the whole stream, closed when it ends or breaks."""
    if inspect.iscoroutinefunction(behavior):  # grpc.aio writer API: ``await context.write(...)``

        async def async_writer(request: Any, context: Any) -> None:
            with _Rpc(call, context, request, unary_request):
                await behavior(request, context)

        return async_writer

    if inspect.isasyncgenfunction(behavior):

        async def async_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            with _Rpc(call, context, request, unary_request):
                async for item in behavior(request, context):
                    yield item

        return async_stream

    def stream(request: Any, context: Any) -> Iterator[Any]:
        with _Rpc(call, context, request, unary_request):
            yield from behavior(request, context)

    return stream


def _wrap_handler(handler: Any, call: _Call) -> Any:
    try:
        request_streaming = bool(handler.request_streaming)
        if handler.response_streaming:
            behavior = handler.stream_stream if request_streaming else handler.unary_stream
            wrapped = _wrap_stream_response(behavior, call, not request_streaming)
            factory = (
                grpc.stream_stream_rpc_method_handler if request_streaming else grpc.unary_stream_rpc_method_handler
            )
        else:
            behavior = handler.stream_unary if request_streaming else handler.unary_unary
            wrapped = _wrap_unary_response(behavior, call, not request_streaming)
            factory = grpc.stream_unary_rpc_method_handler if request_streaming else grpc.unary_unary_rpc_method_handler
        if behavior is None:
            return handler
        return factory(
            wrapped, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    except Exception as exc:
        _errors.report("grpc", exc)
        return handler


def _instrumented(handler: Any, handler_call_details: Any) -> Any:
    """The handler wrapped to record its RPC; unchanged when infersight is off or fails."""
    if handler is None or _runtime.get_runtime() is None:
        return handler
    try:
        call = _Call(handler_call_details)
    except Exception as exc:
        _errors.report("grpc", exc)
        return handler
    return _wrap_handler(handler, call)


class _ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        return _instrumented(continuation(handler_call_details), handler_call_details)


class _AioServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        return _instrumented(await continuation(handler_call_details), handler_call_details)


# ---- Server factories ---------------------------------------------------------------------

_metrics_tried: weakref.WeakSet[Any] = weakref.WeakSet()


def _start_metrics_server() -> None:
    """Serve /metrics once per runtime. With several worker processes only the first binds the
    port; the others report it once (infersight_sdk_errors_total) and serve gRPC regardless."""
    rt = _runtime.get_runtime()
    if rt is None or rt in _metrics_tried:
        return
    _metrics_tried.add(rt)
    if not rt.config.serves_metrics or rt.config.metrics_port == 0 or rt.metrics_server is not None:
        return
    try:
        rt.start_metrics_server()
    except Exception as exc:
        _errors.report("metrics_server", exc)


def _with_interceptor(
    interceptor: Any, position: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Put ``interceptor`` first, whether interceptors came by keyword, by position or not at all;
    but after OpenTelemetry's own server interceptor, whose SERVER span then stays the RPC's
    one server span, with infersight's stages as its children."""
    given = args[position] if len(args) > position else kwargs.get("interceptors")
    rest = [i for i in (given or ()) if not isinstance(i, type(interceptor))]
    contrib = [i for i in rest if type(i).__module__.startswith(_CONTRIB_MODULE)]
    ordered = [*contrib, interceptor, *(i for i in rest if i not in contrib)]
    if len(args) > position:
        return (*args[:position], ordered, *args[position + 1 :]), kwargs
    return args, {**kwargs, "interceptors": ordered}


_CONTRIB_MODULE = "opentelemetry.instrumentation.grpc"


_SYNC = _ServerInterceptor()
_AIO = _AioServerInterceptor()


def _server(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # grpc.server(thread_pool, handlers=None, interceptors=None, ...)
    try:
        _start_metrics_server()
        args, kwargs = _with_interceptor(_SYNC, 2, args, kwargs)
    except Exception as exc:
        _errors.report("grpc", exc)
    return wrapped(*args, **kwargs)


def _aio_server(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # grpc.aio.server(migration_thread_pool=None, handlers=None, interceptors=None, ...)
    try:
        _start_metrics_server()
        args, kwargs = _with_interceptor(_AIO, 2, args, kwargs)
    except Exception as exc:
        _errors.report("grpc", exc)
    return wrapped(*args, **kwargs)


def instrument() -> None:
    wrap("grpc", "server", _server)
    wrap("grpc.aio", "server", _aio_server)


def uninstrument() -> None:
    unwrap("grpc", "server")
    unwrap("grpc.aio", "server")
