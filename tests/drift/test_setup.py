"""``infersight.init(drift=True)`` starts the monitor; shutdown stops it and removes its pages;
the module-level API follows the running runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import infersight
from infersight import drift


def test_init_starts_and_shutdown_stops_the_monitor(tmp_path: Path) -> None:
    for round_ in range(2):  # a second init must not collide with the first one's metrics
        registry = CollectorRegistry()
        infersight.init(
            registry=registry,
            traces=False,
            gpu="off",
            drift=True,
            drift_dir=str(tmp_path / "drift"),
            drift_interval_s=30,
        )
        try:
            monitor = drift.get_monitor()
            assert monitor is not None and monitor._thread is not None and monitor._thread.is_alive()
            rt = infersight.get_runtime()
            assert rt is not None and rt.drift is monitor
            pages = rt.exposition.pages
            assert "/drift" in pages
            drift.declare("m", numeric=["x"])
            drift.capture("m", {"x": 1.0}, {"label": "a"})
            monitor.collect()
            assert monitor.window_rows("m") == [{"x": 1.0, "prediction_label": "a"}]
            assert registry.get_sample_value("infersight_drift_samples_captured_total", {"model": "m"}) == 1.0
            thread = monitor._thread
        finally:
            infersight.shutdown()
        thread.join(5)
        assert not thread.is_alive(), f"round {round_}: drift thread still running"
        assert "/drift" not in pages
        assert registry.get_sample_value("infersight_drift_samples_captured_total", {"model": "m"}) is None
    assert drift.get_monitor() is None
    drift.capture("m", {"x": 1.0})  # drift off: a silent no-op
    with pytest.raises(RuntimeError, match="drift=True"):
        drift.set_reference("m", [{"x": 1.0}])


def test_after_fork_the_child_starts_empty_with_its_own_thread(tmp_path: Path) -> None:
    infersight.init(
        registry=CollectorRegistry(),
        traces=False,
        gpu="off",
        drift=True,
        drift_dir=str(tmp_path / "drift"),
        drift_interval_s=30,
    )
    try:
        monitor = drift.get_monitor()
        assert monitor is not None
        drift.capture("m", {"x": 1.0})
        monitor.collect()
        drift.capture("m", {"x": 2.0})
        parent_thread = monitor._thread
        monitor.after_fork_in_child()  # what os.register_at_fork runs in a forked worker
        assert monitor.window_rows("m") == [] and not monitor._buffer("m").pending
        assert monitor._thread is not None and monitor._thread is not parent_thread
        assert monitor._thread.is_alive()
        drift.capture("m", {"x": 3.0})
        monitor.collect()
        assert monitor.window_rows("m") == [{"x": 3.0}]
    finally:
        infersight.shutdown()
