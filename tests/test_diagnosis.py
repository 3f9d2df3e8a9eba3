"""Computing vs waiting per stage (thread CPU time), the GIL probe, and the time outside stages."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

import infersight
from infersight._records import RequestRecord, StageRecord, outside_stages_ns
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _burn_cpu(seconds: float) -> None:
    """This thread's CPU time, not wall time: a loaded machine can't make it compute less."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_stage_cpu_time_tells_computing_from_waiting(telemetry: Captured) -> None:
    lock = threading.Lock()
    lock.acquire()
    with infersight.request(model="m"):
        with infersight.stage("preprocess"):
            _burn_cpu(0.02)
        with infersight.stage("postprocess"):
            threading.Timer(0.03, lock.release).start()
            assert lock.acquire(timeout=5)  # waits ~30 ms on a lock
    spans = {s.name: s for s in telemetry.spans()}
    busy = spans["preprocess"].attributes["infersight.stage.cpu_s"]  # type: ignore[index]
    idle = spans["postprocess"].attributes["infersight.stage.cpu_s"]  # type: ignore[index]
    assert busy > 0.015 and idle < 0.01, (busy, idle)
    assert telemetry.value("infersight_stage_cpu_seconds_count", model="m", stage="preprocess") == 1
    cpu_sum = telemetry.value("infersight_stage_cpu_seconds_sum", model="m", stage="postprocess")
    wall_sum = telemetry.value("infersight_stage_duration_seconds_sum", model="m", stage="postprocess")
    assert cpu_sum is not None and wall_sum is not None and cpu_sum < wall_sum / 2


def test_stages_one_after_another_share_a_clock_read_but_not_the_work_between() -> None:
    """Each thread-CPU read is a syscall: a stage that starts just as the previous one ended on
    the same thread starts from that read. After a longer gap it reads the clock itself, so
    work done between stages is billed to neither."""
    with capture(gil_probe=False) as t:
        rt = infersight.get_runtime()
        assert rt is not None and rt.thread_time is not None
        reads: list[int] = []
        clock = rt.thread_time
        rt.thread_time = lambda: reads.append(1) or clock()  # type: ignore[func-returns-value]
        counts = []
        for _ in range(20):  # a thread preempted between two stages reads the clock anew: retried
            reads.clear()
            with infersight.request(model="m"):
                for name in ("preprocess", "model", "postprocess"):
                    with infersight.stage(name):
                        pass
            counts.append(len(reads))
            if counts[-1] == 4:
                break
        assert counts[-1] == 4, counts
        reads.clear()
        with infersight.request(model="m"):
            with infersight.stage("postprocess"):
                pass
            _burn_cpu(0.02)  # between stages: no stage's
            with infersight.stage("late"):
                pass
        assert len(reads) == 4
        t.flush()
        assert t.spans("late")[0].attributes["infersight.stage.cpu_s"] < 0.005  # type: ignore[index,operator]
        assert t.value("infersight_stage_cpu_seconds_count", model="m", stage="late") == 1


def test_stage_cpu_time_off() -> None:
    with capture(stage_cpu_time=False, gil_probe=False) as t:
        with infersight.request(model="m"), infersight.stage("preprocess"):
            pass
        t.flush()
        assert t.value("infersight_stage_cpu_seconds_count", model="m", stage="preprocess") is None
        assert "infersight.stage.cpu_s" not in (t.spans("preprocess")[0].attributes or {})


def test_cpu_time_from_another_thread_is_dropped() -> None:
    st = StageRecord("s", None, None, 0, 1, False)
    st.start_ns, st.end_ns = 0, 1_000_000  # 1 ms of wall time
    st.cpu_start_ns, st.cpu_end_ns = 10, 50_000_000  # 50 ms: not this stage's thread
    assert st.cpu_seconds() is None
    st.cpu_start_ns, st.cpu_end_ns = 50_000_000, 10
    assert st.cpu_seconds() is None
    st.cpu_start_ns, st.cpu_end_ns = 0, 400_000
    assert st.cpu_seconds() == 0.0004


