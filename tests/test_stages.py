"""Stages and requests from the explicit API: spans, parents, errors, async and generators."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags, TraceState

import infersight
from infersight.testing import Captured


class Boom(Exception):
    pass


def by_name(t: Captured) -> dict[str, object]:
    return {s.name: s for s in t.spans()}


def test_request_with_three_stages_parents_and_metrics(telemetry: Captured) -> None:
    @infersight.preprocess
    def tokenize(text: str) -> list[str]:
        return text.split()

    @infersight.model(model="ranker")
    def run(tokens: list[str]) -> int:
        return len(tokens)

    @infersight.postprocess
    def label(n: int) -> str:
        return "long" if n > 2 else "short"

    with infersight.request(model="ranker", endpoint="queue:ranker"):
        assert label(run(tokenize("a b c"))) == "long"
    spans = by_name(telemetry)
    root = spans["inference"]
    for name in ("preprocess", "model", "postprocess"):
        child = spans[name]
        assert child.parent.span_id == root.context.span_id  # type: ignore[attr-defined]
        assert child.context.trace_id == root.context.trace_id  # type: ignore[attr-defined]
        assert child.attributes["infersight.model.name"] == "ranker"  # type: ignore[attr-defined]
        count = telemetry.value("infersight_stage_duration_seconds_count", model="ranker", stage=name)
        assert count == 1.0
    assert (
        telemetry.value(
            "infersight_request_duration_seconds_count",
            model="ranker",
            version="unknown",
            endpoint="queue:ranker",
            outcome="success",
        )
        == 1.0
    )


def test_user_exception_is_reraised_unchanged_and_recorded(telemetry: Captured) -> None:
    err = Boom("bad input")

    @infersight.model(model="m")
    def run() -> None:
        raise err

    with pytest.raises(Boom) as info, infersight.request(model="m"):
        run()
    assert info.value is err
    spans = by_name(telemetry)
    stage = spans["model"]
    assert stage.status.status_code is StatusCode.ERROR  # type: ignore[attr-defined]
    assert stage.events[0].name == "exception"  # type: ignore[attr-defined]
    assert stage.events[0].attributes["exception.type"] == "Boom"  # type: ignore[attr-defined]
    assert spans["inference"].status.status_code is StatusCode.ERROR  # type: ignore[attr-defined]
    assert telemetry.value("infersight_errors_total", model="m", stage="model", exception_type="Boom") == 1.0
    assert (
        telemetry.value(
            "infersight_request_duration_seconds_count",
            model="m",
            version="unknown",
            endpoint="inference",
            outcome="error",
        )
        == 1.0
    )


def test_nested_stage_parents_to_enclosing_stage(telemetry: Captured) -> None:
    with infersight.request(model="m"), infersight.model(), infersight.stage("kernel"):
        pass
    spans = by_name(telemetry)
    assert spans["kernel"].parent.span_id == spans["model"].context.span_id  # type: ignore[attr-defined]


def test_a_kept_stage_entered_again_records_every_entry(telemetry: Captured) -> None:
    tokenize = infersight.stage("tokenize")  # made once, then entered in each request, and nested
    for _ in range(2):
        with infersight.request(model="m"), tokenize:
            tokenize.set_attribute("depth", 1)
            with tokenize:
                tokenize.set_attribute("depth", 2)
    roots = {s.context.span_id for s in telemetry.spans() if s.name == "inference"}  # type: ignore[attr-defined]
    spans = [s for s in telemetry.spans() if s.name == "tokenize"]
    assert len({s.context.span_id for s in spans}) == 4  # type: ignore[attr-defined]
    outer = [s for s in spans if s.parent.span_id in roots]  # type: ignore[attr-defined]
    inner = [s for s in spans if s not in outer]
    assert [s.attributes["depth"] for s in outer] == [1, 1]  # type: ignore[attr-defined]
    assert [s.attributes["depth"] for s in inner] == [2, 2]  # type: ignore[attr-defined]
    outer_ids = {s.context.span_id for s in outer}  # type: ignore[attr-defined]
    assert all(s.parent.span_id in outer_ids for s in inner)  # type: ignore[attr-defined]
    assert all(s.end_time >= s.start_time for s in spans)  # type: ignore[attr-defined]


def test_a_finished_request_waiting_for_the_worker_keeps_no_context_alive(telemetry: Captured) -> None:
    # Records wait up to a flush interval for the worker. A context token kept on one keeps its
    # context alive too: more objects for the garbage collector to pass over, on every request.
    import contextvars
    import gc

    stages = [infersight.preprocess(), infersight.model(), infersight.postprocess()]
    with infersight.request(model="m"):
        for stage in stages:
            with stage:
                pass
    seen: set[int] = set()
    todo: list[object] = list(stages)
    kept = []
    while todo:  # everything the records hold, through other records (slotted objects)
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (contextvars.Token, contextvars.Context)):
            kept.append(obj)
        elif hasattr(type(obj), "__slots__") or isinstance(obj, (list, tuple)):
            todo.extend(gc.get_referents(obj))
    assert kept == []
    assert len(telemetry.spans()) == 4  # and the records still made their spans


def test_a_stage_object_shared_by_threads_records_each_threads_entry(telemetry: Captured) -> None:
    shared = infersight.stage("shared")  # one object, as a module-level stage would be
    a_inside, b_inside = threading.Event(), threading.Event()

    def first() -> None:
        with infersight.request(model="a"), shared:
            shared.set_attribute("who", "a")
            a_inside.set()
            assert b_inside.wait(5)  # the other thread enters while this one is inside

    def second() -> None:
        assert a_inside.wait(5)
        with infersight.request(model="b"), shared:
            shared.set_attribute("who", "b")
            b_inside.set()
            time.sleep(0.05)  # and leaves after it

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    roots = {s.attributes["infersight.model.name"]: s for s in telemetry.spans() if s.name == "inference"}  # type: ignore[attr-defined]
    stages = {s.attributes["who"]: s for s in telemetry.spans() if s.name == "shared"}  # type: ignore[attr-defined]
    assert set(stages) == {"a", "b"}
    for who, stage in stages.items():
        root = roots[who]
        assert stage.parent.span_id == root.context.span_id  # type: ignore[attr-defined]
        assert root.start_time <= stage.start_time <= stage.end_time <= root.end_time  # type: ignore[attr-defined]


def test_other_instrumentations_parent_to_the_current_stage(telemetry: Captured) -> None:
    # A client span made by another instrumentation inside a stage, and what it propagates.
    tracer = telemetry.provider.get_tracer("client")
    with infersight.request(model="m"):
        with infersight.preprocess():
            pass
        with infersight.model(), tracer.start_as_current_span("http client"), infersight.stage("inside client"):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        after = trace.get_current_span().get_span_context()
    assert not trace.get_current_span().get_span_context().is_valid  # nothing left behind
    spans = by_name(telemetry)
    assert spans["http client"].parent.span_id == spans["model"].context.span_id  # type: ignore[attr-defined]
    inner = spans["inside client"]
    assert inner.parent.span_id == spans["model"].context.span_id  # type: ignore[attr-defined]
    assert carrier["traceparent"].split("-")[2] == f"{inner.context.span_id:016x}"  # type: ignore[attr-defined]
    assert after.span_id == spans["inference"].context.span_id  # type: ignore[attr-defined]


def test_stage_context_carries_the_incoming_tracestate(telemetry: Captured) -> None:
    parent = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "x1")]),
    )
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        with infersight.request(model="m"), infersight.model():
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
    finally:
        context.detach(token)
    model = by_name(telemetry)["model"]
    assert carrier["traceparent"] == f"00-{0xABC:032x}-{model.context.span_id:016x}-01"  # type: ignore[attr-defined]
    assert carrier["tracestate"] == "vendor=x1"


def test_async_function_and_async_generator(telemetry: Captured) -> None:
    @infersight.model(model="m")
    async def infer(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @infersight.postprocess
    async def stream(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield i

    async def main() -> list[int]:
        async with infersight.request(model="m"):
            out = [await infer(2)]
            out += [i async for i in stream(3)]
        return out

    assert asyncio.run(main()) == [4, 0, 1, 2]
    assert {"model", "postprocess", "inference"} <= set(by_name(telemetry))


def test_abandoned_generator_closes_its_span_without_error(telemetry: Captured) -> None:
    @infersight.postprocess(model="m")
    def tokens():  # type: ignore[no-untyped-def]
        yield from range(100)

    with infersight.request(model="m"):
        gen = tokens()
        next(gen)
        gen.close()
    span = by_name(telemetry)["postprocess"]
    assert span.status.status_code is StatusCode.UNSET  # type: ignore[attr-defined]
    assert span.attributes["infersight.generator.abandoned"] is True  # type: ignore[attr-defined]


def test_cancelled_task_records_the_cancellation(telemetry: Captured) -> None:
    @infersight.model(model="m")
    async def slow() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        async with infersight.request(model="m"):
            task = asyncio.ensure_future(slow())
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    span = by_name(telemetry)["model"]
    assert span.status.status_code is StatusCode.ERROR  # type: ignore[attr-defined]
    assert span.attributes["error.type"] == "CancelledError"  # type: ignore[attr-defined]


def test_stage_outside_any_request_is_its_own_trace(telemetry: Captured) -> None:
    with infersight.model(model="offline"):
        pass
    span = by_name(telemetry)["model"]
    assert span.parent is None  # type: ignore[attr-defined]
    assert telemetry.value("infersight_stage_duration_seconds_count", model="offline", stage="model") == 1.0
    assert (
        telemetry.value(
            "infersight_request_duration_seconds_count",
            model="offline",
            version="unknown",
            endpoint="inference",
            outcome="success",
        )
        is None
    )


def test_batch_records_queue_wait_batch_size_and_a_stage_per_request(telemetry: Captured) -> None:
    handles = []
    requests = [infersight.request(model="b") for _ in range(3)]
    for r in requests:
        r.__enter__()
        handles.append(infersight.current_request_handle())
    with infersight.batch(handles, model="b"):
        pass
    for r in reversed(requests):
        r.__exit__(None, None, None)
    assert telemetry.value("infersight_batch_size_count", model="b") == 1.0
    assert telemetry.value("infersight_batch_size_sum", model="b") == 3.0
    assert telemetry.value("infersight_queue_wait_seconds_count", model="b") == 3.0
    assert len(telemetry.spans("model")) == 3


def test_slo_metric_and_requests_over_slo() -> None:
    from infersight.testing import capture

    with capture(models={"fast": {"version": "2", "slo_p99_seconds": 0.001}}) as t:
        import time

        with infersight.request(model="fast"):
            time.sleep(0.005)
        with infersight.request(model="fast"):
            pass
        assert t.value("infersight_model_slo_p99_seconds", model="fast") == 0.001
        assert t.value("infersight_requests_over_slo_total", model="fast") == 1.0
        assert (
            t.value(
                "infersight_request_duration_seconds_count",
                model="fast",
                version="2",
                endpoint="inference",
                outcome="success",
            )
            == 2.0
        )


def test_requests_in_flight_counts_requests_being_served(telemetry: Captured) -> None:
    inside: list[float | None] = []
    with pytest.raises(Boom), infersight.request(model="m"):
        with infersight.request(model="m"):
            inside.append(telemetry.registry.get_sample_value("infersight_requests_in_flight"))
        inside.append(telemetry.registry.get_sample_value("infersight_requests_in_flight"))
        raise Boom("the user's")
    assert inside == [2.0, 1.0]
    assert telemetry.value("infersight_requests_in_flight") == 0.0
