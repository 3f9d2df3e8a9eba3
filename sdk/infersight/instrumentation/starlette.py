"""Starlette and FastAPI (which is Starlette): every HTTP request becomes a server span and a
latency observation, labelled with the route template; ``/metrics`` is served.

``Starlette.__call__`` is patched on the class, so apps created before or after the import are
covered, and so are FastAPI apps (FastAPI's ``__call__`` calls Starlette's). The route template
comes from the matched route (``scope["route"]`` in recent Starlette, ``Route.handle`` before),
with the prefixes of the ``Mount``s in front of it (``Mount.handle``), or from FastAPI's record
of an included router's route. WebSocket and lifespan scopes pass through untouched.

FastAPI traces requests itself when a tracer provider is set: see ``instrumentation.fastapi``.
opentelemetry-instrumentation-fastapi puts its middleware inside the app's middleware stack,
below ``Starlette.__call__``. When an app's stack holds that middleware, the request is taken at
the app's router instead (``Router.__call__``), inside the contrib SERVER span, so there is one
server span and the stages are its children (as with opentelemetry-instrumentation-flask). A
contrib span of another tracer provider than infersight's that won't be exported (BentoML's own
provider, at its defaults) is passed over: then infersight's span is the server span.

The metrics path is served on the app unless one of the app's routes owns it; then the metrics
are on ``INFERSIGHT_METRICS_PORT``.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from packaging.version import InvalidVersion, Version

from .. import _compat, _errors, _runtime, multiprocess
from ..metrics import multiprocess_mode
from ._asgi import SCOPE_KEY, AsgiRequest, serve, serve_page
from ._common import unwrap, wrap
from ._library import installed_version
from .fastapi import hand_over_tracing

__all__ = ["instrument", "uninstrument"]

_DEFERRED = "deferred"  # scope[SCOPE_KEY]: the router takes the request (contrib middleware inside)
_MAX_STACK_DEPTH = 64
_CONTRIB_ASGI = "opentelemetry.instrumentation.asgi"


class _AppInfo:
    """Per app, computed on its first requests: whether contrib's middleware is in its stack
    (for the stack it was computed on) and which exposition paths its routes own."""

    __slots__ = ("contrib_apart", "contrib_inside", "framework", "owned", "stack")

    def __init__(self, framework: str) -> None:
        self.framework = framework  # which excluded-URL variable applies, found once per app
        self.stack: Any = None
        self.contrib_inside = False
        self.contrib_apart = False  # contrib's middleware traces with a provider other than infersight's
        self.owned: dict[str, bool] = {}


_apps: weakref.WeakKeyDictionary[Any, _AppInfo] = weakref.WeakKeyDictionary()


def _contrib_middleware(app: Any, stack: Any) -> Any:
    """contrib's ASGI middleware in the app's stack, or None."""
    module = sys.modules.get(_CONTRIB_ASGI)
    middleware = getattr(module, "OpenTelemetryMiddleware", None) if module is not None else None
    if middleware is None:
        return None
    node, router = stack, getattr(app, "router", None)
    for _ in range(_MAX_STACK_DEPTH):
        if node is None or node is router:
            return None
        if isinstance(node, middleware):
            return node
        node = getattr(node, "app", None)
    return None


_last: tuple[Any, _AppInfo | None] = (None, None)  # most processes serve one app: skip the weak lookup


def _info(app: Any) -> _AppInfo:
    global _last
    last_app, info = _last
    if last_app is not app or info is None:
        info = _apps.get(app)
        if info is None:
            info = _apps[app] = _AppInfo(_framework(app))
        _last = (app, info)
    stack = app.middleware_stack
    if stack is None:
        # What Starlette.__call__ does first; done here to see what the stack holds.
        stack = app.middleware_stack = app.build_middleware_stack()
    if stack is not info.stack:
        info.stack = stack
        contrib = _contrib_middleware(app, stack)
        info.contrib_inside = contrib is not None
        rt = _runtime.get_runtime()
        if contrib is not None:
            provider = rt.provider if rt is not None else None
            info.contrib_apart = provider is not None and _compat.tracer_apart(
                getattr(contrib, "tracer", None), provider
            )
            _defer_to_router()
        hand_over_tracing(app)  # an app created before infersight started: from its next request
        if rt is not None and rt.config.serves_metrics and rt.config.metrics_path:
            _owns(app, info, rt.config.metrics_path)  # owned: the metrics port opens now
    return info


def _owns(app: Any, info: _AppInfo, path: str) -> bool:
    """Whether one of the app's routes answers ``path`` (then it isn't ours to serve)."""
    owned = info.owned.get(path)
    if owned is None:
        owned = False
        probe = {"type": "http", "path": path, "root_path": "", "method": "GET", "headers": []}
        try:
            from starlette.routing import Match

            owned = any(route.matches(probe)[0] is not Match.NONE for route in app.routes)
        except Exception as exc:
            owned = True  # can't tell: leave the path to the app, metrics go to their port
            _errors.report("starlette", exc)
        info.owned[path] = owned
        if owned:
            _start_metrics_server()
    return owned


_metrics_tried: weakref.WeakSet[Any] = weakref.WeakSet()


def _start_metrics_server() -> None:
    """Serve the metrics on INFERSIGHT_METRICS_PORT, once per runtime; with several workers the
    first binds it and the others report it once (infersight_sdk_errors_total)."""
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


def _route_path(scope: Any) -> str:
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _page(rt: Any, app: Any, info: _AppInfo, scope: Any) -> Callable[[], tuple[str, bytes]] | None:
    """The exposition page this request asks for, if it isn't the app's: the metrics, /drift..."""
    cfg = rt.config
    if not cfg.metrics_path:
        return None
    path = _route_path(scope)
    if path == cfg.metrics_path and cfg.serves_metrics:
        if _owns(app, info, path):
            return None
        accept = None
        for name, value in scope.get("headers") or ():
            if name == b"accept":
                accept = bytes(value).decode("latin-1")
        return lambda: rt.exposition.metrics(accept)  # type: ignore[no-any-return]
    page = rt.exposition.pages.get(path)
    if page is None or _owns(app, info, path):
        return None
    return page  # type: ignore[no-any-return]


async def _serve_page(page: Callable[[], tuple[str, bytes]], send: Any) -> None:
    from anyio import CapacityLimiter, to_thread  # Starlette's own dependency

    # Off the event loop: a multiprocess scrape reads files under a lock. With a limiter of its
    # own: a scrape that queued behind requests for the app's threads (a load spike) would time
    # out just when the queueing is what the metrics should show.
    content_type, body = await to_thread.run_sync(page, limiter=CapacityLimiter(1))
    await serve_page(send, content_type, body)


def _route_of(scope: Any, state: AsgiRequest) -> str | None:
    """The template of the route that handled the request, with its mounts' prefixes."""
    route = scope.get("route") or state.route  # Starlette sets scope["route"] from 1.x on
    template = _compat.fastapi_route_template(scope)  # FastAPI's included routers
    if template is None:
        template = getattr(route, "path", None)
        if not isinstance(template, str):
            return None
    if state.mounts:
        return "".join(m.path for m in state.mounts if m is not route) + template
    return template


