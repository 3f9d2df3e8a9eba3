"""PyTriton's bound inference callables, against a stand-in ``pytriton.triton`` (PyTriton itself
lives in its own env: tests/e2e/test_triton_live.py runs the real one): each call of each kind
of callable is a request of the bound model with a ``model`` stage, joined to the span PyTriton
hands it, and the callable keeps its kind, which PyTriton reads."""

from __future__ import annotations

import asyncio
import inspect
import sys
import types
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from infersight.conventions import METRIC, SPAN
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture


class TritonBase:
    """The part of pytriton.triton.TritonBase infersight patches: bind()."""

    def bind(
        self,
        model_name: str,
        infer_func: Any,
        inputs: Any,
        outputs: Any,
        model_version: int = 1,
        config: Any = None,
        strict: bool = False,
        trace_config: Any = None,
    ) -> None:
        self.bound = infer_func


@dataclass
class Req:
    data: dict[str, Any]
    span: Any = None


@pytest.fixture
def t(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    package, module = types.ModuleType("pytriton"), types.ModuleType("pytriton.triton")
    module.TritonBase = TritonBase  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pytriton", package)
    monkeypatch.setitem(sys.modules, "pytriton.triton", module)
    with capture() as captured:
        instrument_all(["pytriton"])
        try:
            yield captured
        finally:
            uninstrument_all()


def sync(requests: list[Req]) -> list[dict[str, int]]:
    return [{"y": 2 * r.data["x"]} for r in requests]


def stream(requests: list[Req]) -> Iterator[list[dict[str, int]]]:
    yield [{"y": 1}]
    yield [{"y": 2}]


async def coro(requests: list[Req]) -> list[dict[str, int]]:
    await asyncio.sleep(0)
    return sync(requests)


async def astream(requests: list[Req]) -> AsyncIterator[list[dict[str, int]]]:
    yield [{"y": 1}]
    await asyncio.sleep(0)
    yield [{"y": 2}]


def run(fn: Any, requests: list[Req]) -> Any:
    if inspect.isasyncgenfunction(fn):

        async def drain() -> list[Any]:
            return [item async for item in fn(requests)]

        return asyncio.run(drain())
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(requests))
    if inspect.isgeneratorfunction(fn):
        return list(fn(requests))
    return fn(requests)


@pytest.mark.parametrize("fn", [sync, stream, coro, astream], ids=["sync", "generator", "async", "async-generator"])
def test_each_kind_of_callable_is_a_request_with_a_model_stage(t: Captured, fn: Any) -> None:
    triton = TritonBase()
    triton.bind(model_name="double", infer_func=fn, inputs=[], outputs=[], model_version=3)
    bound = triton.bound
    assert bound is not fn and bound.__name__ == fn.__name__
    for kind in (inspect.isasyncgenfunction, inspect.iscoroutinefunction, inspect.isgeneratorfunction):
        assert kind(bound) == kind(fn)
    # PyTriton's span of the request, which continues Triton's trace.
    parent = TracerProvider().get_tracer("pytriton").start_span("proxy_inference_callable")
    result = run(bound, [Req({"x": 1}, parent), Req({"x": 2}, parent)])
    parent.end()
    assert result == run(fn, [Req({"x": 1}), Req({"x": 2})])
    (stage,) = t.spans(SPAN.MODEL)
    assert stage.parent is not None and stage.parent.span_id == parent.get_span_context().span_id
    assert stage.context.trace_id == parent.get_span_context().trace_id
    assert t.value(f"{METRIC.STAGE_DURATION.name}_count", model="double", stage=SPAN.MODEL) == 1
    assert t.value(f"{METRIC.BATCH_SIZE.name}_count", model="double") == 1
    assert t.value(f"{METRIC.BATCH_SIZE.name}_sum", model="double") == 2
    count = f"{METRIC.REQUEST_DURATION.name}_count"
    assert t.value(count, model="double", version="3", endpoint="double", outcome="success") == 1


def test_without_a_span_from_pytriton_the_call_is_a_trace_of_its_own(t: Captured) -> None:
    triton = TritonBase()
    triton.bind("double", [sync, sync], [], [])  # positional, and a list of callables (instances)
    assert all(run(f, [Req({"x": 1})]) == [{"y": 2}] for f in triton.bound)
    roots = t.spans(SPAN.REQUEST)
    assert len(roots) == 2 and all(s.parent is None for s in roots)
    assert all(
        s.parent is not None and s.parent.span_id in {r.context.span_id for r in roots} for s in t.spans("model")
    )


def test_user_exceptions_pass_through_unchanged(t: Captured) -> None:
    class Boom(Exception):
        pass

    def fails(requests: list[Req]) -> None:
        raise Boom("x")

    triton = TritonBase()
    triton.bind(model_name="double", infer_func=fails, inputs=[], outputs=[])
    with pytest.raises(Boom):
        triton.bound([Req({})])
    count = f"{METRIC.REQUEST_DURATION.name}_count"
    assert t.value(count, model="double", version="1", endpoint="double", outcome="error") == 1
