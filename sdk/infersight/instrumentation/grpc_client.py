"""gRPC channels, sync and asyncio: each call becomes a CLIENT span and a client latency
observation, its ``traceparent`` in the call's metadata and the server's ``server-timing``
read from its trailing metadata. A streaming call (a response stream, a request stream or
both, e.g. tritonclient's ``stream_infer``) is one call, from its start to the end of the
stream.

The channel factories (``grpc.insecure_channel``/``secure_channel`` and their ``grpc.aio``
twins) are patched, so each channel created afterwards carries infersight's interceptor.
A KServe v2 inference call (Triton's) names its model in the ``endpoint`` label
(``TRITON.GRPC_INFER_METHODS``), so that the rules can set the client's latency against
Triton's own for that model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import grpc.aio

from .. import _compat, _errors
from ..conventions import ATTR, SERVER_TIMING_HEADER, TRITON
from ._client import Call
from ._common import unwrap, wrap

__all__ = ["instrument", "uninstrument"]


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    """The call's details with infersight's metadata (grpc's own namedtuple is private)."""

    def __init__(self, details: Any, metadata: list[tuple[str, Any]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _AioDetails(grpc.aio.ClientCallDetails):  # type: ignore[misc]
    def __new__(cls, details: Any, metadata: Any) -> Any:
        return super().__new__(
            cls, details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


def _labelled(method: str, request: Any) -> str:
    """The endpoint label: the method, with the model for a KServe v2 infer call."""
    if method in TRITON.GRPC_INFER_METHODS:
        model = getattr(request, "model_name", None)
        if isinstance(model, str) and model:
            return f"{method}/{model}"
    return method


def _begin(target: str, details: Any, request: Any = None) -> tuple[Call, list[tuple[str, Any]], str]:
    method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
    method = method.lstrip("/")
    call = Call(method, target, _labelled(method, request))
    carrier: dict[str, Any] = {}
    call.inject(carrier)
    metadata = [tuple(item) for item in (details.metadata or ())]
    metadata += [(key, value) for key, value in carrier.items()]
    return call, metadata, method  # type: ignore[return-value]


def _name_model(call: Call, method: str, request: Any) -> None:
    """A request stream: its first request names the model (set before the call finishes)."""
    try:
        if call.rec is not None and method in TRITON.GRPC_INFER_METHODS:
            call.rec.endpoint = _labelled(method, request)
    except Exception as exc:
        _errors.report("grpc_client", exc)


def _peek(call: Call, method: str, requests: Any) -> Iterator[Any]:
    first = True
    for request in requests:
        if first:
            first = False
            _name_model(call, method, request)
        yield request


async def _apeek(call: Call, method: str, requests: Any) -> AsyncIterator[Any]:
    first = True
    async for request in requests:
        if first:
            first = False
            _name_model(call, method, request)
        yield request


def _timing(trailing: Any) -> str | None:
    for item in trailing or ():
        if item[0] == SERVER_TIMING_HEADER and isinstance(item[1], str):
            return str(item[1])
    return None


def _finish(call: Call, full_method: str, code: Any, trailing: Any, sent: list[tuple[str, Any]]) -> None:
    try:
        service, _, method = full_method.rpartition("/")
        number = code.value[0] if isinstance(code, grpc.StatusCode) else 2
        attrs = {
            ATTR.RPC_SYSTEM: "grpc",
            ATTR.RPC_SERVICE: service,
            ATTR.RPC_METHOD: method,
            ATTR.RPC_GRPC_STATUS_CODE: number,
        }
        if call.rec is not None:
            call.rec.protocol = "grpc"
        call.finish(number, number != 0, _timing(trailing), dict(sent), attrs)
    except Exception as exc:
        _errors.report("grpc_client", exc)


def _when_done(call: Call, method: str, metadata: list[tuple[str, Any]], outcome: Any) -> Any:
    """A sync call's end (a unary answer, or a stream's last message or error): its callback."""

    def done(future: Any) -> None:
        try:
            code, trailing = future.code(), future.trailing_metadata()
        except Exception:
            code, trailing = None, None
        _finish(call, method, code, trailing, metadata)

    try:
        outcome.add_done_callback(done)
    except Exception as exc:
        _errors.report("grpc_client", exc)
    return outcome


class _Interceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    def __init__(self, target: str) -> None:
        self.target = target

    def _intercept(self, continuation: Callable[..., Any], details: Any, request: Any, streamed: bool) -> Any:
        try:
            call, metadata, method = _begin(self.target, details, None if streamed else request)
            new_details = _Details(details, metadata)
            sent = _peek(call, method, request) if streamed else request
        except Exception as exc:
            _errors.report("grpc_client", exc)
            return continuation(details, request)
        try:
            outcome = continuation(new_details, sent)
        except BaseException:
            _finish(call, method, None, None, metadata)
            raise
        return _when_done(call, method, metadata, outcome)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request, False)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return self._intercept(continuation, details, request, False)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return self._intercept(continuation, details, requests, True)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return self._intercept(continuation, details, requests, True)


class _AioInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, target: str) -> None:
        self.target = target

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        try:
            call, metadata, method = _begin(self.target, details, request)
            new_details = _AioDetails(details, grpc.aio.Metadata(*metadata))
        except Exception as exc:
            _errors.report("grpc_client", exc)
            return await continuation(details, request)
        try:
            rpc = await continuation(new_details, request)
            await rpc  # the answer (or its error) is in: the call ends here, as the caller's await does
        except BaseException as exc:
            code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
            trailing = exc.trailing_metadata() if isinstance(exc, grpc.aio.AioRpcError) else None
            _finish(call, method, code, trailing, metadata)
            raise
        try:
            code, trailing = await rpc.code(), await rpc.trailing_metadata()
        except Exception:
            code, trailing = None, None
        _finish(call, method, code, trailing, metadata)
        return rpc


class _AioStream:
    """Streams over grpc.aio: the call ends when its done callback runs (the stream's end, its
    error or its cancellation); its status and trailers are read in a task of the call's loop.
    grpc.aio files an interceptor under its first interceptor type: one class per kind below."""

    def __init__(self, target: str) -> None:
        self.target = target

    async def _intercept(self, continuation: Callable[..., Any], details: Any, request: Any, streamed: bool) -> Any:
        try:
            call, metadata, method = _begin(self.target, details, None if streamed else request)
            new_details = _AioDetails(details, grpc.aio.Metadata(*metadata))
            sent = request
            if streamed and hasattr(request, "__aiter__"):
                sent = _apeek(call, method, request)
            elif streamed and request is not None:
                sent = _peek(call, method, request)
        except Exception as exc:
            _errors.report("grpc_client", exc)
            return await continuation(details, request)
        try:
            rpc = await continuation(new_details, sent)
        except BaseException:
            _finish(call, method, None, None, metadata)
            raise

        async def read(done: Any) -> None:
            try:
                code, trailing = await done.code(), await done.trailing_metadata()
            except BaseException:
                code, trailing = None, None
            _finish(call, method, code, trailing, metadata)

        tasks: set[Any] = set()

        def done(finished: Any) -> None:
            try:
                task = asyncio.get_running_loop().create_task(read(finished))
                tasks.add(task)  # a strong reference until it ran
                task.add_done_callback(tasks.discard)
            except Exception as exc:
                _errors.report("grpc_client", exc)

        try:
            rpc.add_done_callback(done)
        except Exception as exc:
            _errors.report("grpc_client", exc)
        return rpc


class _AioUnaryStream(_AioStream, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await self._intercept(continuation, details, request, False)


class _AioStreamUnary(_AioStream, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await self._intercept(continuation, details, requests, True)


class _AioStreamStream(_AioStream, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await self._intercept(continuation, details, requests, True)


def _channel(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    target = str(args[0] if args else kwargs.get("target", ""))

    def intercepted(channel: Any) -> Any:
        try:
            return grpc.intercept_channel(channel, _Interceptor(target))
        except Exception as exc:
            _errors.report("grpc_client", exc)
            return channel

    # Innermost: an OpenTelemetry client interceptor patched in before infersight stays outside
    # ours, so its CLIENT span is current when ours runs (and is the call's one span).
    return _compat.call_innermost(wrapped, args, kwargs, intercepted)


def _aio_channel(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # grpc.aio.insecure_channel(target, options=None, compression=None, interceptors=None)
    try:
        target = str(args[0] if args else kwargs.get("target", ""))
        position = 3 if wrapped.__name__ == "insecure_channel" else 4
        given = args[position] if len(args) > position else kwargs.get("interceptors")
        # Last: inside any of the app's own.
        ours = [kind(target) for kind in (_AioInterceptor, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)]
        ordered = [*(given or ()), *ours]
        if len(args) > position:
            args = (*args[:position], ordered, *args[position + 1 :])
        else:
            kwargs = {**kwargs, "interceptors": ordered}
    except Exception as exc:
        _errors.report("grpc_client", exc)
    return wrapped(*args, **kwargs)


_FACTORIES = ("insecure_channel", "secure_channel")


def instrument() -> None:
    for name in _FACTORIES:
        wrap("grpc", name, _channel)
        wrap("grpc.aio", name, _aio_channel)


def uninstrument() -> None:
    for name in _FACTORIES:
        unwrap("grpc", name)
        unwrap("grpc.aio", name)
