"""One ASGI HTTP request as a request record: what any ASGI framework's hook calls.

A framework's patcher (``starlette``; the next ones: LitServe, BentoML, Ray Serve replicas) calls
``serve`` with its app's call, and gives it ``route_of(scope)``, the route template once the
framework has routed. The request ends when the last body chunk is sent (``more_body`` false):
a streamed response ends at its last byte, and tasks run after it (Starlette's background
tasks) are not billed to it. Streamed responses also record when their first chunk went out.

The request's context (``current_request``, the OTel span) is set in the task that awaits the
app; Starlette runs sync endpoints and streamed bodies in threads or child tasks that copy it,
so stages nest under the request there too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry.trace import SpanKind

from .. import _errors, _runtime
from .. import _server_timing as server_timing
from .._records import RequestRecord, now_ns
from ..conventions import OUTCOME_ERROR, OUTCOME_SUCCESS, SERVER_TIMING_HEADER
from ._common import extract_remote_parent, w3c_only

__all__ = ["SCOPE_KEY", "AsgiRequest", "serve", "serve_page"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The scope key that marks a request as ours, so nested apps (a mounted sub-app) and inner hooks
# pass it through. Its value is the AsgiRequest (or another marker a patcher defines).
SCOPE_KEY = "infersight"

_START = "http.response.start"
_BODY = "http.response.body"
_TRACEPARENT = b"traceparent"
_CONTENT_LENGTH = b"content-length"
_HOST = b"host"
_INT64_MAX = 2**63 - 1  # the largest integer an OTLP attribute carries
_SERVER_TIMING = SERVER_TIMING_HEADER.encode("latin-1")


class _Getter:
    def get(self, carrier: AsgiRequest, key: str) -> list[str] | None:
        value = carrier.first(key.lower().encode("latin-1"))
        return [value] if value is not None else None

    def keys(self, carrier: AsgiRequest) -> list[str]:
        return [bytes(name).decode("latin-1") for name, _ in carrier.raw]


_GETTER = _Getter()


class AsgiRequest:
    """What ``serve`` learns about one request while the app runs (kept in the scope). It is
    also the propagation carrier of the request's headers (ASGI's list of byte pairs): one pass
    at the start finds the two the request path needs, the propagator's other lookups scan."""

    # No __slots__: what most requests leave as it is is a class-level default (cheaper to make).
    traceparent: bytes | None = None
    content_length: bytes | None = None
    host: bytes = b""
    rec: RequestRecord = None  # type: ignore[assignment]  # set once the request started
    status = 0
    bytes_out = 0
    first_ns = 0
    end_ns = 0
    disconnected = False
    mounts: tuple[Any, ...] = ()  # route prefixes the framework went through (Starlette's Mount)
    route: Any = None  # the route that handled it, as the framework's hook saw it

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        for name, value in raw:
            if name == _TRACEPARENT:
                self.traceparent = value
            elif name == _CONTENT_LENGTH:
                self.content_length = value
            elif name == _HOST:
                self.host = value

    def __contains__(self, key: object) -> bool:
        if key == "traceparent":
            return self.traceparent is not None
        want = key.encode("latin-1") if isinstance(key, str) else key
        return any(name == want for name, _ in self.raw)

    def first(self, key: bytes) -> str | None:
        for name, value in self.raw:
            if name == key:
                return bytes(value).decode("latin-1")
        return None


async def serve(
    call: Callable[[Scope, Receive, Send], Awaitable[None]],
    scope: Scope,
    receive: Receive,
    send: Send,
    route_of: Callable[[Scope, AsgiRequest], str | None],
    framework: str = "asgi",
) -> None:
    """Await ``call(scope, receive, send)`` as one request. Exceptions pass through unchanged.
    ``framework`` names the OTel excluded-URL variable that applies besides the common one."""
    rt = _runtime._runtime  # get_runtime(), without its call
    try:
        state = AsgiRequest(scope.get("headers") or ())
        if rt is not None and _excluded(rt, framework, scope, state.host):
            await call(scope, receive, send)
            return
    except Exception as exc:  # headers not as the ASGI spec has them: the request goes on, unobserved
        _errors.report("asgi", exc)
        await call(scope, receive, send)
        return
    # No traceparent and the default W3C propagator (the common case): no propagator call.
    parent = None if state.traceparent is None and w3c_only() else extract_remote_parent(state, _GETTER, "traceparent")
    rec, tokens = _runtime.start_request(scope.get("method", "GET"), SpanKind.SERVER, "", parent)
    if rec is None:
        await call(scope, receive, send)
        return
    state.rec = rec
    scope[SCOPE_KEY] = state
    timing = rt is not None and rt.config.server_timing

    async def send_observed(message: Message) -> None:
        kind = message.get("type")
        if kind == _BODY:
            body = message.get("body")
            if body:
                state.bytes_out += len(body)
            if message.get("more_body", False):
                if not state.first_ns:
                    state.first_ns = now_ns()  # a first chunk with more to come: a streamed response
            else:
                try:
                    await send(message)
                except OSError:
                    state.disconnected = True  # the server's send fails once the client has gone
                    raise
                if not state.end_ns:
                    state.end_ns = now_ns()
                return
        elif kind == _START:
            state.status = message.get("status", 0)
            if timing:
                message = _with_server_timing(rec, message)
        try:
            await send(message)
        except OSError:
            state.disconnected = True
            raise

    try:
        await call(scope, receive, send_observed)
    except BaseException as exc:
        _finish(scope, state, tokens, exc, route_of)
        raise
    _finish(scope, state, tokens, None, route_of)