def test_a_generator_stage_resumed_on_another_thread_has_no_cpu_time(telemetry: Captured) -> None:
    @infersight.stage("tokens")
    def tokens() -> Iterator[int]:
        yield 1
        _burn_cpu(0.005)
        yield 2

    def on_a_thread(fn: Any, until: threading.Event) -> threading.Thread:
        def run() -> None:
            fn()
            until.wait(5)  # alive, as a pool's threads are: another thread can't reuse its id

        thread = threading.Thread(target=contextvars.copy_context().run, args=(run,))  # as anyio does
        thread.start()
        return thread

    with infersight.request(model="m"):
        same = tokens()
        assert list(same) == [1, 2]
        moved = tokens()  # as Starlette streams a sync generator: each next() in the thread pool
        done, first_step, rest = threading.Event(), threading.Event(), threading.Event()
        threads = [on_a_thread(lambda: (next(moved), first_step.set()), done)]
        assert first_step.wait(5)
        threads.append(on_a_thread(lambda: (list(moved), rest.set()), done))
        assert rest.wait(5)
        done.set()
        for thread in threads:
            thread.join(5)
    first, second = telemetry.spans("tokens")
    assert first.attributes["infersight.stage.cpu_s"] > 0.003  # type: ignore[index,operator]
    assert "infersight.stage.cpu_s" not in (second.attributes or {})
    assert telemetry.value("infersight_stage_duration_seconds_count", model="m", stage="tokens") == 2
    assert telemetry.value("infersight_stage_cpu_seconds_count", model="m", stage="tokens") == 1


def test_outside_stages_is_the_union_of_gaps() -> None:
    rec = RequestRecord("r", 0, "", 1, 0, False)
    rec.start_ns, rec.end_ns = 0, 100
    for start, end in ((10, 30), (20, 40), (25, 35), (60, 70), (95, 200)):  # nested, overlapping, past the end
        st = StageRecord("s", None, rec, 0, 1, False)
        st.start_ns, st.end_ns = start, end
        rec.stages.append(st)
    assert outside_stages_ns(rec) == 100 - (30 + 10 + 5)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-20, 120), st.integers(-20, 120)), max_size=5))
def test_outside_stages_matches_a_sweep_over_every_nanosecond(spans: list[tuple[int, int]]) -> None:
    rec = RequestRecord("r", 0, "", 1, 0, False)
    rec.start_ns, rec.end_ns = 0, 100
    for start, end in spans:  # in order or not, nested, overlapping, reversed, outside the request
        stage = StageRecord("s", None, rec, 0, 1, False)
        stage.start_ns, stage.end_ns = start, end
        rec.stages.append(stage)
    covered = {t for start, end in spans for t in range(max(start, 0), min(end, 100))}
    assert outside_stages_ns(rec) == 100 - len(covered)


def test_queueing_outside_stages_is_its_own_series(telemetry: Captured) -> None:
    with infersight.request(model="m"):
        time.sleep(0.03)  # the framework, or a wait for a worker thread
        with infersight.stage("model"):
            pass
    outside = telemetry.value("infersight_outside_stages_seconds_sum", model="m")
    assert outside is not None and outside >= 0.025
    (root,) = telemetry.spans("inference")
    assert root.attributes["infersight.outside_stages_s"] >= 0.025  # type: ignore[index,operator]


def test_gil_probe_sees_a_thread_that_holds_the_gil() -> None:
    with capture(gil_probe=True) as t:

        def late_over(seconds: str) -> float:
            return (t.value("infersight_gil_wait_seconds_count") or 0.0) - (
                t.value("infersight_gil_wait_seconds_bucket", le=seconds) or 0.0
            )

        time.sleep(0.2)
        assert (t.value("infersight_gil_wait_seconds_count") or 0.0) > 5  # it runs
        before = late_over("0.025")
        # A pure-Python loop keeps the GIL for a whole switch interval, made 50 ms here.
        old = sys.getswitchinterval()
        sys.setswitchinterval(0.05)
        try:
            _spin(0.4)
        finally:
            sys.setswitchinterval(old)
        time.sleep(0.02)
        assert late_over("0.025") > before


def test_gil_probe_off() -> None:
    with capture(gil_probe=False) as t:
        time.sleep(0.05)
        assert t.value("infersight_gil_wait_seconds_count") == 0.0
        assert not any(th.name == "infersight-gil-probe" for th in threading.enumerate())