def _app_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    rt = _runtime._runtime  # get_runtime(), without its call
    if rt is None or kwargs or len(args) != 3:
        return wrapped(*args, **kwargs)
    try:
        scope = args[0]
        kind = scope.get("type")
        if kind != "http" or SCOPE_KEY in scope:
            if kind == "lifespan":
                _info(instance)  # at start-up: the metrics port opens before the first request
            return wrapped(*args, **kwargs)  # websocket, lifespan, or a mounted sub-app
        last_app, info = _last  # _info's own first check, without its call: most processes serve one app
        if last_app is not instance or info is None or instance.middleware_stack is not info.stack:
            info = _info(instance)
        if info.contrib_inside:
            scope[SCOPE_KEY] = _DEFERRED
            return wrapped(*args, **kwargs)
        metrics_path = rt.config.metrics_path
        # Most requests: neither the metrics path (root_path stripped: its tail) nor another page.
        if metrics_path and (rt.exposition.pages or scope.get("path", "").endswith(metrics_path)):
            page = _page(rt, instance, info, scope)
            if page is not None:
                return _serve_page(page, args[2])
    except Exception as exc:
        _errors.report("starlette", exc)
        return wrapped(*args, **kwargs)
    return serve(wrapped, scope, args[1], args[2], _route_of, info.framework)


