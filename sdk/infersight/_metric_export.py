"""OTLP export of infersight's metrics (``INFERSIGHT_METRICS_EXPORTER=otlp``).

Where the processes of one service can't each be scraped on a port of their own (Ray Serve
replicas, spread over nodes and moved by the autoscaler), each pushes its metrics to the
collector, whose ``prometheus`` exporter serves them all, one series per process
(``instance`` = ``service.instance.id``), under the names a scrape of ``/metrics`` gives.

The metrics stay prometheus_client's. A thread reads the registry every
``OTEL_METRIC_EXPORT_INTERVAL``, as a scrape would, turns each family into the OTel SDK's metric
data (cumulative sums, histograms with their bucket bounds, exemplars with their trace and span
ids) and hands it to the stock OTLP metric exporter, which honours the
``OTEL_EXPORTER_OTLP_[METRICS_]*`` variables. The request path is untouched. The values are
cumulative, so the pending snapshot is the whole queue (one, bounded): a failed export loses
resolution, not counts, the next one carries them. Failures are counted in
``infersight_sdk_errors_total{component="metric_export"}`` and logged once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.samples import Sample

from . import _errors
from ._version import __version__
from .conventions import SPAN

__all__ = ["MetricPusher", "make_exporter", "to_metrics_data"]

COMPONENT = "metric_export"
_CUMULATIVE = AggregationTemporality.CUMULATIVE
_SCOPE = InstrumentationScope(SPAN.INSTRUMENTATION_SCOPE, __version__)
_EXEMPLAR_IDS = ("trace_id", "span_id")


def _exemplars(sample: Sample, now_ns: int) -> list[Exemplar]:
    ex = sample.exemplar
    if ex is None:
        return []
    labels = dict(ex.labels)
    try:
        trace_id = int(labels.pop("trace_id"), 16)
        span_id = int(labels.pop("span_id"), 16)
    except (KeyError, ValueError):  # not a trace link: the OTLP exemplar carries its labels only
        trace_id = span_id = None  # type: ignore[assignment]
        labels = dict(ex.labels)
    stamp = ex.timestamp
    at = int(float(stamp) * 1e9) if stamp is not None else now_ns  # float() also takes a Timestamp
    return [Exemplar(labels, float(ex.value), at, span_id, trace_id)]


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _created_ns(samples: Iterable[Sample], default_ns: int) -> dict[tuple[tuple[str, str], ...], int]:
    return {_key(s.labels): int(s.value * 1e9) for s in samples if s.name.endswith("_created")} or {(): default_ns}


def _counter(family: Family, start_ns: int, now_ns: int) -> Metric:
    created = _created_ns(family.samples, start_ns)
    points = [
        NumberDataPoint(s.labels, created.get(_key(s.labels), start_ns), now_ns, float(s.value), _exemplars(s, now_ns))
        for s in family.samples
        if s.name == family.name + "_total"
    ]
    return Metric(family.name, family.documentation, "", Sum(points, _CUMULATIVE, True))


def _gauge(name: str, family: Family, now_ns: int, suffix: str = "") -> Metric:
    points = [
        NumberDataPoint(s.labels, 0, now_ns, float(s.value), _exemplars(s, now_ns))
        for s in family.samples
        if s.name == name + suffix
    ]
    return Metric(name + suffix, family.documentation, "", Gauge(points))


def _histogram(family: Family, start_ns: int, now_ns: int) -> Metric:
    created = _created_ns(family.samples, start_ns)
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        one = series.setdefault(_key(labels), {"labels": labels, "buckets": [], "count": 0.0, "sum": 0.0})
        if s.name == family.name + "_bucket":
            one["buckets"].append((float(s.labels["le"]), s.value, s))
        elif s.name == family.name + "_count":
            one["count"] = s.value
        elif s.name == family.name + "_sum":
            one["sum"] = s.value
    points = []
    for key, one in series.items():
        buckets = sorted(one["buckets"], key=lambda b: b[0])
        bounds = [le for le, _, _ in buckets if le != float("inf")]
        counts, exemplars, below = [], [], 0.0
        for _, cumulative, sample in buckets:  # Prometheus' buckets are cumulative, OTLP's are not
            counts.append(round(cumulative - below))
            below = cumulative
            exemplars += _exemplars(sample, now_ns)
        if len(counts) == len(bounds):  # no +Inf bucket: the count holds what is above the last bound
            counts.append(round(one["count"] - below))
        points.append(
            HistogramDataPoint(
                one["labels"],
                created.get(key, start_ns),
                now_ns,
                round(one["count"]),
                float(one["sum"]),
                counts,
                bounds,
                None,  # type: ignore[arg-type]  # min and max: unknown to Prometheus, left unset
                None,  # type: ignore[arg-type]
                exemplars,
            )
        )
    return Metric(family.name, family.documentation, "", Histogram(points, _CUMULATIVE))


def to_metrics_data(families: Iterable[Family], resource: Resource, start_ns: int, now_ns: int) -> MetricsData:
    """The OTel SDK's data for prometheus_client metric families. Names, labels and values are
    as a scrape shows them: the collector's Prometheus exporter adds ``_total`` to counters and
    ``_bucket``/``_sum``/``_count`` to histograms, as prometheus_client does. Summaries and
    state sets (none of infersight's) are left out."""
    metrics: list[Metric] = []
    for family in families:
        if family.type == "counter":
            metrics.append(_counter(family, start_ns, now_ns))
        elif family.type == "histogram":
            metrics.append(_histogram(family, start_ns, now_ns))
        elif family.type in ("gauge", "unknown"):
            metrics.append(_gauge(family.name, family, now_ns))
        elif family.type == "info":
            metrics.append(_gauge(family.name, family, now_ns, "_info"))
    metrics = [m for m in metrics if m.data.data_points]
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(_SCOPE, metrics, "")], "")])


