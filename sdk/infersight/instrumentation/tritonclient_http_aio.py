"""tritonclient.http.aio: each call an asyncio client makes to Triton (``infer``, the health and
metadata calls) becomes a CLIENT span and a client latency observation, its ``traceparent`` in
the request's headers, so that Triton's own OpenTelemetry spans join the caller's trace.

The client sends every request through two private coroutines (``infersight._compat``), as
its sync twin does (``tritonclient_http``); the call ends when the response's headers are in,
as the coroutine returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _compat, _errors
from ..conventions import SERVER_TIMING_HEADER
from ._common import unwrap, wrap
from .tritonclient_http import finish_call, start_call

__all__ = ["instrument", "uninstrument"]


def _sender(method: str, headers_at: int) -> Callable[..., Any]:
    async def send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            target = _compat.tritonclient_http_aio_target(instance) or "unknown"
            call, headers, args = start_call(method, headers_at, target, args, kwargs)
        except Exception as exc:
            _errors.report("tritonclient", exc)
            return await wrapped(*args, **kwargs)
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException:
            finish_call(call, method, target, headers, None)
            raise

        def status() -> tuple[int, str | None]:
            return int(response.status), response.headers.get(SERVER_TIMING_HEADER)

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
        wrap(_compat.TRITONCLIENT_HTTP_AIO_MODULE, path, sender)


def uninstrument() -> None:
    for path in _compat.TRITONCLIENT_HTTP_SENDS:
        unwrap(_compat.TRITONCLIENT_HTTP_AIO_MODULE, path)