def _with_server_timing(rec: RequestRecord, message: Message) -> Message:
    """The response starts: the header tells what was spent before it (for a streamed response,
    the time to its headers, not to its last byte). A copy: the app may reuse its message."""
    try:
        value = server_timing.value(rec).encode("latin-1")
        return {**message, "headers": [*(message.get("headers") or ()), (_SERVER_TIMING, value)]}
    except Exception as exc:
        _errors.report("asgi", exc)
        return message


def _excluded(rt: Any, framework: str, scope: Scope, host: bytes) -> bool:
    """Whether OTel's excluded-URL variables leave this request out, remembered by its URL's parts."""
    get = scope.get
    key = (framework, get("path"), get("query_string"), host, get("root_path"), get("scheme"))
    try:
        return rt.excluded_urls.seen[key]  # type: ignore[no-any-return]
    except KeyError:
        return rt.excluded_urls.remember(key, framework, _url(scope, host))  # type: ignore[no-any-return]
    except TypeError:  # a part that isn't hashable (a bytearray): not remembered
        return rt.excluded_urls.excluded(framework, _url(scope, host))  # type: ignore[no-any-return]


def _url(scope: Scope, host: bytes) -> str:
    """The request's URL as the excluded-URL patterns of OTel's instrumentations see it."""
    where = bytes(host).decode("latin-1")
    url = f"{scope.get('scheme', 'http')}://{where}{scope.get('root_path', '')}{scope.get('path', '')}"
    query = scope.get("query_string")
    return f"{url}?{query.decode('latin-1')}" if query else url


def _length(raw: bytes | None) -> int:
    """A Content-Length as the client sent it: digits only (RFC 9110), else -1 (not recorded);
    as ``_common.content_length``, on the header's bytes."""
    if raw is None:
        return -1
    raw = bytes(raw).strip()
    if raw.isdigit():  # ASCII digits only, for bytes
        length = int(raw)
        if length <= _INT64_MAX:
            return length
    return -1


def _disconnect_error(exc: BaseException) -> bool:
    """The app's error is the client having gone (Starlette raises ClientDisconnect then)."""
    return type(exc).__name__ == "ClientDisconnect" or isinstance(exc, OSError)


def _finish(
    scope: Scope,
    state: AsgiRequest,
    tokens: Any,
    error: BaseException | None,
    route_of: Callable[[Scope, AsgiRequest], str | None],
    framework: str = "asgi",
) -> None:
    rec = state.rec
    try:
        if error is not None and state.disconnected and _disconnect_error(error):
            error = None  # the client's doing, not the server's: as a stream abandoned under Flask
        route = route_of(scope, state)
        method = scope.get("method", "GET")
        rec.endpoint = route or "unmatched"
        rec.name = f"{method} {route}" if route else method
        code = state.status or 500  # no response started: the server answers 500 (or nothing)
        rec.status_code = code
        rec.outcome = OUTCOME_ERROR if (code >= 500 or error is not None) else OUTCOME_SUCCESS
        if state.first_ns:
            rec.first_byte_ns = state.first_ns
        rec.payload_in = _length(state.content_length)
        rec.payload_out = state.bytes_out if state.status else -1
        client = scope.get("client")
        # The span's attributes are the worker's to make, for the spans it keeps.
        rec.http = (method, scope.get("path", ""), scope.get("scheme", "http"), client[0] if client else None, route)
    except Exception as exc:
        _errors.report("asgi", exc)
    _runtime.finish_request(rec, tokens, error, end_ns=state.end_ns)


async def serve_page(send: Send, content_type: str, body: bytes) -> None:
    """Answer with one page (the metrics, or another exposition page) instead of the app."""
    await send(
        {
            "type": _START,
            "status": 200,
            "headers": [(b"content-type", content_type.encode("latin-1")), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": _BODY, "body": body, "more_body": False})
