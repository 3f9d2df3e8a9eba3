"""Tracer provider set-up from the standard OTEL_* variables, and export accounting."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from .config import Config
from .conventions import ATTR

__all__ = ["CountingExporter", "make_resource", "sends_through_our_encoder", "setup_tracer_provider"]

logger = logging.getLogger("infersight")


def make_resource(config: Config, base: Resource | None = None) -> Resource:
    """The provider's resource plus a per-process ``service.instance.id`` (new after a fork)."""
    own = {ATTR.SERVICE_INSTANCE_ID: f"{uuid.uuid4()}"}
    if base is None:
        if not os.environ.get("OTEL_SERVICE_NAME"):
            own[ATTR.SERVICE_NAME] = config.service
        return Resource.create(own)
    if str(base.attributes.get(ATTR.SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        own[ATTR.SERVICE_NAME] = config.service
    return base.merge(Resource(own))


class CountingExporter(SpanExporter):
    """Counts what an exporter sent and what it failed to send, for the telemetry-health alerts."""

    def __init__(
        self,
        inner: SpanExporter,
        on_result: Callable[[int, bool], Any],
        on_cpu: Callable[[int], Any] | None = None,
    ) -> None:
        self.inner = inner
        self.on_result = on_result
        self.on_cpu = on_cpu  # the export thread's CPU per batch, in ns (infersight's overhead)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        cpu_start = time.thread_time_ns()
        count = len(spans)
        if getattr(self.inner, "accepts_encoded_spans", False):
            from ._otlp import span_count

            count = span_count(spans)  # an item may hold a request's several spans
        try:
            result = self.inner.export(spans)
        except Exception:
            self.on_result(count, False)
            raise
        finally:
            if self.on_cpu is not None:
                self.on_cpu(time.thread_time_ns() - cpu_start)
        self.on_result(count, result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def sends_through_our_encoder(processors: tuple[Any, ...]) -> bool:
    """Whether every processor is a batch processor infersight set up, exporting with its own
    encoder: then they can be handed spans already encoded (``_otlp.EncodedSpan``)."""
    from . import _compat

    for processor in processors:
        exporter = _compat.batch_exporter(processor) if type(processor) is BatchSpanProcessor else None
        if not isinstance(exporter, CountingExporter) or not getattr(exporter.inner, "accepts_encoded_spans", False):
            return False
    return True


def _make_exporter(config: Config, name: str | None = None) -> SpanExporter | None:
    name = name or (config.trace_exporters[0] if config.trace_exporters else "none")
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    # A bounded export: the default 10 s deadline would hold shutdown past k8s grace periods.
    timeout = float(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") or 5
    )
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        from . import _compat

        if config.otlp_encoder == "stock":
            return OTLPSpanExporter(timeout=timeout)
        if not _compat.PROBES["otel.exporter_hooks"]():
            logger.warning(
                "infersight: this opentelemetry-exporter-otlp-proto-grpc has no hook for our encoder; "
                "using its own (INFERSIGHT_OTLP_ENCODER=stock)."
            )
            return OTLPSpanExporter(timeout=timeout)
        from ._otlp import encode_request

        exporter: SpanExporter = _compat.fast_otlp_exporter_class()(encode_request, timeout=timeout)
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter(timeout=timeout)


# Through our encoder an item is one request's spans (4 for three stages). 128 of them make about
# the stock 512 spans per export; and with the collector down, each failed export (up to its 5 s
# timeout) takes 128 items off the queue, not 512, so the queue fills and keeps the latest
# requests for when the collector is back instead of draining them into failed exports.
# OTEL_BSP_MAX_EXPORT_BATCH_SIZE and OTEL_BSP_MAX_QUEUE_SIZE, when set, win.
_ITEMS_PER_BATCH = 128


def _items_per_batch(exporter: SpanExporter) -> int | None:
    if not getattr(exporter, "accepts_encoded_spans", False):
        return None
    if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") or os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE"):
        return None  # the processor's own reading of them (and its check of one against the other)
    return _ITEMS_PER_BATCH


def setup_tracer_provider(
    config: Config, on_export: Callable[[int, bool], Any], on_cpu: Callable[[int], Any] | None = None
) -> tuple[TracerProvider, bool]:
    """Keep an SDK provider the app already set; otherwise build one from OTEL_* variables.

    Returns the provider and whether infersight created (and so owns) it.
    """
    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        return existing, False
    # Our own bounded shutdown runs at exit; the SDK's would wait out the exporter's retries.
    provider = TracerProvider(resource=make_resource(config), shutdown_on_exit=False)
    for name in config.trace_exporters:
        exporter = _make_exporter(config, name)
        if exporter is not None:  # each counted: infersight_spans_exported_total sums the exporters
            counted = CountingExporter(exporter, on_export, on_cpu)
            provider.add_span_processor(BatchSpanProcessor(counted, max_export_batch_size=_items_per_batch(exporter)))
    trace.set_tracer_provider(provider)
    # set_tracer_provider refuses a second time (another library won the race): use theirs.
    current = trace.get_tracer_provider()
    if current is not provider and isinstance(current, TracerProvider):
        return current, False
    return provider, True
