"""Stages and requests for custom code: decorators and context managers.

``stage("name")`` works as ``with``, ``async with`` and as a decorator on sync and async
functions, generators and async generators. The user's exceptions are recorded on the span
and re-raised unchanged. A decorated generator runs in a context of its own, so its stage is
not current in the consumer's code between items, nor left behind when it is abandoned.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import types
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, TypeVar, overload

from opentelemetry.trace import SpanKind

from . import _runtime
from ._records import RequestRecord, StageRecord, current_request, current_stage
from .conventions import SPAN

__all__ = [
    "Request",
    "Stage",
    "current_request_handle",
    "model",
    "postprocess",
    "preprocess",
    "request",
    "stage",
]

F = TypeVar("F", bound=Callable[..., Any])


def _steps_in(ctx: contextvars.Context, it: Any) -> Generator[Any, Any, Any]:
    """Drive ``it`` (a generator, or an awaitable's iterator) one step at a time inside ``ctx``:
    the context it changes is its own, whichever thread or task resumes or finalises it."""
    step, value = it.send, None
    while True:
        try:
            item = ctx.run(step, value)
        except StopIteration as stop:
            return stop.value
        try:
            value = yield item
        except GeneratorExit:
            ctx.run(it.close)
            raise
        except BaseException as exc:
            step, value = it.throw, exc
        else:
            step = it.send


@types.coroutine
def _await_in(ctx: contextvars.Context, awaitable: Any) -> Generator[Any, Any, Any]:
    return (yield from _steps_in(ctx, awaitable.__await__()))


class _Scope:
    """Shared shape of ``Stage`` and ``Request``: context manager and decorator in one."""

    __slots__ = ()

    def _enter(self) -> None:
        raise NotImplementedError

    def _exit(self, error: BaseException | None) -> None:
        raise NotImplementedError

    def _clone(self) -> _Scope:
        raise NotImplementedError

    def __enter__(self) -> _Scope:
        self._enter()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._exit(ev)

    async def __aenter__(self) -> _Scope:
        self._enter()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(ev)

    def __call__(self, fn: F) -> F:
        clone = self._clone
        if inspect.isasyncgenfunction(fn):

            async def agen_staged(*args: Any, **kwargs: Any) -> Any:
                with clone():
                    async for item in fn(*args, **kwargs):
                        yield item

            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = contextvars.copy_context()
                inner = agen_staged(*args, **kwargs)
                step, value = inner.asend, None
                while True:
                    try:
                        item = await _await_in(ctx, step(value))
                    except StopAsyncIteration:
                        return
                    try:
                        value = yield item
                    except GeneratorExit:
                        await _await_in(ctx, inner.aclose())
                        raise
                    except BaseException as exc:
                        step, value = inner.athrow, exc
                    else:
                        step = inner.asend

            return agen_wrapper  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with clone():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):

            def gen_staged(*args: Any, **kwargs: Any) -> Any:
                with clone():
                    return (yield from fn(*args, **kwargs))

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                return (yield from _steps_in(contextvars.copy_context(), gen_staged(*args, **kwargs)))

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with clone():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class Stage(StageRecord, _Scope):
    """One stage of a request: the stage is its own record. Entered while that record is in use
    (a stage object kept and entered again, nested, or from several threads at once), each entry
    makes a record of its own."""

    __slots__ = ()

    def __init__(self, name: str, model: str | None = None, batch_size: int = 0) -> None:
        # The rest of the record is set as it is entered (_runtime.enter_stage).
        self.name = name
        self.model = model
        self.batch_size = batch_size
        self.start_ns = 0
        self.stage_token = None
        self.origin = None

    def _clone(self) -> Stage:
        return Stage(self.name, self.model, self.batch_size)

    def _enter(self) -> None:
        _runtime.enter_stage(self)

    def _exit(self, error: BaseException | None) -> None:
        _runtime.exit_stage(self, None, error)

    # ``with``: one call in and one out, on the request path.
    __enter__ = _runtime.enter_stage
    __exit__ = _runtime.exit_stage

    def set_attribute(self, key: str, value: Any) -> None:
        current = current_stage.get()
        st = current if current is not None and current.origin is self else self
        if st.stage_token is not None:
            st.set_attr(key, value)


class Request(_Scope):
    """A request for entry points that are not HTTP or gRPC (queue consumers, batch jobs)."""

    __slots__ = ("_endpoint", "_model", "_name", "_record", "_tokens", "_version")

    def __init__(
        self, model: str | None = None, endpoint: str = "", name: str = SPAN.REQUEST, version: str | None = None
    ) -> None:
        self._model = model
        self._endpoint = endpoint
        self._name = name
        self._version = version
        self._record: RequestRecord | None = None
        self._tokens: Any = None

    def _clone(self) -> Request:
        return Request(self._model, self._endpoint, self._name, self._version)

    def _enter(self) -> None:
        self._record, self._tokens = _runtime.start_request(self._name, SpanKind.INTERNAL, self._endpoint or self._name)
        if self._record is not None:
            self._record.set_model(self._model, self._version)

    def _exit(self, error: BaseException | None) -> None:
        _runtime.finish_request(self._record, self._tokens, error)

    @property
    def record(self) -> RequestRecord | None:
        return self._record


def stage(name: str, *, model: str | None = None, batch_size: int = 0) -> Stage:
    """A custom stage: ``with infersight.stage("tokenize"):`` or ``@infersight.stage("x")``."""
    return Stage(name, model, batch_size)


def request(model: str | None = None, *, endpoint: str = "", version: str | None = None) -> Request:
    """A request outside HTTP/gRPC: ``with infersight.request(model="ranker"): ...``."""
    return Request(model, endpoint, version=version)


def _stage_factory(stage_name: str) -> Any:
    @overload
    def factory(fn: F) -> F: ...
    @overload
    def factory(fn: None = None, *, model: str | None = None) -> Stage: ...

    def factory(fn: Any = None, *, model: str | None = None) -> Any:
        if fn is not None and callable(fn):
            return Stage(stage_name)(fn)
        return Stage(stage_name, model)

    factory.__name__ = stage_name
    factory.__doc__ = (
        f"The ``{stage_name}`` stage: ``@infersight.{stage_name}``, "
        f"``@infersight.{stage_name}(model='m')`` or ``with infersight.{stage_name}():``."
    )
    return factory


preprocess = _stage_factory(SPAN.PREPROCESS)
model = _stage_factory(SPAN.MODEL)
postprocess = _stage_factory(SPAN.POSTPROCESS)


def current_request_handle() -> RequestRecord | None:
    """The record of the request being served, to hand to a batching queue."""
    return current_request.get()
