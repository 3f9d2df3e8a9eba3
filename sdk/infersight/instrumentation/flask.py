"""Flask: every request becomes a server span and a latency observation; ``/metrics`` is served.

``Flask.__call__`` is patched on the base class, so apps created before or after the import are
covered, whatever wraps their ``wsgi_app``. The server span is built later by the worker from
ids drawn here; on an app that opentelemetry-instrumentation-flask traces, its span is the
request's SERVER span and infersight's stages are its children. If the app serves the metrics
path itself, that stays the app's.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from .. import _compat, _errors, _runtime
from .. import _server_timing as server_timing
from .._records import current_request, now_ns
from ..conventions import ATTR, OUTCOME_ERROR, SERVER_TIMING_HEADER
from ._common import content_length, extract_remote_parent, unwrap, wrap

__all__ = ["instrument", "uninstrument"]

logger = logging.getLogger("infersight")


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
    if rt.config.serves_metrics and rt.config.metrics_path and path == rt.config.metrics_path:
        return _serve_metrics(rt, instance, wrapped, args, kwargs)  # type: ignore[no-any-return]
    page = rt.exposition.pages.get(path) if rt.config.metrics_path else None
    if page is not None:  # e.g. /drift, next to /metrics
        content_type, body = page()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
    if rt.excluded_urls.excluded("flask", _url(environ)):
        return wrapped(*args, **kwargs)  # type: ignore[no-any-return]
    method = environ.get("REQUEST_METHOD", "GET")
    parent = extract_remote_parent(environ, _GETTER, "HTTP_TRACEPARENT")
    # otel-flask starts its server span later, in before_request: leave the SERVER kind to it.
    deferred = _compat.flask_app_traced_by_contrib(instance)
    rec, tokens = _runtime.start_request(method, SpanKind.SERVER, _UNSET_ROUTE, parent, defer_span=deferred)
    if rec is None:
        return wrapped(*args, **kwargs)  # type: ignore[no-any-return]
    status_holder: list[Any] = []
    timing = rt.config.server_timing

    def _start_response(status: str, headers: list[tuple[str, str]], *a: Any) -> Any:
        status_holder.append(status)
        status_holder.append(headers)
        if timing:
            headers = _with_server_timing(rec, headers)
        return start_response(status, headers, *a)

    try:
        result = wrapped(environ, _start_response)
    except BaseException as exc:
        _describe(rec, environ, status_holder)
        _runtime.finish_request(rec, tokens, exc)
        raise
    _describe(rec, environ, status_holder)
    if rec.payload_out < 0 and status_holder and environ.get("REQUEST_METHOD") != "HEAD":
        # No Content-Length: a streamed body (a generator, server-sent events). The request
        # ends at its last byte, when the server closes it, not when the view returned.
        _runtime.suspend_request(tokens)
        return _StreamedBody(rec, result)
    _runtime.finish_request(rec, tokens, None)
    return result  # type: ignore[no-any-return]


class _StreamedBody:
    """The WSGI body of a streamed response: times its first and last byte, counts its bytes,
    and ends the request when the server closes it (after the last chunk, an error, or the
    client going away). The app's generator runs with the request current, so its stages nest."""

    __slots__ = ("_body", "_error", "_rec")

    def __init__(self, rec: Any, body: Iterable[bytes]) -> None:
        self._rec = rec
        self._body = body
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        rec = self._rec
        chunks = iter(self._body)
        rec.payload_out = 0
        while True:
            tokens = _runtime.resume_request(rec)
            try:
                chunk = next(chunks)
            except StopIteration:
                rec.end_ns = now_ns()  # the last byte went out with the previous chunk
                return
            except BaseException as exc:
                self._error = exc
                raise
            finally:
                _runtime.suspend_request(tokens)
            if chunk and not rec.first_byte_ns:
                rec.first_byte_ns = now_ns()
            rec.payload_out += len(chunk)
            yield chunk

    def close(self) -> None:
        rec, error = self._rec, self._error
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()  # the app's teardown runs here: Flask's request context ends
        finally:
            try:
                if rec.payload_out >= 0 and rec.attrs is not None:
                    rec.attrs[ATTR.HTTP_RESPONSE_BODY_SIZE] = rec.payload_out
                if error is not None:
                    rec.outcome = OUTCOME_ERROR
            except Exception as exc:
                _errors.report("flask", exc)
            # Ends at the last byte; a stream the client left ends now.
            _runtime.finish_request(rec, (None, None), error, end_ns=rec.end_ns)


