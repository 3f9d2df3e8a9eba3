"""Bad input never breaks the request path or the monitor: it becomes "insufficient data"
(``drift_insufficient_data`` 1) and ``drift_errors_total`` by reason. Memory stays bounded."""

from __future__ import annotations

import math

import pytest

from infersight import _errors

from .conftest import Feed, Harness

ERRORS = "infersight_drift_errors_total"
INSUFFICIENT = "infersight_drift_insufficient_data"
DETECTED = "infersight_drift_detected"


def test_non_numeric_and_nan_values_are_dropped_and_counted(harness: Harness, feed: Feed) -> None:
    mon = harness.monitor()
    mon.declare("m", numeric=["amount"], text=["query"])
    feed(mon, "m", 200, seed=1)
    bad = ["abc", None, float("nan"), float("inf"), [1, 2], {"x": 1}]
    for value in bad:
        mon.capture("m", {"amount": value, "country": "fr", "query": "good movie"})
    mon.collect()
    feed(mon, "m", 150, seed=2, shifted=True)
    result = mon.run_once()["m"]
    assert result is not None and result.detected  # the good samples still give a verdict
    assert harness.value(ERRORS, model="m", reason="invalid_values") == 1.0
    assert harness.value(INSUFFICIENT, model="m") == 0.0
    amounts = [row.get("amount") for row in mon.window_rows("m")]
    assert sum(1 for a in amounts if a is not None and math.isnan(a)) == len(bad)


def test_tiny_window_is_insufficient_data(harness: Harness, feed: Feed) -> None:
    mon = harness.monitor()
    mon.set_reference("m", [{"amount": float(i), "country": "fr" if i % 2 else "de"} for i in range(100)])
    for i in range(10):
        mon.capture("m", {"amount": float(i), "country": "fr"})
    assert mon.run_once()["m"] is None
    assert harness.value(INSUFFICIENT, model="m") == 1.0
    assert harness.value(DETECTED, model="m") == 0.0
    assert harness.value(ERRORS, model="m", reason="insufficient_data") == 1.0
    assert harness.value("infersight_drift_window_samples", model="m") == 10.0


def test_a_verdict_then_no_data_removes_the_stale_feature_series(harness: Harness, feed: Feed) -> None:
    mon = harness.monitor(drift_window=40, drift_reference_size=40)
    feed(mon, "m", 40, seed=3)
    mon.collect()
    feed(mon, "m", 40, seed=4, shifted=True)
    assert mon.run_once()["m"] is not None
    assert harness.value("infersight_drift_share_ratio", model="m") is not None
    # Now only unusable samples arrive: every value of the window is missing.
    for _ in range(40):
        mon.capture("m", {"amount": None, "country": None, "age": None, "query": None})
    assert mon.run_once()["m"] is None
    assert harness.value(INSUFFICIENT, model="m") == 1.0
    assert harness.value(DETECTED, model="m") == 0.0
    assert harness.value("infersight_drift_share_ratio", model="m") is None
    assert harness.value("infersight_drift_feature_drifted", model="m", feature="amount", method="K-S p_value") is None


def test_all_values_unusable_is_no_usable_features(harness: Harness) -> None:
    mon = harness.monitor()
    mon.declare("m", numeric=["x"])
    mon.set_reference("m", [{"x": float(i)} for i in range(100)])
    for _ in range(100):
        mon.capture("m", {"x": "not a number"})
    assert mon.run_once()["m"] is None
    assert harness.value(ERRORS, model="m", reason="no_usable_features") == 1.0
    assert harness.value(ERRORS, model="m", reason="invalid_values") == 1.0
    assert harness.value(INSUFFICIENT, model="m") == 1.0


def test_no_reference_yet_is_insufficient_data(harness: Harness, feed: Feed) -> None:
    mon = harness.monitor(drift_reference_size=500)
    feed(mon, "m", 100, seed=5)
    assert mon.run_once()["m"] is None
    assert harness.value(ERRORS, model="m", reason="no_reference") == 1.0
    assert harness.value(INSUFFICIENT, model="m") == 1.0


