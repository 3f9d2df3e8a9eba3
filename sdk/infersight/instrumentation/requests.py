"""requests: each call an adapter sends becomes a CLIENT span and a client latency observation.

``HTTPAdapter.send`` is patched: every session and every redirect goes through it, inside the
span of opentelemetry-instrumentation-requests (which patches ``Session.send``) when that runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _errors
from ..conventions import SERVER_TIMING_HEADER
from ._client import Call, http_attrs, target_of
from ._common import unwrap, wrap

__all__ = ["instrument", "uninstrument"]


def _send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request: Any = args[0] if args else kwargs.get("request")
    try:
        method = str(request.method or "GET")
        target, path = target_of(str(request.url))
        call = Call(method, target, path)
        call.inject(request.headers)
    except Exception as exc:
        _errors.report("requests", exc)
        return wrapped(*args, **kwargs)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException:
        call.finish(None, True, None, request.headers, http_attrs(method, target, None))
        raise
    try:
        code = int(response.status_code)
        timing = response.headers.get(SERVER_TIMING_HEADER)
    except Exception as exc:
        _errors.report("requests", exc)
        code, timing = 0, None
    call.finish(code, code >= 400, timing, request.headers, http_attrs(method, target, code))
    return response


def instrument() -> None:
    wrap("requests.adapters", "HTTPAdapter.send", _send)


def uninstrument() -> None:
    unwrap("requests.adapters", "HTTPAdapter.send")
