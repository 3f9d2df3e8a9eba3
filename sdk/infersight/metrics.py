"""Prometheus metrics of requests and stages, observed off the request path by the worker."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ._cardinality import LabelLimiter
from ._observations import ExemplarIds, ObservationBatch
from ._records import RequestRecord, StageRecord
from .config import Config
from .conventions import METRIC, OUTCOME_ERROR, OUTCOME_SUCCESS, UNKNOWN, MetricSpec

__all__ = ["InferenceMetrics", "make_metric", "multiprocess_mode"]


def multiprocess_mode() -> bool:
    """prometheus_client picks its storage at import time from this variable."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


_created: dict[int, list[Any]] = {}


def make_metric(spec: MetricSpec, registry: CollectorRegistry | None, **kwargs: Any) -> Any:
    """Create the prometheus_client object for a spec from ``conventions``."""
    common: dict[str, Any] = {"labelnames": spec.labels, "registry": registry}
    metric: Any
    if spec.type == "histogram":
        metric = Histogram(spec.name, spec.help, buckets=spec.buckets, **common, **kwargs)
    elif spec.type == "counter":
        metric = Counter(spec.name, spec.help, **common, **kwargs)
    elif spec.type == "gauge":
        metric = Gauge(spec.name, spec.help, **common, **kwargs)
    else:
        raise ValueError(f"no prometheus_client type for {spec.type}")
    if registry is not None:
        _created.setdefault(id(registry), []).append(metric)
    return metric


def owned_collectors(registry: CollectorRegistry) -> list[Any]:
    """The metrics ``make_metric`` put in ``registry`` (and forgets them)."""
    return _created.pop(id(registry), [])


