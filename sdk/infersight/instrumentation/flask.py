"""Flask: every request becomes a server span and a latency observation; ``/metrics`` is served.

``Flask.wsgi_app`` is patched on the class, so apps created before or after the import are
covered. The server span is built later by the worker from ids drawn here; if
opentelemetry-instrumentation-flask already made a server span, stages attach to it instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.trace import SpanKind

from .. import _errors, _runtime
from .._records import current_request
from ..conventions import ATTR, OUTCOME_ERROR, OUTCOME_SUCCESS
from ._common import extract_remote_parent, unwrap, wrap

__all__ = ["instrument", "uninstrument"]


class _EnvironGetter:
    def get(self, carrier: dict[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if value is not None else None

    def keys(self, carrier: dict[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


_GETTER = _EnvironGetter()
_UNSET_ROUTE = ""  # replaced by the route template once Flask has matched the URL


def _wsgi_app(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterable[bytes]:
    rt = _runtime.get_runtime()
    if rt is None:
        return wrapped(*args, **kwargs)  # type: ignore[no-any-return]
    environ, start_response = args[0], args[1]
    path = environ.get("PATH_INFO", "")
    if rt.config.metrics and rt.config.metrics_path and path == rt.config.metrics_path:
        content_type, body = rt.exposition.metrics(environ.get("HTTP_ACCEPT"))
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
    page = rt.exposition.pages.get(path) if rt.config.metrics_path else None
    if page is not None:  # e.g. /drift, next to /metrics
        content_type, body = page()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
    method = environ.get("REQUEST_METHOD", "GET")
    parent = extract_remote_parent(environ, _GETTER, "HTTP_TRACEPARENT")
    rec, tokens = _runtime.start_request(method, SpanKind.SERVER, _UNSET_ROUTE, parent)
    if rec is None:
        return wrapped(*args, **kwargs)  # type: ignore[no-any-return]
    status_holder: list[Any] = []

    def _start_response(status: str, headers: list[tuple[str, str]], *a: Any) -> Any:
        status_holder.append(status)
        status_holder.append(headers)
        return start_response(status, headers, *a)

    try:
        result = wrapped(environ, _start_response)
    except BaseException as exc:
        _finish(rec, tokens, environ, status_holder, exc)
        raise
    _finish(rec, tokens, environ, status_holder, None)
    return result  # type: ignore[no-any-return]


def _dispatch_request(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Runs inside Flask's request context, where the matched route template is known."""
    rec = current_request.get()
    if rec is not None:
        try:
            rule = _flask_request.url_rule
            if rule is not None:
                rec.endpoint = rule.rule
        except Exception as exc:
            _errors.report("flask", exc)
    return wrapped(*args, **kwargs)


_INT64_MAX = 2**63 - 1  # the largest integer an OTLP attribute carries


def _content_length(value: Any) -> int:
    """A Content-Length as the client sent it: digits only (RFC 9110), else -1 (not recorded).
    ``int()`` would raise on garbage, losing the span's attributes, and accepts "1_0" or "-5"."""
    if not isinstance(value, str):
        return -1
    value = value.strip()
    if value.isascii() and value.isdigit():
        length = int(value)
        if length <= _INT64_MAX:
            return length
    return -1


def _finish(
    rec: Any, tokens: Any, environ: dict[str, Any], status_holder: list[Any], error: BaseException | None
) -> None:
    try:
        rule = rec.endpoint if rec.endpoint is not _UNSET_ROUTE else None
        method = environ.get("REQUEST_METHOD", "GET")
        rec.endpoint = rule or "unmatched"
        rec.name = f"{method} {rule}" if rule else method
        code = int(status_holder[0].split(" ", 1)[0]) if status_holder else 500
        rec.status_code = code
        rec.outcome = OUTCOME_ERROR if (code >= 500 or error is not None) else OUTCOME_SUCCESS
        rec.payload_in = _content_length(environ.get("CONTENT_LENGTH"))
        if len(status_holder) > 1:
            for key, value in status_holder[1]:
                if key.lower() == "content-length":
                    rec.payload_out = _content_length(value)
                    break
        attrs = {
            ATTR.HTTP_REQUEST_METHOD: method,
            ATTR.URL_PATH: environ.get("PATH_INFO", ""),
            ATTR.URL_SCHEME: environ.get("wsgi.url_scheme", "http"),
            ATTR.HTTP_RESPONSE_STATUS_CODE: code,
        }
        if rule:
            attrs[ATTR.HTTP_ROUTE] = rule
        if environ.get("REMOTE_ADDR"):
            attrs[ATTR.CLIENT_ADDRESS] = environ["REMOTE_ADDR"]
        if rec.payload_in >= 0:
            attrs[ATTR.HTTP_REQUEST_BODY_SIZE] = rec.payload_in
        if rec.payload_out >= 0:
            attrs[ATTR.HTTP_RESPONSE_BODY_SIZE] = rec.payload_out
        if code >= 500:
            attrs[ATTR.ERROR_TYPE] = str(code)
        if rec.attrs:
            attrs.update(rec.attrs)
        rec.attrs = attrs
    except Exception as exc:
        _errors.report("flask", exc)
    _runtime.finish_request(rec, tokens, error)


_flask_request: Any = None  # flask.request, imported once rather than per request


def instrument() -> None:
    global _flask_request
    from flask import request

    _flask_request = request
    wrap("flask", "Flask.wsgi_app", _wsgi_app)
    wrap("flask", "Flask.dispatch_request", _dispatch_request)


def uninstrument() -> None:
    unwrap("flask", "Flask.wsgi_app")
    unwrap("flask", "Flask.dispatch_request")