def test_an_evidently_error_is_counted_not_raised(
    harness: Harness, feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evidently import Report

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("evidently broke")

    monkeypatch.setattr(Report, "run", boom)
    before = _errors.counts().get("drift.evidently_error", 0)
    mon = harness.monitor()
    feed(mon, "m", 200, seed=6)
    mon.collect()
    feed(mon, "m", 100, seed=7)
    assert mon.run_once()["m"] is None
    assert harness.value(ERRORS, model="m", reason="evidently_error") == 1.0
    assert harness.value(INSUFFICIENT, model="m") == 1.0
    assert _errors.counts().get("drift.evidently_error", 0) == before + 1


def test_capture_never_raises(harness: Harness) -> None:
    mon = harness.monitor()
    before = _errors.counts().get("drift.capture", 0)
    mon.capture("m", None, None)  # type: ignore[arg-type]
    mon.capture("m", 42, "x")  # type: ignore[arg-type]
    mon.capture_pipeline("p", object(), object(), object())
    mon.capture("m", {"x": object()}, {"label": object()})
    mon.collect()  # extraction of the garbage happens here, and must not raise either
    mon.run_once()
    assert _errors.counts().get("drift.capture", 0) == before + 2  # the two non-mappings
    assert harness.value(ERRORS, model="m", reason="invalid_values") == 1.0  # the object()
    assert mon.window_rows("p") == []  # nothing usable in the pipeline call


def test_window_and_pending_samples_stay_bounded(harness: Harness, feed: Feed) -> None:
    mon = harness.monitor(drift_window=50, drift_reference_size=20)
    buf = mon._buffer("m")
    for round_ in range(5):
        feed(mon, "m", 3000, seed=round_)
        assert len(buf.pending) <= 50  # the request path never queues more than a window
        mon.collect()
        assert len(buf.window) <= 50
        assert len(mon.window_rows("m")) == 50
    assert harness.value("infersight_drift_samples_captured_total", model="m") == 15000.0
    ref = mon.reference("m")
    assert ref is not None and len(ref) == 20


def test_feature_count_is_bounded(harness: Harness) -> None:
    mon = harness.monitor()
    for i in range(300):
        mon.capture("m", {f"f{i}_{j}": float(j) for j in range(3)})
    mon.collect()
    assert len(mon._buffer("m").schema.columns()) <= 100
    mon.run_once()
    assert harness.value(ERRORS, model="m", reason="too_many_features") == 1.0


def test_model_labels_are_bounded(harness: Harness) -> None:
    mon = harness.monitor(max_label_values=3)
    for i in range(20):
        mon.capture(f"model-{i}", {"x": 1.0})
    mon.collect()
    assert set(mon._buffers) == {"model-0", "model-1", "model-2", "other"}


def test_sample_rate(harness: Harness, feed: Feed) -> None:
    none = harness.monitor(drift_sample_rate=0.0)
    feed(none, "m", 100, seed=8)
    assert len(none._buffer("m").pending) == 0
    half = harness.monitor(drift_sample_rate=0.5, drift_window=1000)
    feed(half, "m", 1000, seed=9)
    assert 350 < len(half._buffer("m").pending) < 650


def test_non_text_pipeline_inputs_are_not_held(harness: Harness) -> None:
    mon = harness.monitor()
    image = bytearray(1_000_000)
    mon.capture_pipeline("vision", object(), image, [{"label": "cat", "score": 0.9}])
    mon.capture_pipeline("vision", object(), [image, image], [{"label": "cat", "score": 0.9}] * 2)
    mon.capture_pipeline("text", object(), ["a", "b"], [{"label": "x", "score": 0.5}] * 2)
    assert [s[1] for s in mon._buffer("vision").pending] == [None, None]
    assert [s[1] for s in mon._buffer("text").pending] == [["a", "b"]]