class InferenceMetrics:
    """The request/stage metrics of one process. Tests pass a fresh ``registry``."""

    def __init__(self, config: Config, registry: CollectorRegistry | None) -> None:
        self.config = config
        self.registry = registry
        mp = multiprocess_mode()
        self.exemplars = config.exemplars and not mp  # prometheus_client drops them in mp mode
        livesum = {"multiprocess_mode": "livesum"} if mp else {}
        latest = {"multiprocess_mode": "mostrecent"} if mp else {}
        self.request_duration = make_metric(METRIC.REQUEST_DURATION, registry)
        self.stage_duration = make_metric(METRIC.STAGE_DURATION, registry)
        self.in_flight = make_metric(METRIC.REQUESTS_IN_FLIGHT, registry, **livesum)
        # The request path's two calls. One process: a set read at scrape time (add and discard
        # are single GIL-held calls, no lock). Multiprocess mode: the gauge's own file-backed value.
        self.request_started: Callable[[Any], Any]
        self.request_finished: Callable[[Any], Any]
        if mp:
            self.request_started = lambda rec: self.in_flight.inc()
            self.request_finished = lambda rec: self.in_flight.dec()
        else:
            serving: set[Any] = set()
            self.in_flight.set_function(serving.__len__)
            self.request_started, self.request_finished = serving.add, serving.discard
        self.queue_wait = make_metric(METRIC.QUEUE_WAIT, registry)
        self.batch_size = make_metric(METRIC.BATCH_SIZE, registry)
        self.payload = make_metric(METRIC.PAYLOAD_SIZE, registry)
        self.tokens = make_metric(METRIC.INPUT_TOKENS, registry)
        self.errors = make_metric(METRIC.ERRORS, registry)
        self.model_load = make_metric(METRIC.MODEL_LOAD_DURATION, registry, **latest)
        self.first_request = make_metric(METRIC.FIRST_REQUEST_DURATION, registry, **latest)
        self.slo = make_metric(METRIC.MODEL_SLO_P99, registry, **latest)
        self.over_slo = make_metric(METRIC.REQUESTS_OVER_SLO, registry)
        self.model_info = make_metric(METRIC.MODEL_INFO, registry, **latest)
        self.sdk_errors = make_metric(METRIC.SDK_ERRORS, registry)
        self.spans_dropped = make_metric(METRIC.SPANS_DROPPED, registry)
        self.spans_exported = make_metric(METRIC.SPANS_EXPORTED, registry)
        self.records = make_metric(METRIC.RECORDS_PROCESSED, registry)
        self.label_overflow = make_metric(METRIC.LABEL_OVERFLOW, registry)
        self.limiter = LabelLimiter(config.max_label_values, self._overflow)
        self._first_seen: set[str] = set()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._batch = ObservationBatch()
        self._observe = self._batch.observe
        for name, model in config.models.items():
            self.limiter.preload("model", name)
            self.model_info.labels(name, model.version or UNKNOWN).set(1)
            if model.slo_p99_seconds is not None:
                self.slo.labels(name).set(model.slo_p99_seconds)
        # Pre-create the SDK-health series so alerts and dashboards see zeros, not absence.
        for reason in ("queue_full", "export_queue_full", "export_failed"):
            self.spans_dropped.labels(reason)

    def flush(self) -> None:
        """Write the observations summed since the last flush (the worker calls it per drain)."""
        self._batch.flush()

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(...)`` with a cache: the lookup dominated the worker's profile."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _overflow(self, label: str) -> None:
        self.label_overflow.labels(label).inc()

    def _exemplar(self, sampled: bool, trace_id: int, span_id: int) -> ExemplarIds | None:
        return (trace_id, span_id) if self.exemplars and sampled else None

    def model_labels(self, model: str | None, version: str | None) -> tuple[str, str]:
        name = self.limiter.bound("model", model) if model else UNKNOWN
        if not version:
            configured = self.config.model(name)
            version = configured.version if configured and configured.version else UNKNOWN
        return name, self.limiter.bound("version", version)

    def observe_request(self, rec: RequestRecord, model: str, version: str) -> None:
        """``model``/``version`` are the bounded labels from ``model_labels``."""
        endpoint = self.limiter.bound("endpoint", rec.endpoint or UNKNOWN)
        outcome = rec.outcome or (OUTCOME_ERROR if rec.error is not None else OUTCOME_SUCCESS)
        seconds = (rec.end_ns - rec.start_ns) / 1e9
        ex = self._exemplar(rec.sampled, rec.trace_id, rec.span_id)
        self._observe(self._child(self.request_duration, model, version, endpoint, outcome), seconds, ex)
        configured = self.config.model(model)
        if configured and configured.slo_p99_seconds is not None:
            over = self._child(self.over_slo, model)  # the series exists from the first request
            if seconds > configured.slo_p99_seconds:
                self._batch.count(over, ex)
        if model not in self._first_seen:
            self._first_seen.add(model)
            self._child(self.model_info, model, version).set(1)
            self._child(self.first_request, model, version).set(seconds)
        if rec.payload_in >= 0:
            self._observe(self._child(self.payload, model, "request"), rec.payload_in, ex)
        if rec.payload_out >= 0:
            self._observe(self._child(self.payload, model, "response"), rec.payload_out, ex)
        if rec.tokens >= 0:
            self._observe(self._child(self.tokens, model), rec.tokens, ex)
        if rec.queue_wait_s >= 0:
            self._observe(self._child(self.queue_wait, model), rec.queue_wait_s, ex)
        self._batch.count(self.records, None)

    def observe_stage(self, stage: StageRecord, model: str) -> None:
        name = self.limiter.bound("stage", stage.name)
        ex = self._exemplar(stage.sampled, stage.trace_id, stage.span_id)
        self._observe(self._child(self.stage_duration, model, name), (stage.end_ns - stage.start_ns) / 1e9, ex)
        if stage.error is not None:
            exc_type = self.limiter.bound("exception_type", type(stage.error).__qualname__)
            self._child(self.errors, model, name, exc_type).inc()
        if stage.batch_size > 0:
            self._observe(self._child(self.batch_size, model), stage.batch_size, ex)

    def record_model_load(self, model: str, version: str | None, seconds: float) -> None:
        name, ver = self.model_labels(model, version)
        self.model_load.labels(name, ver).set(seconds)
        self.model_info.labels(name, ver).set(1)
