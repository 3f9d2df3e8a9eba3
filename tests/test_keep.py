"""Tail keep: errors and slow requests always exported, the rest at the ratio; metrics count
everything; exemplars only name exported traces."""

from __future__ import annotations

import re
import time

import pytest

import infersight
from infersight.config import Config, ConfigError
from infersight.testing import capture


def traces(t: object) -> set[int]:
    return {s.context.trace_id for s in t.spans()}  # type: ignore[attr-defined]


def test_keep_ratio_1_keeps_every_trace_unmarked() -> None:
    with capture(traces_keep_ratio=1.0) as t:
        for _ in range(50):
            with infersight.request(model="m"), infersight.model():
                pass
        assert len(traces(t)) == 50
        assert not any("infersight.trace.kept" in (s.attributes or {}) for s in t.spans())


def test_errors_and_slow_requests_are_kept_and_the_rest_at_the_ratio() -> None:
    with capture(
        traces_keep_ratio=0.1, traces_keep_slower_than_s=0.02, models={"slo": {"slo_p99_seconds": 0.005}}
    ) as t:
        for _ in range(2000):
            with infersight.request(model="m"), infersight.model():
                pass
        errors = 0
        for _ in range(20):
            try:
                with infersight.request(model="m"), infersight.model():
                    raise ValueError("bad input")
            except ValueError:
                errors += 1
        for _ in range(3):
            with infersight.request(model="m"), infersight.model():
                time.sleep(0.025)  # over traces_keep_slower_than_s
        for _ in range(3):
            with infersight.request(model="slo"), infersight.model():
                time.sleep(0.007)  # over that model's P99 objective, under 20 ms
        spans = t.spans("model")
        failed = [s for s in spans if s.events]
        slow = [s for s in spans if (s.end_time or 0) - (s.start_time or 0) > 5_000_000]
        assert errors == len(failed) == 20
        assert len(slow) >= 6  # and any fast one a busy box held past 5 ms (kept by ratio, if kept)
        fast_kept = len(spans) - 26
        assert 120 <= fast_kept <= 290, fast_kept  # 10% of 2000, binomial sd 13
        # Every request span has its stage: a trace is kept or dropped whole.
        requests = t.spans("inference")
        assert len(requests) == len(spans)
        reasons = [s.attributes.get("infersight.trace.kept") for s in requests]  # type: ignore[union-attr]
        # A "fast" request the box held past 20 ms is slow, and kept as such.
        held = [s for s in requests if s.attributes.get("infersight.trace.kept") == "slow"]  # type: ignore[union-attr]
        assert reasons.count("error") == 20 and len(held) >= 6
        assert reasons.count("ratio") == fast_kept - (len(held) - 6)
        # Metrics count every request, kept or not.
        assert (
            t.value(
                "infersight_request_duration_seconds_count",
                model="m",
                version="unknown",
                endpoint="inference",
                outcome="success",
            )
            == 2003
        )
        kept = {format(s.context.trace_id, "032x") for s in spans}
        exemplars = set(re.findall(r'trace_id="([0-9a-f]{32})"', t.openmetrics()))
        assert exemplars and exemplars <= kept, "an exemplar names a trace that was not exported"


def test_ratio_is_decided_on_the_trace_id_like_the_otel_sampler() -> None:
    from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

    sampler = TraceIdRatioBased(0.25)
    with capture(traces_keep_ratio=0.25) as t:
        for _ in range(400):
            with infersight.request(model="m"):
                pass
        kept = traces(t)
    assert 50 <= len(kept) <= 150, len(kept)
    for trace_id in kept:
        assert sampler.should_sample(None, trace_id, "x").decision is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("INFERSIGHT_TRACES_KEEP_RATIO", "1.5"),
        ("INFERSIGHT_TRACES_KEEP_RATIO", "ten"),
        ("INFERSIGHT_TRACES_KEEP_SLOWER_THAN", "0"),
    ],
)
def test_bad_settings_name_the_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        Config.from_env({env: value})
