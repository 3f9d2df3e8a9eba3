"""Synthetic infersight traces sent as raw OTLP/gRPC requests: a request span and its three
stage spans, of a chosen kind (what the gateways' tail sampling must decide)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from infersight.conventions import ATTR, SPAN

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
STAGES = (SPAN.PREPROCESS, SPAN.MODEL, SPAN.POSTPROCESS)
SPANS_PER_TRACE = 1 + len(STAGES)
KINDS = ("error", "slow", "kept", "normal")  # the tail policies keep all but "normal" (10% of it)


@dataclass
class Trace:
    kind: str
    trace_id: bytes = field(default_factory=lambda: os.urandom(16))
    root_id: bytes = field(default_factory=lambda: os.urandom(8))
    stage_ids: tuple[bytes, ...] = field(default_factory=lambda: tuple(os.urandom(8) for _ in STAGES))

    @property
    def hex(self) -> str:
        return self.trace_id.hex()

    @property
    def span_ids(self) -> set[bytes]:
        return {self.root_id, *self.stage_ids}


def _kv(key: str, value: str) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    return KeyValue(key=key, value=AnyValue(string_value=value))


def request(traces: list[Trace], parts: str = "all", service: str = "scale-test") -> bytes:
    """A serialized ExportTraceServiceRequest with the ``parts`` ("root", "stages" or "all") of ``traces``.

    "error" fails the model stage (not the root), "slow" lasts 600 ms (the latency policy keeps
    > 500 ms), "kept" carries the SDK's keep mark on its root."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(_kv("service.name", service))
    scope = rs.scope_spans.add()
    scope.scope.name = SPAN.INSTRUMENTATION_SCOPE
    now = time.time_ns()
    for t in traces:
        duration = 600_000_000 if t.kind == "slow" else 3_000_000
        start = now - duration
        model = [_kv(ATTR.MODEL_NAME, "scale-model"), _kv(ATTR.MODEL_VERSION, "1")]
        if parts in ("root", "all"):
            root = scope.spans.add(
                trace_id=t.trace_id,
                span_id=t.root_id,
                name=SPAN.REQUEST,
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=now,
            )
            root.attributes.extend(model)
            if t.kind == "kept":
                root.attributes.append(_kv(ATTR.TRACE_KEPT, "ratio"))
        if parts in ("stages", "all"):
            step = duration // (len(STAGES) + 1)
            for i, (stage, span_id) in enumerate(zip(STAGES, t.stage_ids, strict=True)):
                child = scope.spans.add(
                    trace_id=t.trace_id,
                    span_id=span_id,
                    parent_span_id=t.root_id,
                    name=stage,
                    kind=Span.SPAN_KIND_INTERNAL,
                    start_time_unix_nano=start + i * step,
                    end_time_unix_nano=start + (i + 1) * step,
                )
                child.attributes.extend([*model, _kv(ATTR.STAGE, stage)])
                if t.kind == "error" and stage == SPAN.MODEL:
                    child.status.code = Status.STATUS_CODE_ERROR
    return bytes(req.SerializeToString())


class Sender:
    """OTLP/gRPC Export calls to one endpoint, raw bytes in and out."""

    def __init__(self, endpoint: str) -> None:
        import grpc

        self._channel = grpc.insecure_channel(endpoint)
        self._export = self._channel.unary_unary(EXPORT_METHOD)

    def send(self, payload: bytes, timeout: float = 10.0) -> None:
        self._export(payload, timeout=timeout)

    def close(self) -> None:
        self._channel.close()
