"""infersight's own CPU share (``infersight_overhead_cpu_ratio``) and its budget
(``INFERSIGHT_OVERHEAD_BUDGET``): driven with a synthetic load whose rate steps up, on fake CPU
clocks, then once for real."""

from __future__ import annotations

import random
import time

import pytest

import infersight
from infersight._keep import TailKeep
from infersight._overhead import OverheadMeter
from infersight._records import RequestRecord, now_ns
from infersight.config import Config
from infersight.conventions import METRIC
from infersight.testing import capture

APP_NS = 2_000_000  # the model's CPU per request
OTHER_NS_PER_S = 500_000_000  # the server's own threads, whatever the rate
METRICS_NS = 20_000  # infersight's worker per request, spans or not
SPAN_NS = 150_000  # infersight's spans per kept request (building, encoding, export)


class Gauge:
    def __init__(self) -> None:
        self.values: list[float] = []

    def set(self, value: float) -> None:
        self.values.append(value)


class SyntheticServer:
    """One second per step: ``rate`` requests through a real TailKeep, 1 % errors and 1 % slow;
    the process's CPU and infersight's follow from how many traces were kept."""

    def __init__(self, budget: float) -> None:
        self.config = Config(traces_keep_ratio=1.0, traces_keep_slower_than_s=0.5, overhead_budget=budget)
        self.keep = TailKeep(self.config)
        self.process_ns = 0
        self.now = 0.0
        self.gauge = Gauge()
        self.meter = OverheadMeter(
            budget,
            self.gauge,
            self.keep.set_scale if budget else None,
            process_clock=lambda: self.process_ns,
            clock=lambda: self.now,
        )
        self.rng = random.Random(7)
        self.lost_errors_or_slow = 0

    def second(self, rate: int) -> tuple[float | None, int, int]:
        kept_fast = spent = fast = 0
        for i in range(rate):
            rec = RequestRecord("POST /predict", 2, "/predict", self.rng.getrandbits(128) or 1, 0, True)
            rec.start_ns = 0
            rec.end_ns = 600_000_000 if i % 100 == 1 else 3_000_000  # 1 % slow
            if i % 100 == 0:
                rec.outcome = "error"
            self.keep.apply(rec)
            if rec.outcome == "error" or i % 100 == 1:
                self.lost_errors_or_slow += not rec.sampled
            else:
                fast += 1
                kept_fast += rec.sampled
            spent += METRICS_NS + (SPAN_NS if rec.sampled else 0)
        self.meter.add(spent)
        self.process_ns += OTHER_NS_PER_S + rate * APP_NS + spent
        self.now += 1.0
        self.meter.maybe_tick()
        return self.meter.ratio, kept_fast, fast


def test_the_budget_holds_as_the_rate_steps_up_and_errors_and_slow_traces_stay() -> None:
    server = SyntheticServer(budget=0.03)
    rows = []
    for rate in [50] * 5 + [400] * 15 + [1600] * 15 + [50] * 15:
        ratio, kept, fast = server.second(rate)
        rows.append((rate, ratio, kept / fast, server.meter.scale))
    print("\nrate, overhead share, fast traces kept, scale")
    for row in rows[::2]:
        print(f"{row[0]:5d} {row[1]:.4f} {row[2]:.3f} {row[3]:.3f}")
    low, mid, high, back = rows[:5], rows[5:20], rows[20:35], rows[35:]
    assert all(r[3] == 1.0 and r[2] == 1.0 for r in low), "under the budget: every trace kept"
    assert high[0][1] > 0.03, "the load step must push the share over the budget"
    # Within a few seconds of each step the share is back at the budget, and stays there (give or
    # take which trace ids a second brings: the kept share is decided on them).
    for phase in (mid, high):
        settled = [r[1] for r in phase[4:]]
        assert sum(settled) / len(settled) <= 0.03 and max(settled) <= 0.033, phase
    assert high[-1][3] < mid[-1][3] < 1.0, "more load, fewer fast traces kept"
    assert back[-1][3] == 1.0 and back[-1][2] == 1.0, "the scale grows back once the load drops"
    assert server.lost_errors_or_slow == 0, "errors and slow traces are never dropped by the budget"
    assert len(server.gauge.values) == len(rows)


def test_without_a_budget_the_share_is_only_reported() -> None:
    server = SyntheticServer(budget=0.0)
    for rate in [50] * 3 + [1600] * 5:
        ratio, kept, fast = server.second(rate)
    assert ratio is not None and ratio > 0.03
    assert kept == fast and server.meter.scale == 1.0


def test_a_window_with_too_little_cpu_is_not_judged() -> None:
    clock = [0.0]
    process = [0]
    meter = OverheadMeter(0.03, None, None, process_clock=lambda: process[0], clock=lambda: clock[0])
    meter.add(5_000_000)
    process[0] = 10_000_000  # 10 ms of process CPU: too coarse to judge
    assert meter.tick() is None
    process[0] = 100_000_000
    assert meter.tick() == pytest.approx(0.05)


def _busy(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_real_run_reports_its_share_and_a_tiny_budget_keeps_only_errors_and_slow() -> None:
    with capture(overhead_budget=1e-6, models={"m": {"slo_p99_seconds": 10}}) as telemetry:
        rt = infersight.get_runtime()
        assert rt is not None
        for _ in range(200):
            with infersight.request(model="m", endpoint="/p"), infersight.model():
                _busy(0.0002)
        telemetry.flush()
        _busy(0.03)  # the window needs some process CPU to be judged
        ratio = rt.overhead.tick()
        assert ratio is not None and 0 < ratio < 1
        assert telemetry.value(METRIC.OVERHEAD_CPU_RATIO.name) == pytest.approx(ratio)
        assert rt.overhead.scale < 0.01
        telemetry.exporter.clear()
        errors = 0
        for i in range(300):
            if i % 30 == 0:
                errors += 1
                with pytest.raises(KeyError), infersight.request(model="m", endpoint="/p"):
                    raise KeyError("x")
            else:
                with infersight.request(model="m", endpoint="/p"):
                    pass
        requests = [s for s in telemetry.spans() if s.attributes and s.attributes.get("infersight.model.name")]
        failed = [s for s in requests if not s.status.is_ok]
        assert len(failed) == errors == 10, "every error is exported"
        assert len(requests) - len(failed) <= 10, "fast, successful requests are mostly not"
        assert now_ns() > 0
