"""The worker drains between requests: it steps aside while one is in flight, up to a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import infersight
from infersight._gate import RequestGate
from infersight.testing import capture

PROCESSED = "infersight_records_processed_total"


def test_step_aside_returns_at_once_with_no_request_in_flight() -> None:
    gate = RequestGate()
    t0 = time.monotonic()
    gate.step_aside(30)
    assert time.monotonic() - t0 < 5  # not the 30 s wait


def test_step_aside_waits_for_the_last_request_in_flight() -> None:
    gate = RequestGate()
    first, second = object(), object()
    gate.started(first)
    gate.started(second)
    returned = threading.Event()
    waiter = threading.Thread(target=lambda: (gate.step_aside(30), returned.set()))
    waiter.start()
    gate.finished(first)
    assert not returned.wait(0.2)  # one request still in flight
    gate.finished(second)
    assert returned.wait(5)
    waiter.join()
    assert gate.waiters == 0


def test_step_aside_gives_up_at_its_deadline() -> None:
    gate = RequestGate()
    gate.started(object())
    t0 = time.monotonic()
    gate.step_aside(0.1)
    assert 0.05 < time.monotonic() - t0 < 5


def test_a_fork_child_starts_with_no_request_in_flight() -> None:
    gate = RequestGate()
    gate.started(object())
    gate.after_fork_in_child()
    assert not gate.serving


def _queue_requests(n: int) -> None:
    for _ in range(n):
        with infersight.request(model="m"), infersight.model():
            pass


def test_the_worker_drains_once_no_request_is_in_flight() -> None:
    with capture(flush_interval_s=30) as t:  # the worker thread's own deadline is 30 s away
        rt = infersight.get_runtime()
        assert rt is not None
        _queue_requests(5)
        drained = threading.Event()
        with infersight.request(model="m", endpoint="/slow"):
            drainer = threading.Thread(target=lambda: (rt.worker.drain(patient=True), drained.set()))
            drainer.start()
            assert not drained.wait(0.3)
            assert not t.registry.get_sample_value(PROCESSED)  # nothing processed meanwhile
        assert drained.wait(5)  # the request above finished: the worker went on
        drainer.join()
        assert t.registry.get_sample_value(PROCESSED) == 6


def test_a_server_that_is_never_idle_still_gets_its_records_drained_at_the_deadline() -> None:
    with capture(flush_interval_s=0.2) as t:
        _queue_requests(5)
        with infersight.request(model="m", endpoint="/never-ends"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and t.registry.get_sample_value(PROCESSED) != 5:
                time.sleep(0.02)
            assert t.registry.get_sample_value(PROCESSED) == 5


def test_a_scrape_is_not_held_up_while_the_worker_steps_aside() -> None:
    """The worker waits outside its drain lock, so a scrape's drain goes ahead."""
    with capture(flush_interval_s=30) as t:
        rt = infersight.get_runtime()
        assert rt is not None
        _queue_requests(3)
        with infersight.request(model="m", endpoint="/slow"):
            drainer = threading.Thread(target=rt.worker.drain, kwargs={"patient": True}, daemon=True)
            drainer.start()
            time.sleep(0.1)  # let it start waiting
            t0 = time.monotonic()
            rt.worker.drain()  # what a /metrics scrape does first
            assert time.monotonic() - t0 < 5  # not the worker's 30 s
            assert t.registry.get_sample_value(PROCESSED) == 3
        drainer.join(5)
        assert not drainer.is_alive()


def test_a_drain_steps_aside_when_a_request_starts_midway() -> None:
    with capture(flush_interval_s=30) as t:
        rt = infersight.get_runtime()
        assert rt is not None
        _queue_requests(5)
        in_flight, release = threading.Event(), threading.Event()

        def slow_request() -> None:
            with infersight.request(model="m", endpoint="/slow"):
                in_flight.set()
                release.wait(10)

        class StartRequestOnFirstStage:
            def on_stage_start(self, stage: object) -> None: ...
            def on_stage_end(self, stage: object) -> None: ...

            def enrich(self, stage: object, attributes: dict[str, object]) -> None:
                if not in_flight.is_set():
                    threading.Thread(target=slow_request, daemon=True).start()
                    assert in_flight.wait(5)

        rt.add_hook(StartRequestOnFirstStage())  # type: ignore[arg-type]
        drained = threading.Event()
        drainer = threading.Thread(target=lambda: (rt.worker.drain(patient=True), drained.set()), daemon=True)
        drainer.start()
        assert not drained.wait(0.3)
        assert len(rt.worker._queue) == 4  # it stopped after the record it was on
        release.set()
        assert drained.wait(5)
        assert t.registry.get_sample_value(PROCESSED) == 6  # the five, then the slow request


class _Recorder(SpanExporter):
    def __init__(self) -> None:
        self.done = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.done.set()
        return SpanExportResult.SUCCESS


def test_an_export_waits_for_the_requests_in_flight_but_not_for_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from infersight import _tracing
    from infersight._records import current_request

    monkeypatch.setattr(_tracing, "_EXPORT_MAX_WAIT_S", 30)
    gate, inner = RequestGate(), _Recorder()
    exporter = _tracing.CountingExporter(inner, lambda count, ok: None, gate)
    request = object()
    gate.started(request)
    threading.Thread(target=exporter.export, args=([],), daemon=True).start()
    assert not inner.done.wait(0.3)  # the export thread waits for the request
    gate.finished(request)
    assert inner.done.wait(5)

    # A flush from inside a request (the user's own force_flush) must not wait for itself.
    inner.done.clear()
    gate.started(request)
    token = current_request.set(request)  # type: ignore[arg-type]
    try:
        t0 = time.monotonic()
        exporter.export([])
        assert inner.done.is_set() and time.monotonic() - t0 < 5
    finally:
        current_request.reset(token)
