"""httpx, sync and async: each request a transport sends becomes a CLIENT span and a client
latency observation.

The transports' public ``handle_request`` / ``handle_async_request`` are patched, as
opentelemetry-instrumentation-httpx does: whichever of the two wraps the other, there is one
CLIENT span (``_client``). Custom transports (a mock, an in-process ASGI app) are not observed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _errors
from ..conventions import SERVER_TIMING_HEADER
from ._client import Call, http_attrs, target_of
from ._common import unwrap, wrap

__all__ = ["instrument", "uninstrument"]


def _begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Call, str, str]:
    request = args[0] if args else kwargs["request"]
    method = str(request.method)
    target, path = target_of(str(request.url))
    call = Call(method, target, path)
    call.inject(request.headers)
    return request, call, method, target


def _end(call: Call, request: Any, method: str, target: str, response: Any) -> None:
    try:
        code = int(response.status_code)
        timing = response.headers.get(SERVER_TIMING_HEADER)
    except Exception as exc:
        _errors.report("httpx", exc)
        code, timing = 0, None
    call.finish(code, code >= 400, timing, request.headers, http_attrs(method, target, code))


def _handle(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        request, call, method, target = _begin(args, kwargs)
    except Exception as exc:
        _errors.report("httpx", exc)
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException:
        call.finish(None, True, None, request.headers, http_attrs(method, target, None))
        raise
    _end(call, request, method, target, response)
    return response


async def _handle_async(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        request, call, method, target = _begin(args, kwargs)
    except Exception as exc:
        _errors.report("httpx", exc)
        return await wrapped(*args, **kwargs)
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException:
        call.finish(None, True, None, request.headers, http_attrs(method, target, None))
        raise
    _end(call, request, method, target, response)
    return response


def instrument() -> None:
    wrap("httpx", "HTTPTransport.handle_request", _handle)
    wrap("httpx", "AsyncHTTPTransport.handle_async_request", _handle_async)


def uninstrument() -> None:
    unwrap("httpx", "HTTPTransport.handle_request")
    unwrap("httpx", "AsyncHTTPTransport.handle_async_request")