def _framework(app: Any) -> str:
    """Which OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS applies: FastAPI's apps are Starlette apps."""
    return "fastapi" if type(app).__module__.startswith("fastapi") else "starlette"


def _router_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Takes the request under contrib's middleware: the app marked it deferred."""
    try:
        scope = args[0] if args else None
        if scope is None or scope.get(SCOPE_KEY) is not _DEFERRED:
            return wrapped(*args, **kwargs)
        rt = _runtime.get_runtime()
        if rt is None:
            return wrapped(*args, **kwargs)
        del scope[SCOPE_KEY]
        app = scope.get("app")
        info = _apps.get(app) if app is not None else None
        if info is not None:
            page = _page(rt, app, info, scope)
            if page is not None:
                return _serve_page(page, args[2])
    except Exception as exc:
        _errors.report("starlette", exc)
        return wrapped(*args, **kwargs)
    if info is not None and info.contrib_apart and not _exported_span():
        return _serve_as_server(wrapped, scope, args[1], args[2], _framework(scope.get("app")))
    return serve(wrapped, scope, args[1], args[2], _route_of, _framework(scope.get("app")))


def _exported_span() -> bool:
    """Whether contrib's middleware, tracing with a provider of its own, records a SERVER span
    that will be exported. BentoML's provider, at its defaults, records none (a sample rate of 0)
    or exports none (no exporter): then infersight's is the server span, as if the middleware
    weren't there. (A middleware on infersight's provider keeps its sampling decision.)"""
    try:
        span = trace.get_current_span()
        if not span.get_span_context().is_valid:
            return True  # not contrib's: nothing to pass over
        return span.is_recording() and not _compat.span_goes_nowhere(span)
    except Exception as exc:
        _errors.report("starlette", exc)
        return True


async def _serve_as_server(wrapped: Callable[..., Any], scope: Any, receive: Any, send: Any, framework: str) -> None:
    token = otel_context.attach(trace.set_span_in_context(trace.INVALID_SPAN))
    try:
        await serve(wrapped, scope, receive, send, _route_of, framework)
    finally:
        otel_context.detach(token)


def _mount_handle(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    state = args[0].get(SCOPE_KEY) if args else None
    if isinstance(state, AsgiRequest):
        state.mounts = (*state.mounts, instance)
    return wrapped(*args, **kwargs)


def _route_handle(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The matched route, for Starlette versions that don't put it in the scope."""
    state = args[0].get(SCOPE_KEY) if args else None
    if isinstance(state, AsgiRequest):
        state.route = instance
    return wrapped(*args, **kwargs)


_reaped_in: int | None = None  # the pid that started its reap (once per process)


def _reap_in_background() -> None:
    """Spawned workers (``uvicorn --workers N``) have no gunicorn ``child_exit``: each worker, as
    it starts, merges the files of workers that died before it (see ``infersight.multiprocess``)."""
    global _reaped_in
    if multiprocess_mode() and _reaped_in != os.getpid():
        _reaped_in = os.getpid()
        threading.Thread(target=multiprocess.reap_dead, name="infersight-reap", daemon=True).start()


def _route_in_scope() -> bool:
    """Starlette 1.7 and later put the matched route in ``scope["route"]``; before, the
    ``Route.handle`` hook finds it (FastAPI's routes set it in every version)."""
    found = installed_version("starlette")
    try:
        return found is not None and Version(found) >= Version("1.7")
    except InvalidVersion:
        return False


def _defer_to_router() -> None:
    """The router's hook, installed once an app with contrib's middleware is seen: until then
    requests don't pay for it."""
    wrap("starlette.routing", "Router.__call__", _router_call)


def instrument() -> None:
    wrap("starlette.applications", "Starlette.__call__", _app_call)
    wrap("starlette.routing", "Mount.handle", _mount_handle)
    if not _route_in_scope():
        wrap("starlette.routing", "Route.handle", _route_handle)
    _reap_in_background()


def uninstrument() -> None:
    unwrap("starlette.applications", "Starlette.__call__")
    unwrap("starlette.routing", "Router.__call__")
    unwrap("starlette.routing", "Mount.handle")
    unwrap("starlette.routing", "Route.handle")