def _with_server_timing(rec: Any, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The view has returned: its stages are finished, and the total runs to now."""
    try:
        return [*headers, (_SERVER_TIMING, server_timing.value(rec))]
    except Exception as exc:
        _errors.report("flask", exc)
        return headers


_SERVER_TIMING = SERVER_TIMING_HEADER


def _url(environ: dict[str, Any]) -> str:
    """The request's URL as the excluded-URL patterns of OTel's instrumentations see it."""
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    query = environ.get("QUERY_STRING")
    url = f"{environ.get('wsgi.url_scheme', 'http')}://{host}{environ.get('PATH_INFO', '')}"
    return f"{url}?{query}" if query else url


_app_owns_metrics: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _serve_metrics(
    rt: Any, app: Any, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The metrics path: the app's own, if it serves one (a route, or prometheus_client's WSGI
    app mounted in front of it); else infersight's. The app is asked first, once per app."""
    environ, start_response = args[0], args[1]
    owns = _app_owns_metrics.get(app)
    if owns is None:
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Callable[[bytes], Any]:
            captured[:] = [status, headers, exc]
            return lambda data: None

        body = wrapped(environ, capture, **kwargs)
        owns = bool(captured) and not str(captured[0]).startswith("404")
        _app_owns_metrics[app] = owns
        if owns:
            _log_metrics_owner(rt)
        if owns:
            start_response(captured[0], captured[1], *captured[2])
            return body
        if hasattr(body, "close"):
            body.close()
    elif owns:
        return wrapped(*args, **kwargs)
    content_type, payload = rt.exposition.metrics(environ.get("HTTP_ACCEPT"))
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
    return [payload]


def _log_metrics_owner(rt: Any) -> None:
    path = rt.config.metrics_path
    if rt.registry is REGISTRY:
        logger.info(
            "infersight: the app serves %s itself; infersight's metrics are in prometheus_client's "
            "default registry, which that route serves.",
            path,
        )
        return
    try:
        server = rt.start_metrics_server()
        where = f"port {server.port}"
    except Exception as exc:
        _errors.report("metrics_server", exc)
        where = "no port (the metrics server could not start)"
    logger.warning("infersight: the app serves %s itself; infersight's metrics are served on %s.", path, where)


def _preprocess_request(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Runs inside Flask's request context, where the matched route template is known, around
    the before_request handlers: otel-flask starts its span in one of them (and one of the app's
    may answer the request itself, so this is the place rather than dispatch_request)."""
    rec = current_request.get()
    if rec is None:
        return wrapped(*args, **kwargs)
    try:
        rule = _flask_request.url_rule
        if rule is not None:
            rec.endpoint = rule.rule
    except Exception as exc:
        _errors.report("flask", exc)
    result = wrapped(*args, **kwargs)
    if rec.deferred:
        _runtime.adopt_server_span(rec)
    return result


def _describe(rec: Any, environ: dict[str, Any], status_holder: list[Any]) -> None:
    """The request's route, status, sizes and span attributes, once the app has answered."""
    try:
        rule = rec.endpoint if rec.endpoint is not _UNSET_ROUTE else None
        method = environ.get("REQUEST_METHOD", "GET")
        rec.endpoint = rule or "unmatched"
        rec.name = f"{method} {rule}" if rule else method
        code = int(status_holder[0].split(" ", 1)[0]) if status_holder else 500
        rec.status_code = code
        if code >= 500:
            rec.outcome = OUTCOME_ERROR  # else finish_request decides, from the error if any
        rec.payload_in = content_length(environ.get("CONTENT_LENGTH"))
        if len(status_holder) > 1:
            for key, value in status_holder[1]:
                if key.lower() == "content-length":
                    rec.payload_out = content_length(value)
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


_flask_request: Any = None  # flask.request, imported once rather than per request


def instrument() -> None:
    global _flask_request
    from flask import request

    _flask_request = request
    # On the base class, looked up on the type: apps whose wsgi_app another instrumentation
    # wrapped (even before this import), and its Flask subclass, are covered.
    wrap("flask.app", "Flask.__call__", _wsgi_app)
    wrap("flask.app", "Flask.preprocess_request", _preprocess_request)


def uninstrument() -> None:
    unwrap("flask.app", "Flask.__call__")
    unwrap("flask.app", "Flask.preprocess_request")
