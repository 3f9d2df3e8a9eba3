"""The SDK never fails a request: internal errors are counted, logged once and swallowed;
labels from traffic are bounded."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import infersight
from infersight import _errors
from infersight._records import StageRecord
from infersight.testing import capture


class ExplodingHook:
    def on_stage_start(self, stage: StageRecord) -> None:
        raise RuntimeError("hook bug at start")

    def on_stage_end(self, stage: StageRecord) -> None:
        raise RuntimeError("hook bug at end")

    def enrich(self, stage: StageRecord, attributes: dict[str, Any]) -> None:
        raise RuntimeError("hook bug in worker")


def test_internal_errors_are_swallowed_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    _errors.reset()
    with capture() as t, caplog.at_level(logging.WARNING, logger="infersight"):
        infersight.get_runtime().add_hook(ExplodingHook())  # type: ignore[attr-defined]
        for _ in range(5):
            with infersight.request(model="m"), infersight.model():
                result = 42
        assert result == 42
        assert len(t.spans("model")) == 5  # the span still closes
        assert t.value("infersight_sdk_errors_total", component="hook.ExplodingHook") == 15.0
    logged = [r for r in caplog.records if "hook.ExplodingHook" in r.getMessage()]
    assert len(logged) == 1


def test_a_failing_hook_loses_nothing_of_a_batch() -> None:
    _errors.reset()
    with capture() as t:
        infersight.get_runtime().add_hook(ExplodingHook())  # type: ignore[attr-defined]
        requests = [infersight.request(model="b") for _ in range(3)]
        handles = []
        for r in requests:
            r.__enter__()
            handles.append(infersight.current_request_handle())
        with infersight.batch(handles, model="b"):
            result = 42
        for r in reversed(requests):
            r.__exit__(None, None, None)
        assert result == 42
        assert len(t.spans("model")) == 3
        assert t.value("infersight_stage_duration_seconds_count", model="b", stage="model") == 3.0
        assert t.value("infersight_batch_size_count", model="b") == 1.0
        assert t.value("infersight_queue_wait_seconds_count", model="b") == 3.0
        # one start and one end for the batch, one enrich per request's stage
        assert t.value("infersight_sdk_errors_total", component="hook.ExplodingHook") == 5.0
        assert t.value("infersight_sdk_errors_total", component="batch") is None


def test_cardinality_flood_is_bounded_and_counted() -> None:
    with capture(max_label_values=20, traces=False) as t:
        for i in range(5000):
            with infersight.request(model=f"model-{i}", endpoint=f"/path/{i}"):
                pass
        text = t.openmetrics()
        series = [line for line in text.splitlines() if line.startswith("infersight_request_duration_seconds_count")]
        assert len(series) <= 20 * 20
        assert t.value("infersight_label_overflow_total", label="model") == 5000 - 20
        assert t.value("infersight_label_overflow_total", label="endpoint") == 5000 - 20
        total = sum(float(line.rsplit(" ", 1)[1]) for line in series)
        assert total == 5000.0  # nothing lost: overflow goes to "other"


def test_repeated_kinds_of_request_keep_their_own_series_and_overflow_counts() -> None:
    """The worker finds a kind of request's series once and reuses them: each kind must still
    land in its own series, and a value past the limit must still be counted every time."""
    with capture(max_label_values=2, traces=False) as t:
        for endpoint, outcome_error, n in (("/a", False, 3), ("/a", True, 2), ("/b", False, 1), ("/c", False, 4)):
            for _ in range(n):
                try:
                    with infersight.request(model="m", endpoint=endpoint):
                        with infersight.stage("model"):
                            pass
                        with infersight.stage("rerank", model="r"):  # another model's stage
                            pass
                        if outcome_error:
                            raise ValueError("x")
                except ValueError:
                    pass
        count = "infersight_request_duration_seconds_count"
        assert t.value(count, model="m", version="unknown", endpoint="/a", outcome="success") == 3
        assert t.value(count, model="m", version="unknown", endpoint="/a", outcome="error") == 2
        assert t.value(count, model="m", version="unknown", endpoint="/b", outcome="success") == 1
        assert t.value(count, model="m", version="unknown", endpoint="other", outcome="success") == 4
        assert t.value("infersight_label_overflow_total", label="endpoint") == 4
        assert t.value("infersight_stage_duration_seconds_count", model="m", stage="model") == 10
        assert t.value("infersight_stage_duration_seconds_count", model="r", stage="rerank") == 10


def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    with capture(queue_size=10, flush_interval_s=60) as t:
        for _ in range(25):
            with infersight.request(model="m"), infersight.model():
                pass
        assert t.value("infersight_spans_dropped_total", reason="queue_full") == 15 * 2
        assert t.value("infersight_records_processed_total") == 10.0


def test_without_init_the_api_is_a_no_op() -> None:
    infersight.shutdown()

    @infersight.model
    def f(x: int) -> int:
        return x + 1

    with infersight.request(model="m"):
        assert f(1) == 2


def test_worker_hands_the_gil_to_request_threads_while_draining_a_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long drain must not hold the GIL for a whole switch interval (5 ms): request threads
    would wait it out. The worker calls sleep(0) after each millisecond of work, no more often.
    A fake clock (0.3 ms per reading) makes this exact on any machine."""
    from infersight import _pipeline

    yields: list[float] = []
    real_sleep = _pipeline.time.sleep
    monkeypatch.setattr(_pipeline.time, "sleep", lambda s: (yields.append(s), real_sleep(s)))
    with capture(flush_interval_s=60) as t:
        for _ in range(3000):
            with infersight.request(model="m"), infersight.model():
                pass
        rt = infersight.get_runtime()
        assert rt is not None
        fake_now = iter(i * 0.0003 for i in range(10**6))
        monkeypatch.setattr(_pipeline, "_clock", lambda: next(fake_now))
        rt.worker.drain()
        assert t.value("infersight_records_processed_total") == 3000.0
    # Each record reads the clock once, each hand-off once more: one hand-off per 4 records.
    assert 3000 // 5 <= yields.count(0) <= 3000 // 3, len(yields)


