"""gRPC channels, sync and asyncio: each unary call becomes a CLIENT span and a client latency
observation, its ``traceparent`` in the call's metadata and the server's ``server-timing``
read from its trailing metadata.

The channel factories (``grpc.insecure_channel``/``secure_channel`` and their ``grpc.aio``
twins) are patched, so each channel created afterwards carries infersight's interceptor.
Streaming calls pass through unobserved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from .. import _compat, _errors
from ..conventions import ATTR, SERVER_TIMING_HEADER
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


def _begin(target: str, details: Any) -> tuple[Call, list[tuple[str, Any]], str]:
    method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
    endpoint = method.lstrip("/")
    call = Call(endpoint, target, endpoint)
    carrier: dict[str, Any] = {}
    call.inject(carrier)
    metadata = [tuple(item) for item in (details.metadata or ())]
    metadata += [(key, value) for key, value in carrier.items()]
    return call, metadata, endpoint  # type: ignore[return-value]


def _timing(trailing: Any) -> str | None:
    for item in trailing or ():
        if item[0] == SERVER_TIMING_HEADER and isinstance(item[1], str):
            return str(item[1])
    return None


def _finish(call: Call, endpoint: str, code: Any, trailing: Any, sent: list[tuple[str, Any]]) -> None:
    try:
        service, _, method = endpoint.rpartition("/")
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


class _Interceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, target: str) -> None:
        self.target = target

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        try:
            call, metadata, endpoint = _begin(self.target, details)
            new_details = _Details(details, metadata)
        except Exception as exc:
            _errors.report("grpc_client", exc)
            return continuation(details, request)
        outcome = continuation(new_details, request)

        def done(future: Any) -> None:
            try:
                code, trailing = future.code(), future.trailing_metadata()
            except Exception:
                code, trailing = None, None
            _finish(call, endpoint, code, trailing, metadata)

        try:
            outcome.add_done_callback(done)
        except Exception as exc:
            _errors.report("grpc_client", exc)
        return outcome


class _AioInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, target: str) -> None:
        self.target = target

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        try:
            call, metadata, endpoint = _begin(self.target, details)
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
            _finish(call, endpoint, code, trailing, metadata)
            raise
        try:
            code, trailing = await rpc.code(), await rpc.trailing_metadata()
        except Exception:
            code, trailing = None, None
        _finish(call, endpoint, code, trailing, metadata)
        return rpc


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
        ordered = [*(given or ()), _AioInterceptor(target)]  # last: inside any of the app's own
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
