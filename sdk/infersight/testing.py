"""Assert on infersight's telemetry in your own tests: captured spans and metric samples.

from infersight.testing import capture

with capture(models={"m": {"slo_p99_seconds": 0.1}}) as t:
    with infersight.request(model="m"), infersight.model():
        ...
    t.flush()
    assert [s.name for s in t.spans()] == ["model", "inference"]
    assert t.value("infersight_stage_duration_seconds_count", model="m", stage="model") == 1
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from . import _runtime, _startup

__all__ = ["Captured", "capture"]


class Captured:
    def __init__(self, registry: CollectorRegistry, exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
        self.registry = registry
        self.exporter = exporter
        self.provider = provider

    def flush(self) -> None:
        """Process everything the request path recorded so far (normally done in background)."""
        rt = _runtime.get_runtime()
        if rt is not None:
            rt.worker.drain()

    def spans(self, name: str | None = None) -> Sequence[ReadableSpan]:
        self.flush()
        spans = self.exporter.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def value(self, sample: str, **labels: str) -> float | None:
        self.flush()
        return self.registry.get_sample_value(sample, labels)

    def openmetrics(self) -> str:
        self.flush()
        payload: bytes = generate_latest(self.registry)  # type: ignore[no-untyped-call]
        return payload.decode()


@contextmanager
def capture(**settings: Any) -> Iterator[Captured]:
    """Initialise infersight with a fresh registry and in-memory spans; shut it down after."""
    registry = CollectorRegistry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings.setdefault("gpu", "off")
    _startup.init(registry=registry, tracer_provider=provider, **settings)
    try:
        yield Captured(registry, exporter, provider)
    finally:
        _runtime.shutdown()
