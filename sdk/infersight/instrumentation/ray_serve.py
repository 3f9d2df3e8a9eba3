"""Ray Serve: each replica's HTTP requests, one request record per call of the deployment.

``import infersight.auto`` at the top of the deployment's module must run in every replica, but
Ray ships a deployment's class (or function) to its replicas by value: the module it was written
in is not imported there. So where ``infersight.auto`` was imported, each deployment's class gets
a reference to that module (``__infersight_auto__``) as ``@serve.deployment`` serializes it, and a
replica that loads the class imports ``infersight.auto`` first: each replica process is
instrumented on its own. A replica calls the deployment on its user-code event loop with the request's ASGI
scope, receive and send; infersight observes that call as it does an ASGI app's (traceparent,
latency, status, Server-Timing). A deployment that is a Starlette or FastAPI app
(``@serve.ingress``) is observed by the ``starlette`` instrumentation instead, with its route
templates. Requests through deployment handles (model composition) are not HTTP requests and
are not counted here: the ingress deployment's request covers them.

The request's model label is the first model a stage names, else the deployment's name. Each
replica is a process of its own, possibly on another node: ``INFERSIGHT_METRICS_EXPORTER=otlp``
pushes every replica's metrics to the collector instead of serving a port per replica.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import wrapt

from .. import _compat, _errors
from . import _asgi

__all__ = ["instrument", "uninstrument"]

_undo: Callable[[], None] | None = None
_replica_config: Any = None  # the class whose ``create`` we wrapped
AUTO_ATTRIBUTE = "__infersight_auto__"
_deployment: list[str] = []  # this replica's deployment name, once known


def _deployment_name() -> str | None:
    if not _deployment:
        try:
            from ray import serve  # type: ignore[import-not-found]  # not in the main env

            _deployment.append(serve.get_replica_context().deployment)
        except Exception:
            return None  # not in a replica (local testing mode): no default model
    return _deployment[0]


def _route_of(scope: Any, state: _asgi.AsgiRequest) -> str:
    """The deployment's route prefix (the proxy puts it in ``root_path``); as the model, the
    deployment's name when no stage named one."""
    rec = state.rec
    if rec is not None and rec.model is None:
        rec.set_model(_deployment_name())
    return str(scope.get("root_path") or "/")


def _observed(inner: Callable[..., Any]) -> Callable[..., Any]:
    async def call_http_entrypoint(self: Any, user_method_info: Any, scope: Any, receive: Any, send: Any) -> Any:
        if getattr(user_method_info, "is_asgi_app", False):  # an ingress app: the starlette instrumentation's
            return await inner(self, user_method_info, scope, receive, send)
        result: list[Any] = []

        async def call(scope: Any, receive: Any, send: Any) -> None:
            result.append(await inner(self, user_method_info, scope, receive, send))

        await _asgi.serve(call, scope, receive, send, _route_of, "ray_serve")
        return result[0] if result else None

    return call_http_entrypoint


def _carry_auto(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Before the deployment's class or function is serialized: a reference to
    ``infersight.auto``, so that loading it in a replica imports (and so runs) the one line."""
    auto = sys.modules.get(__name__.partition(".")[0] + ".auto")  # present only where the one line ran
    target = args[0] if args else kwargs.get("deployment_def")
    if auto is not None and not isinstance(target, str) and target is not None:
        try:
            setattr(target, AUTO_ATTRIBUTE, auto)
        except Exception as exc:  # a callable that takes no attributes: that deployment goes uninstrumented
            _errors.report("instrument.ray_serve", exc)
    return wrapped(*args, **kwargs)


def instrument() -> None:
    global _undo, _replica_config
    if _undo is not None:
        return
    _undo = _compat.wrap_ray_serve_http_entrypoint(_observed)
    _replica_config = _compat.ray_serve_replica_config()
    if _replica_config is not None:
        wrapt.wrap_function_wrapper(_replica_config, "create", _carry_auto)
    if _undo is None or _replica_config is None:
        _errors.report("instrument.ray_serve", RuntimeError("Ray Serve's internals moved; not fully instrumented"))


def uninstrument() -> None:
    global _undo, _replica_config
    if _undo is not None:
        _undo()
        _undo = None
    if _replica_config is not None:
        create = vars(_replica_config)["create"]
        if hasattr(create, "__wrapped__"):
            _replica_config.create = create.__wrapped__
        _replica_config = None