def make_exporter(protocol: str, timeout_s: float) -> MetricExporter:
    """The stock OTLP metric exporter; it reads ``OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT``,
    headers, compression and TLS files itself (checked at start-up by ``_otlp_settings``)."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HTTPMetricExporter

    return HTTPMetricExporter(timeout=timeout_s)


class MetricPusher:
    """Pushes ``collect()`` every ``interval_s`` on its own thread, and once more on ``stop``.

    ``drain`` runs first, as before a scrape, so that every request that finished before the
    push is in it."""

    def __init__(
        self,
        collect: Callable[[], Iterable[Family]],
        new_exporter: Callable[[], MetricExporter],
        resource: Resource,
        interval_s: float,
        drain: Callable[[], Any] | None = None,
    ) -> None:
        self.collect = collect
        self.new_exporter = new_exporter
        self.exporter = new_exporter()
        self.resource = resource
        self.interval_s = interval_s
        self.drain = drain
        self.start_ns = time.time_ns()
        self.exported = 0  # pushes the collector accepted
        self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one push at a time: the loop's and stop's final one
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="infersight-metric-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.push()

    def push(self, timeout_s: float | None = None) -> bool:
        """One export of the registry as it is now; False (counted, logged once) when it failed."""
        with self._lock:
            try:
                if self.drain is not None:
                    self.drain()
                data = to_metrics_data(self.collect(), self.resource, self.start_ns, time.time_ns())
                kwargs = {} if timeout_s is None else {"timeout_millis": max(1.0, timeout_s * 1000)}
                ok = self.exporter.export(data, **kwargs) is MetricExportResult.SUCCESS
            except Exception as exc:
                self.failed += 1
                _errors.report(COMPONENT, exc)
                return False
            if ok:
                self.exported += 1
            else:
                self.failed += 1
                _errors.report(COMPONENT, RuntimeError("the OTLP metric exporter could not deliver the metrics"))
            return ok

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop the thread and push the last values (the requests since the last push)."""
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        # On a thread of its own, joined until the deadline: the gRPC exporter keeps to its own
        # timeout, not the one it is given, and shutdown must not wait out its retries.
        final = threading.Thread(target=self._last_push, args=(deadline,), name="infersight-metric-export", daemon=True)
        final.start()
        final.join(max(0.0, deadline - time.monotonic()))

    def _last_push(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left > 0:
            self.push(left)
        try:
            self.exporter.shutdown(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)
        except Exception as exc:
            _errors.report(COMPONENT, exc)

    def after_fork_in_child(self, resource: Resource) -> None:
        """The child is another process: its own series (``resource``), its own thread and
        exporter (a gRPC channel does not survive a fork)."""
        self.resource = resource
        self.exporter = self.new_exporter()
        self.start_ns = time.time_ns()
        self._lock = threading.Lock()
        if self._thread is not None and not self._stop.is_set():
            self.start()