def test_a_drain_that_never_empties_still_writes_its_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker sums observations and writes them when the queue empties; under a load that
    keeps it full, it writes them every _FLUSH_EVERY records as well."""
    from infersight import _pipeline

    monkeypatch.setattr(_pipeline, "_FLUSH_EVERY", 100)
    with capture(flush_interval_s=60) as t:
        for _ in range(250):
            with infersight.request(model="m"), infersight.model():
                pass
        rt = infersight.get_runtime()
        assert rt is not None and rt.metrics is not None
        seen: list[float | None] = []
        real_flush = rt.metrics.flush

        def spy() -> None:
            real_flush()
            seen.append(t.registry.get_sample_value("infersight_records_processed_total"))

        monkeypatch.setattr(rt.metrics, "flush", spy)
        rt.worker.drain()
        assert seen == [100.0, 200.0, 250.0]
        assert t.value("infersight_stage_duration_seconds_count", model="m", stage="model") == 250


def test_a_scrape_counts_every_request_finished_before_it() -> None:
    """The worker drains once a second; a scrape processes what is pending first."""
    with capture(flush_interval_s=60):
        for _ in range(3):
            with infersight.request(model="m", endpoint="/x"), infersight.model():
                pass
        rt = infersight.get_runtime()
        assert rt is not None
        _, body = rt.exposition.metrics(None)
        line = next(
            ln for ln in body.decode().splitlines() if ln.startswith("infersight_request_duration_seconds_count{")
        )
        assert line.endswith(" 3.0"), line


def test_periodic_drains_write_metrics_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's own drains (every flush interval) write the summed observations once a
    second at most; an explicit drain (a scrape's, a test's, shutdown's) writes them at once,
    and nothing summed in between is lost. A fake clock makes this exact."""
    from infersight import _pipeline

    now = [1000.0]
    monkeypatch.setattr(_pipeline, "_clock", lambda: now[0])
    with capture(flush_interval_s=60) as t:
        rt = infersight.get_runtime()
        assert rt is not None
        written: list[float | None] = []
        for _ in range(6):
            with infersight.request(model="m"), infersight.model():
                pass
            rt.worker.drain(periodic=True)
            written.append(t.registry.get_sample_value("infersight_records_processed_total"))
            now[0] += 0.4  # drains 0.4 s apart: writes at 0 and 1.2 s (2.0 s is 0.8 s after)
        assert written == [1.0, 1.0, 1.0, 4.0, 4.0, 4.0]
        with infersight.request(model="m"), infersight.model():
            pass
        rt.worker.drain()  # explicit: writes now
        assert t.value("infersight_records_processed_total") == 7.0
        assert t.value("infersight_stage_duration_seconds_count", model="m", stage="model") == 7
