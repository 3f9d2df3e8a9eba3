"""tritonclient.http: each call a client makes to Triton (``infer``, the health and metadata
calls) becomes a CLIENT span and a client latency observation, its ``traceparent`` in the
request's headers, so that Triton's own OpenTelemetry spans join the caller's trace.

The client sends every request through two private methods (``infersight._compat``); its
plugin hook sees no response. tritonclient.grpc needs nothing of its own: its channels are
gRPC channels (``grpc_client``); tritonclient.http.aio has ``tritonclient_http_aio``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _compat, _errors
from ..conventions import SERVER_TIMING_HEADER
from ._client import Call, http_attrs
from ._common import unwrap, wrap

__all__ = ["finish_call", "instrument", "start_call", "uninstrument"]


def start_call(
    method: str, headers_at: int, target: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Call, dict[str, str], tuple[Any, ...]]:
    """The call a send method is about to make (sync and aio clients alike): its span's start,
    its ``traceparent`` injected into a copy of the request's headers, and the arguments that
    carry that copy (``kwargs`` is updated in place)."""
    args_list = list(args)
    uri = args_list[0] if args_list else kwargs["request_uri"]
    if len(args_list) > headers_at:
        headers = dict(args_list[headers_at] or {})
        args_list[headers_at] = headers
    else:
        headers = dict(kwargs.get("headers") or {})
        kwargs["headers"] = headers
    call = Call(method, target, "/" + str(uri).split("?")[0].lstrip("/"))
    call.inject(headers)
    return call, headers, tuple(args_list)


def finish_call(
    call: Call, method: str, target: str, headers: dict[str, str], status: Callable[[], tuple[int, str | None]] | None
) -> None:
    """End the call: ``status()`` reads the response's (code, Server-Timing); None: it raised."""
    if status is None:
        call.finish(None, True, None, headers, http_attrs(method, target, None))
        return
    try:
        code, timing = status()
    except Exception as exc:
        _errors.report("tritonclient", exc)
        code, timing = 0, None
    call.finish(code, code >= 400, timing, headers, http_attrs(method, target, code))


def _sender(method: str, headers_at: int) -> Callable[..., Any]:
    def send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            target = _compat.tritonclient_http_target(instance) or "unknown"
            call, headers, args = start_call(method, headers_at, target, args, kwargs)
        except Exception as exc:
            _errors.report("tritonclient", exc)
            return wrapped(*args, **kwargs)
        try:
            response = wrapped(*args, **kwargs)
        except BaseException:
            finish_call(call, method, target, headers, None)
            raise

        def status() -> tuple[int, str | None]:
            return int(response.status_code), response.get(SERVER_TIMING_HEADER)

        finish_call(call, method, target, headers, status)
        return response

    return send


# One wrapper per method, made once: wrap() recognises its own wrapper and doesn't stack it again.
_SENDERS = {
    path: _sender("POST" if path.endswith("_post") else "GET", headers_at)
    for path, headers_at in _compat.TRITONCLIENT_HTTP_SENDS.items()
}


def instrument() -> None:
    for path, sender in _SENDERS.items():
        wrap(_compat.TRITONCLIENT_HTTP_MODULE, path, sender)


def uninstrument() -> None:
    for path in _compat.TRITONCLIENT_HTTP_SENDS:
        unwrap(_compat.TRITONCLIENT_HTTP_MODULE, path)
