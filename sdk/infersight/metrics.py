"""Prometheus metrics of requests and stages, observed off the request path by the worker."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ._cardinality import LabelLimiter
from ._observations import ExemplarIds, ObservationBatch, Series
from ._records import RequestRecord, StageRecord
from .config import Config
from .conventions import METRIC, OUTCOME_ERROR, OUTCOME_SUCCESS, OVERFLOW_LABEL_VALUE, UNKNOWN, MetricSpec

__all__ = ["InferenceMetrics", "Ledger", "RequestPlan", "StageSeries", "make_metric", "multiprocess_mode"]

_MAX_PLANS = 4096  # kinds of request kept; past it the plans start over (labels are bounded anyway)


class StageSeries:
    """A stage's series under one model: found once, then written to directly."""

    __slots__ = ("cpu", "duration", "model", "name")

    def __init__(self, duration: Series, model: str, name: str) -> None:
        self.duration = duration
        self.cpu: Series | None = None
        self.model = model
        self.name = name  # bounded


class RequestPlan:
    """The series a kind of request writes (bounded labels, histograms made on first use), so
    the worker does one lookup per request instead of one per observation."""

    __slots__ = (
        "duration",
        "endpoint",
        "model",
        "outside",
        "over_slo",
        "payload_in",
        "payload_out",
        "queue_wait",
        "seen",
        "slo",
        "stages",
        "tokens",
        "ttfb",
        "version",
    )

    def __init__(self, model: str, version: str, duration: Series) -> None:
        self.model = model
        self.version = version
        self.endpoint = UNKNOWN
        self.duration = duration
        self.ttfb: Series | None = None
        self.slo = 0.0
        self.over_slo: Any = None  # the over-SLO counter's pending sum, when the model has an SLO
        self.seen = False  # the model's first request was seen (its info and first-request gauges)
        self.payload_in: Series | None = None
        self.payload_out: Series | None = None
        self.tokens: Series | None = None
        self.queue_wait: Series | None = None
        self.outside: Series | None = None
        self.stages: dict[str, StageSeries] = {}


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
        self._plans: dict[tuple[str | None, str | None, str, str], RequestPlan] = {}
        self._records = self._batch.counter(self.records)
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

    def plan(self, rec: RequestRecord) -> RequestPlan:
        """The series of ``rec``'s kind of request, found once per (model, version, endpoint,
        outcome). A label past its limit is bounded (and its overflow counted) per request, as
        without plans: such plans are not kept."""
        outcome = rec.outcome or (OUTCOME_ERROR if rec.error is not None else OUTCOME_SUCCESS)
        key = (rec.model, rec.version, rec.endpoint, outcome)
        plan = self._plans.get(key)
        if plan is None:
            model, version = self.model_labels(rec.model, rec.version)
            endpoint = self.limiter.bound("endpoint", rec.endpoint or UNKNOWN)
            plan = RequestPlan(model, version, self._series(self.request_duration, model, version, endpoint, outcome))
            plan.endpoint = endpoint
            configured = self.config.model(model)
            if configured and configured.slo_p99_seconds is not None:
                plan.slo = configured.slo_p99_seconds
                plan.over_slo = self._batch.counter(self._child(self.over_slo, model))  # exists from the first request
            if OVERFLOW_LABEL_VALUE not in (model, version, endpoint):
                if len(self._plans) >= _MAX_PLANS:
                    self._plans.clear()
                self._plans[key] = plan
        return plan

    def _series(self, metric: Any, *labels: str) -> Series:
        return self._batch.histogram(self._child(metric, *labels))

    def observe_request(self, rec: RequestRecord, plan: RequestPlan) -> None:
        """``plan``: ``self.plan(rec)``."""
        seconds = (rec.end_ns - rec.start_ns) / 1e9
        ex = (rec.trace_id, rec.span_id) if self.exemplars and rec.sampled else None
        plan.duration.add(seconds, ex)
        model = plan.model
        if rec.first_byte_ns:
            if plan.ttfb is None:
                plan.ttfb = self._series(self.time_to_first_byte, model, plan.version, plan.endpoint)
            plan.ttfb.add((rec.first_byte_ns - rec.start_ns) / 1e9, ex)
        if plan.over_slo is not None and seconds > plan.slo:
            plan.over_slo.add(ex)
        if not plan.seen:
            plan.seen = True
            if model not in self._first_seen:
                self._first_seen.add(model)
                self._child(self.model_info, model, plan.version).set(1)
                self._child(self.first_request, model, plan.version).set(seconds)
        if rec.payload_in >= 0:
            if plan.payload_in is None:
                plan.payload_in = self._series(self.payload, model, "request")
            plan.payload_in.add(rec.payload_in, ex)
        if rec.payload_out >= 0:
            if plan.payload_out is None:
                plan.payload_out = self._series(self.payload, model, "response")
            plan.payload_out.add(rec.payload_out, ex)
        if rec.tokens >= 0:
            if plan.tokens is None:
                plan.tokens = self._series(self.tokens, model)
            plan.tokens.add(rec.tokens, ex)
        if rec.queue_wait_s >= 0:
            if plan.queue_wait is None:
                plan.queue_wait = self._series(self.queue_wait, model)
            plan.queue_wait.add(rec.queue_wait_s, ex)
        self._records.add(None)

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

    def observe_stage(
        self, stage: StageRecord, model: str, cpu: float | None = None, plan: RequestPlan | None = None
    ) -> None:
        """``cpu``: ``stage.cpu_seconds()``, computed once by the worker for the metric and the
        span. ``plan``: the request's, when the stage is labelled with the request's model."""
        series = plan.stages.get(stage.name) if plan is not None else None
        if series is None:
            name = self.limiter.bound("stage", stage.name)
            series = StageSeries(self._series(self.stage_duration, model, name), model, name)
            if plan is not None and name != OVERFLOW_LABEL_VALUE:
                plan.stages[stage.name] = series
        ex = (stage.trace_id, stage.span_id) if self.exemplars and stage.sampled else None
        series.duration.add((stage.end_ns - stage.start_ns) / 1e9, ex)
        if cpu is not None:
            if series.cpu is None:
                series.cpu = self._series(self.stage_cpu, model, series.name)
            series.cpu.add(cpu, None)  # the wall time's exemplar will do
        if stage.error is not None:
            exc_type = self.limiter.bound("exception_type", type(stage.error).__qualname__)
            self._child(self.errors, model, series.name, exc_type).inc()
        if stage.batch_size > 0:
            self._series(self.batch_size, model).add(stage.batch_size, ex)
        if stage.queue_wait_s >= 0:
            self._series(self.queue_wait, model).add(stage.queue_wait_s, ex)

    def observe_outside_stages(self, rec: RequestRecord, plan: RequestPlan, seconds: float) -> None:
        if plan.outside is None:
            plan.outside = self._series(self.outside_stages, plan.model)
        plan.outside.add(seconds, (rec.trace_id, rec.span_id) if self.exemplars and rec.sampled else None)

    def record_cold_start(self, model: str, seconds: dict[str, float]) -> None:
        """The last cold start of ``model`` (bounded label), by phase."""
        for phase, value in seconds.items():
            self.cold_start.labels(model, phase).set(value)

    def record_model_load(self, model: str, version: str | None, seconds: float) -> None:
        name, ver = self.model_labels(model, version)
        self.model_load.labels(name, ver).set(seconds)
        self.model_info.labels(name, ver).set(1)
