"""PyTriton: each call of a bound inference callable (``Triton.bind(infer_func=...)``) is a
request of the bound model, its whole call the ``model`` stage, with the number of Triton
requests it got as the batch size. Binding a model starts infersight's /metrics server
(``INFERSIGHT_METRICS_PORT``), as a Flask or gRPC server does.

With Triton's OpenTelemetry tracing on (``TritonConfig(trace_config=[...])``), PyTriton hands
the callable each request's span, which continues Triton's trace: the stage spans become its
children, so one trace runs from the client through Triton to the model stage. Without it, each
call is a trace of its own, rooted in an ``inference`` span.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from .. import _errors, _runtime
from ..conventions import SPAN
from ..stages import Request, Stage
from ._common import unwrap, wrap

__all__ = ["instrument", "uninstrument"]

_MODULE = "pytriton.triton"
_BIND = "TritonBase.bind"  # Triton and RemoteTriton inherit it


def _parent_span(requests: Any) -> Any:
    """PyTriton's span of the first request (its ``Request.span``), when Triton traces."""
    try:
        first = requests[0] if isinstance(requests, Sequence) and len(requests) else None
        span = getattr(first, "span", None)
        return span if span is not None and span.get_span_context().is_valid else None
    except Exception as exc:
        _errors.report("pytriton", exc)
        return None


def _batch_size(requests: Any) -> int:
    return len(requests) if isinstance(requests, Sequence) else 1


def _traced(fn: Callable[..., Any], model: str, version: str) -> Callable[..., Any]:
    if getattr(fn, "__infersight_pytriton__", False):
        return fn

    def scopes(requests: Any) -> tuple[Any, Request, Stage]:
        span = _parent_span(requests)
        token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        return token, Request(model, model, SPAN.REQUEST, version), Stage(SPAN.MODEL, model, _batch_size(requests))

    if inspect.isgeneratorfunction(fn):  # a decoupled model: the stage lasts until the last response

        @functools.wraps(fn)
        def stream(requests: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            token, request, stage = scopes(requests)
            try:
                with request, stage:
                    yield from fn(requests, *args, **kwargs)
            finally:
                if token is not None:
                    otel_context.detach(token)

        traced: Callable[..., Any] = stream
    else:

        @functools.wraps(fn)
        def call(requests: Any, *args: Any, **kwargs: Any) -> Any:
            token, request, stage = scopes(requests)
            try:
                with request, stage:
                    return fn(requests, *args, **kwargs)
            finally:
                if token is not None:
                    otel_context.detach(token)

        traced = call
    traced.__infersight_pytriton__ = True  # type: ignore[attr-defined]
    return traced


def _start_metrics_server() -> None:
    rt = _runtime.get_runtime()
    if rt is None or not rt.config.metrics or rt.config.metrics_port == 0 or rt.metrics_server is not None:
        return
    try:
        rt.start_metrics_server()
    except Exception as exc:  # the port is taken (a second process): served by the first
        _errors.report("metrics_server", exc)


def _bind(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _start_metrics_server()
    try:
        bound = inspect.signature(wrapped).bind(*args, **kwargs)
        model = str(bound.arguments["model_name"])
        version = str(bound.arguments.get("model_version", 1))
        funcs = bound.arguments["infer_func"]
        if callable(funcs):
            bound.arguments["infer_func"] = _traced(funcs, model, version)
        else:
            bound.arguments["infer_func"] = [_traced(f, model, version) for f in funcs]
        args, kwargs = bound.args, bound.kwargs
    except Exception as exc:
        _errors.report("pytriton", exc)
    return wrapped(*args, **kwargs)


def instrument() -> None:
    wrap(_MODULE, _BIND, _bind)


def uninstrument() -> None:
    unwrap(_MODULE, _BIND)
