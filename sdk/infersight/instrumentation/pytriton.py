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
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from .. import _errors, _runtime
from ..conventions import SPAN
from ..stages import Request, Stage, _Scope
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


class _Call(_Scope):
    """One call of an inference callable: PyTriton's span of its first request made current (so
    the stages join Triton's trace), a request of the bound model, and its ``model`` stage. As a
    decorator (``_Scope``), it keeps a streaming callable's context changes to its own steps."""

    __slots__ = ("_model", "_request", "_requests", "_stage", "_token", "_version")

    def __init__(self, model: str, version: str, requests: Any) -> None:
        self._model, self._version, self._requests = model, version, requests
        self._token: Any = None
        self._request: Request | None = None
        self._stage: Stage | None = None

    def _clone(self) -> _Call:
        return _Call(self._model, self._version, self._requests)

    def _enter(self) -> None:
        span = _parent_span(self._requests)
        if span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(span))
        self._request = Request(self._model, self._model, SPAN.REQUEST, self._version)
        self._stage = Stage(SPAN.MODEL, self._model, _batch_size(self._requests))
        self._request.__enter__()
        self._stage.__enter__()

    def _exit(self, error: BaseException | None) -> None:
        try:
            if self._stage is not None:
                self._stage._exit(error)
            if self._request is not None:
                self._request._exit(error)
        finally:
            if self._token is not None:
                otel_context.detach(self._token)


def _traced(fn: Callable[..., Any], model: str, version: str) -> Callable[..., Any]:
    if getattr(fn, "__infersight_pytriton__", False):
        return fn
    # PyTriton tells sync from async callables, and plain from streaming (decoupled) ones, by
    # their kind: each wrapper is of its callable's kind. A stream's stage lasts to its end.
    traced: Callable[..., Any]
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def astream(requests: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async for item in _Call(model, version, requests)(fn)(requests, *args, **kwargs):
                yield item

        traced = astream
    elif inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def acall(requests: Any, *args: Any, **kwargs: Any) -> Any:
            return await _Call(model, version, requests)(fn)(requests, *args, **kwargs)

        traced = acall
    elif inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(requests: Any, *args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            return (yield from _Call(model, version, requests)(fn)(requests, *args, **kwargs))

        traced = stream
    else:

        @functools.wraps(fn)
        def call(requests: Any, *args: Any, **kwargs: Any) -> Any:
            with _Call(model, version, requests):
                return fn(requests, *args, **kwargs)

        traced = call
    marked: Any = traced
    marked.__infersight_pytriton__ = True
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
