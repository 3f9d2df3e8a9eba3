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

__all__ = ["InferenceMetrics", "Ledger", "make_metric", "multiprocess_mode"]


def multiprocess_mode() -> bool:
    """prometheus_client picks its storage at import time from this variable."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def make_metric(spec: MetricSpec, registry: CollectorRegistry | None, **kwargs: Any) -> Any:
    """Create the prometheus_client object for a spec from ``conventions``."""
    common: dict[str, Any] = {"labelnames": spec.labels, "registry": registry}
    if spec.type == "histogram":
        return Histogram(spec.name, spec.help, buckets=spec.buckets, **common, **kwargs)
    if spec.type == "counter":
        return Counter(spec.name, spec.help, **common, **kwargs)
    if spec.type == "gauge":
        return Gauge(spec.name, spec.help, **common, **kwargs)
    raise ValueError(f"no prometheus_client type for {spec.type}")


class Ledger:
    """What one runtime put in a registry, so that a re-init or shutdown removes exactly that:
    the registry may be the app's global one, with the app's own metrics in it."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        self._owned: list[Any] = []

    def metric(self, spec: MetricSpec, **kwargs: Any) -> Any:
        metric = make_metric(spec, self.registry, **kwargs)
        if self.registry is not None:
            self._owned.append(metric)
        return metric

    def register(self, collector: Any) -> None:
        """Register a custom collector (``collect() -> Iterable[Metric]``)."""
        if self.registry is not None:
            self.registry.register(collector)
            self._owned.append(collector)

    def unregister_all(self) -> None:
        owned, self._owned = self._owned, []
        for collector in owned:
            try:
                self.registry.unregister(collector)  # type: ignore[union-attr]
            except Exception:
                pass


class InferenceMetrics:
    """The request/stage metrics of one process. Tests pass a fresh ``registry``."""

    def __init__(self, config: Config, ledger: Ledger) -> None:
        self.config = config
        self.registry = ledger.registry
        make = ledger.metric
        mp = multiprocess_mode()
        self.exemplars = config.exemplars and not mp  # prometheus_client drops them in mp mode
        livesum = {"multiprocess_mode": "livesum"} if mp else {}
        latest = {"multiprocess_mode": "mostrecent"} if mp else {}
        self.request_duration = make(METRIC.REQUEST_DURATION)
        self.stage_duration = make(METRIC.STAGE_DURATION)
        self.stage_cpu = make(METRIC.STAGE_CPU)
        self.outside_stages = make(METRIC.OUTSIDE_STAGES)
        self.gil_wait = make(METRIC.GIL_WAIT)
        self.time_to_first_byte = make(METRIC.TIME_TO_FIRST_BYTE)
        self.in_flight = make(METRIC.REQUESTS_IN_FLIGHT, **livesum)
        self.client_duration = make(METRIC.CLIENT_REQUEST_DURATION)
        self.client_network = make(METRIC.CLIENT_NETWORK)
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
        self.queue_wait = make(METRIC.QUEUE_WAIT)
        self.batch_size = make(METRIC.BATCH_SIZE)
        self.payload = make(METRIC.PAYLOAD_SIZE)
        self.tokens = make(METRIC.INPUT_TOKENS)
        self.errors = make(METRIC.ERRORS)
        self.model_load = make(METRIC.MODEL_LOAD_DURATION, **latest)
        self.first_request = make(METRIC.FIRST_REQUEST_DURATION, **latest)
        self.cold_start = make(METRIC.COLD_START, **latest)
        self.slo = make(METRIC.MODEL_SLO_P99, **latest)
        self.over_slo = make(METRIC.REQUESTS_OVER_SLO)
        self.model_info = make(METRIC.MODEL_INFO, **latest)
        self.sdk_errors = make(METRIC.SDK_ERRORS)
        self.spans_dropped = make(METRIC.SPANS_DROPPED)
        self.spans_exported = make(METRIC.SPANS_EXPORTED)
        self.records = make(METRIC.RECORDS_PROCESSED)
        # Per process; in multiprocess mode the share last written (no new kind of file per worker).
        self.overhead = make(METRIC.OVERHEAD_CPU_RATIO, **latest)
        self.label_overflow = make(METRIC.LABEL_OVERFLOW)
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

    def after_fork_in_child(self) -> None:
        self._batch.forget_pending()

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
        if rec.first_byte_ns:
            ttfb = (rec.first_byte_ns - rec.start_ns) / 1e9
            self._observe(self._child(self.time_to_first_byte, model, version, endpoint), ttfb, ex)
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

    def observe_client(self, rec: RequestRecord, network_s: float) -> None:
        """An outgoing call; ``network_s``: its time outside the server's handler (-1: unknown)."""
        target = self.limiter.bound("target", rec.target or UNKNOWN)
        endpoint = self.limiter.bound("endpoint", rec.endpoint or UNKNOWN)
        outcome = rec.outcome or OUTCOME_SUCCESS
        ex = self._exemplar(rec.sampled, rec.trace_id, rec.span_id)
        seconds = (rec.end_ns - rec.start_ns) / 1e9
        self._observe(self._child(self.client_duration, target, endpoint, outcome), seconds, ex)
        if network_s >= 0:
            self._observe(self._child(self.client_network, target, endpoint), network_s, ex)

    def observe_stage(self, stage: StageRecord, model: str, cpu: float | None = None) -> None:
        """``cpu``: ``stage.cpu_seconds()``, computed once by the worker for the metric and the span."""
        name = self.limiter.bound("stage", stage.name)
        ex = self._exemplar(stage.sampled, stage.trace_id, stage.span_id)
        self._observe(self._child(self.stage_duration, model, name), (stage.end_ns - stage.start_ns) / 1e9, ex)
        if cpu is not None:
            self._observe(self._child(self.stage_cpu, model, name), cpu, None)  # the wall time's exemplar will do
        if stage.error is not None:
            exc_type = self.limiter.bound("exception_type", type(stage.error).__qualname__)
            self._child(self.errors, model, name, exc_type).inc()
        if stage.batch_size > 0:
            self._observe(self._child(self.batch_size, model), stage.batch_size, ex)
        if stage.queue_wait_s >= 0:
            self._observe(self._child(self.queue_wait, model), stage.queue_wait_s, ex)

    def observe_outside_stages(self, rec: RequestRecord, model: str, seconds: float) -> None:
        ex = self._exemplar(rec.sampled, rec.trace_id, rec.span_id)
        self._observe(self._child(self.outside_stages, model), seconds, ex)

    def record_cold_start(self, model: str, seconds: dict[str, float]) -> None:
        """The last cold start of ``model`` (bounded label), by phase."""
        for phase, value in seconds.items():
            self.cold_start.labels(model, phase).set(value)

    def record_model_load(self, model: str, version: str | None, seconds: float) -> None:
        name, ver = self.model_labels(model, version)
        self.model_load.labels(name, ver).set(seconds)
        self.model_info.labels(name, ver).set(1)
