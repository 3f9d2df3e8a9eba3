"""The drift metrics (``METRIC.DRIFT_*``), set by the background thread after each run."""

from __future__ import annotations

import time
from typing import Any

from ..conventions import METRIC
from ..metrics import multiprocess_mode
from .analysis import DriftResult

__all__ = ["DriftMetrics"]


class DriftMetrics:
    """Created through ``Runtime.make_metric``, so a re-init unregisters them.

    Without a verdict (too little data, an evidently error) ``drift_detected`` is 0,
    ``drift_insufficient_data`` 1, and the per-feature series and the share are removed
    rather than left showing a stale verdict.
    """

    def __init__(self, rt: Any) -> None:
        latest = {"multiprocess_mode": "mostrecent"} if multiprocess_mode() else {}
        make = rt.make_metric
        self.score = make(METRIC.DRIFT_SCORE, **latest)
        self.drifted = make(METRIC.DRIFT_FEATURE_DRIFTED, **latest)
        self.detected = make(METRIC.DRIFT_DETECTED, **latest)
        self.share = make(METRIC.DRIFT_SHARE, **latest)
        self.window = make(METRIC.DRIFT_WINDOW_SAMPLES, **latest)
        self.insufficient = make(METRIC.DRIFT_INSUFFICIENT_DATA, **latest)
        self.last_run = make(METRIC.DRIFT_LAST_RUN, **latest)
        self.duration = make(METRIC.DRIFT_RUN_DURATION, **latest)
        self.errors = make(METRIC.DRIFT_ERRORS)
        self.captured = make(METRIC.DRIFT_SAMPLES_CAPTURED)
        self._series: dict[str, set[tuple[str, str]]] = {}  # model -> (feature, method) shown

    def model_seen(self, model: str) -> None:
        """Series exist from the first sample on, so alerts see 0s rather than nothing."""
        self.captured.labels(model)
        self.insufficient.labels(model)
        self.detected.labels(model)

    def add_captured(self, model: str, count: int) -> None:
        if count > 0:
            self.captured.labels(model).inc(count)

    def error(self, model: str, reason: str) -> None:
        self.errors.labels(model, reason).inc()

    def publish(self, model: str, result: DriftResult, seconds: float) -> None:
        shown: set[tuple[str, str]] = set()
        for feature in result.features:
            key = (feature.feature, feature.method)
            shown.add(key)
            self.score.labels(model, *key).set(feature.score)
            self.drifted.labels(model, *key).set(1 if feature.drifted else 0)
        self._remove_features(model, keep=shown)
        self.share.labels(model).set(result.share)
        self.detected.labels(model).set(1 if result.detected else 0)
        self.insufficient.labels(model).set(0)
        self._finish(model, result.window_samples, seconds)

    def no_verdict(self, model: str, window_samples: int, seconds: float) -> None:
        self._remove_features(model, keep=set())
        try:
            self.share.remove(model)
        except KeyError:
            pass
        self.detected.labels(model).set(0)
        self.insufficient.labels(model).set(1)
        self._finish(model, window_samples, seconds)

    def _finish(self, model: str, window_samples: int, seconds: float) -> None:
        self.window.labels(model).set(window_samples)
        self.duration.labels(model).set(seconds)
        self.last_run.labels(model).set(time.time())

    def _remove_features(self, model: str, keep: set[tuple[str, str]]) -> None:
        old = self._series.get(model, set())
        for key in old - keep:
            for gauge in (self.score, self.drifted):
                try:
                    gauge.remove(model, *key)
                except KeyError:
                    pass
        self._series[model] = keep
