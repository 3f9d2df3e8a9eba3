"""BentoML (``@bentoml.service`` served by ``bentoml serve``): each API call's parsing of the
request, the API function and the rendering of its answer become the preprocess, model and
postprocess stages of the request.

A BentoML service is a Starlette app: its requests are instrumented by ``starlette``, in each
worker process ``bentoml serve`` starts (they import the service module, hence
``import infersight.auto``). BentoML traces with OpenTelemetry's ASGI middleware and a tracer
provider of its own: when that provider records the request (``tracing.sample_rate`` above 0),
its span is the server span and infersight's stages are its children; otherwise (BentoML's
default) infersight's span is the server span. BentoML's ``/metrics`` route stays BentoML's:
infersight's metrics are on ``INFERSIGHT_METRICS_PORT``, and, since ``bentoml serve`` runs
prometheus_client in multiprocess mode, on BentoML's ``/metrics`` too.

An API with adaptive batching (``batchable=True``) runs its batches in BentoML's dispatcher, apart
from any one request: it gets no model stage (BentoML's own histogram has its batch sizes).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from .. import _compat, _errors
from ..conventions import SPAN
from ..stages import Stage
from ._common import unwrap, wrap

__all__ = ["instrument", "uninstrument"]


def _staged(name: str) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async def run() -> Any:
            with Stage(name):
                return await wrapped(*args, **kwargs)

        return run()

    return wrapper


def _model_stage(fn: Callable[..., Any], original: Any) -> Callable[..., Any]:
    """``fn`` (BentoML's caller of the user's ``original``) timed as the model stage, keeping the
    kind of function BentoML tells apart by looking at ``original``."""
    if inspect.isasyncgenfunction(original):

        async def agen(*args: Any, **kwargs: Any) -> Any:
            async for item in fn(*args, **kwargs):
                yield item

        inner: Callable[..., Any] = agen
    elif inspect.isgeneratorfunction(original):

        def gen(*args: Any, **kwargs: Any) -> Any:
            return (yield from fn(*args, **kwargs))

        inner = gen
    elif inspect.iscoroutinefunction(original):

        async def coro(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs)

        inner = coro
    else:
        inner = fn
    staged = Stage(SPAN.MODEL)(inner)
    return functools.wraps(fn)(staged)  # BentoML's marks (func, __signature__) carried over


def _local_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    fn = wrapped(*args, **kwargs)
    try:
        if getattr(instance, "batchable", False):
            return fn
        return _model_stage(fn, getattr(instance, "func", None))
    except Exception as exc:
        _errors.report("bentoml", exc)
        return fn


def instrument() -> None:
    module, owner = _compat.BENTOML_IO
    wrap(module, f"{owner}.from_http_request", _staged(SPAN.PREPROCESS))
    wrap(module, f"{owner}.to_http_response", _staged(SPAN.POSTPROCESS))
    wrap(*_compat.BENTOML_LOCAL_CALL, _local_call)


def uninstrument() -> None:
    module, owner = _compat.BENTOML_IO
    unwrap(module, f"{owner}.from_http_request")
    unwrap(module, f"{owner}.to_http_response")
    unwrap(*_compat.BENTOML_LOCAL_CALL)