def test_top_says_waiting_gil_contention_payload_and_outside_stages() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from infersight import top
    from infersight.conventions import METRIC
    from infersight.metrics import make_metric

    reg = CollectorRegistry()
    wall, cpu, outside, gil, payload = (
        make_metric(spec, reg)
        for spec in (
            METRIC.STAGE_DURATION,
            METRIC.STAGE_CPU,
            METRIC.OUTSIDE_STAGES,
            METRIC.GIL_WAIT,
            METRIC.PAYLOAD_SIZE,
        )
    )

    def window(tokenize_s: float, gil_late_s: float, body: int) -> top.Samples:
        for _ in range(50):
            wall.labels("bert", "preprocess").observe(tokenize_s)
            cpu.labels("bert", "preprocess").observe(0.004)  # the same CPU time: the rest is waiting
            model_s = 0.05 if tokenize_s < 0.01 else 0.09
            wall.labels("bert", "model").observe(model_s)
            cpu.labels("bert", "model").observe(model_s)  # it computes more
            outside.labels("bert").observe(0.002)
            gil.observe(gil_late_s)
            payload.labels("bert", "request").observe(body)
        return top.parse_metrics(generate_latest(reg).decode())

    source = top.MetricsSource("unused")
    first = window(0.005, 0.0002, 1000)
    quiet = top.build_snapshot(first, None, 1.0, "test")
    source._first = top.means_from_samples(first, None, quiet)
    top.diagnose(quiet, source._first, None)
    text = top.render(quiet)
    assert "no GIL contention" in text and "waiting" not in text and "payload" not in text

    second = window(0.3, 0.03, 4000)
    snap = top.build_snapshot(second, first, 1.0, "test")
    top.diagnose(snap, top.means_from_samples(second, first, snap), source._first)
    text = top.render(snap)
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.strip()}
    assert "waiting (GIL contention)" in lines["preprocess"], text
    assert "computing" in lines["model"], text
    assert "payload \N{MULTIPLICATION SIGN}4.0" in lines["bert"], text
    assert "outside_stages" in lines and "GIL contention" in text


# ---- ASGI: FastAPI runs sync endpoints in its thread pool, async ones in the event loop ------


@pytest.fixture
def asgi() -> Iterator[Captured]:
    with capture() as captured:
        instrument_all(["starlette", "fastapi"])
        try:
            yield captured
        finally:
            uninstrument_all()


def _fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/sync")
    def in_thread_pool() -> dict[str, str]:
        with infersight.preprocess(model="clf"):
            _burn_cpu(0.02)
        with infersight.postprocess():
            time.sleep(0.03)
        return {}

    @app.get("/async")
    async def in_event_loop() -> dict[str, str]:
        with infersight.preprocess(model="clf"):
            _burn_cpu(0.02)
        with infersight.postprocess():
            await asyncio.sleep(0.03)
        return {}

    @app.get("/slow", response_model=None)  # no validation: it would queue for the thread again
    def slow() -> dict[str, str]:
        with infersight.model(model="clf"):
            time.sleep(0.1)
        return {}

    return app


async def _get(app: FastAPI, *paths: str, threads: int | None = None) -> list[int]:
    if threads is not None:  # the loop's own limiter: set inside it
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(*(client.get(path) for path in paths))
    return [r.status_code for r in responses]


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_fastapi_stage_cpu_time_in_the_thread_pool_and_the_event_loop(asgi: Captured, path: str) -> None:
    assert asyncio.run(_get(_fastapi_app(), path)) == [200]
    (server,) = asgi.spans(f"GET {path}")
    spans = {s.name: s for s in asgi.spans() if s.parent is not None and s.parent.span_id == server.context.span_id}
    busy = spans["preprocess"].attributes["infersight.stage.cpu_s"]  # type: ignore[index]
    idle = spans["postprocess"].attributes["infersight.stage.cpu_s"]  # type: ignore[index]
    assert busy > 0.015 and idle < 0.01, (busy, idle)
    assert asgi.value("infersight_stage_cpu_seconds_count", model="clf", stage="preprocess") == 1
    assert server.attributes["infersight.outside_stages_s"] >= 0  # type: ignore[index,operator]
    assert asgi.value("infersight_outside_stages_seconds_count", model="clf") == 1


def test_fastapi_requests_queued_for_the_thread_pool_are_outside_stages(asgi: Captured) -> None:
    # One thread: the second request waits ~0.1 s for it, outside any stage.
    assert asyncio.run(_get(_fastapi_app(), "/slow", "/slow", threads=1)) == [200, 200]
    outside = sorted(s.attributes["infersight.outside_stages_s"] for s in asgi.spans("GET /slow"))  # type: ignore[index]
    assert outside[0] < 0.05 and outside[1] >= 0.08, outside
    assert asgi.value("infersight_outside_stages_seconds_count", model="clf") == 2
    total = asgi.value("infersight_outside_stages_seconds_sum", model="clf")
    assert total is not None and total >= 0.08
