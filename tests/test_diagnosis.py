"""Computing vs waiting per stage (thread CPU time), the GIL probe, and the time outside stages."""

from __future__ import annotations

import sys
import threading
import time

import infersight
from infersight._records import RequestRecord, StageRecord, outside_stages_ns
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


def test_outside_stages_is_the_union_of_gaps() -> None:
    rec = RequestRecord("r", 0, "", 1, 0, False)
    rec.start_ns, rec.end_ns = 0, 100
    for start, end in ((10, 30), (20, 40), (25, 35), (60, 70), (95, 200)):  # nested, overlapping, past the end
        st = StageRecord("s", None, rec, 0, 1, False)
        st.start_ns, st.end_ns = start, end
        rec.stages.append(st)
    assert outside_stages_ns(rec) == 100 - (30 + 10 + 5)


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
