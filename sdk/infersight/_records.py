"""What the request path records: plain slotted objects, turned into spans and metrics later.

The request path only reads the clock, draws ids and appends to these records. The
background worker (``_pipeline``) materialises OTel spans and Prometheus observations.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from random import getrandbits
from typing import Any

__all__ = ["RequestRecord", "StageRecord", "current_request", "current_stage", "now_ns", "wall_ns"]

now_ns = time.perf_counter_ns

# perf_counter is monotonic; spans need wall-clock epoch times. The worker refreshes the offset.
_epoch_offset_ns = time.time_ns() - time.perf_counter_ns()


def refresh_epoch_offset() -> None:
    global _epoch_offset_ns
    _epoch_offset_ns = time.time_ns() - time.perf_counter_ns()


def wall_ns(perf_ns: int) -> int:
    return perf_ns + _epoch_offset_ns


def new_span_id() -> int:
    return getrandbits(64) or 1


def new_trace_id() -> int:
    return getrandbits(128) or 1


class StageRecord:
    __slots__ = (
        "attrs",
        "base_attrs",
        "batch_size",
        "end_ns",
        "error",
        "extras",
        "model",
        "name",
        "parent_span_id",
        "request",
        "sampled",
        "span_id",
        "start_ns",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        model: str | None,
        request: RequestRecord | None,
        parent_span_id: int,
        trace_id: int,
        sampled: bool,
    ) -> None:
        self.name = name
        self.model = model
        self.request = request
        self.parent_span_id = parent_span_id
        self.trace_id = trace_id
        self.sampled = sampled
        self.span_id = new_span_id()
        self.start_ns = now_ns()
        self.end_ns = 0
        self.error: BaseException | None = None
        self.attrs: dict[str, Any] | None = None
        self.base_attrs: dict[str, Any] | None = None  # shared by many stages: never written to
        # Filled by stage hooks (GPU counters, CUDA events); read by the worker.
        self.extras: dict[str, Any] | None = None
        self.batch_size = 0

    def set_attr(self, key: str, value: Any) -> None:
        if self.attrs is None:
            self.attrs = {}
        self.attrs[key] = value


class RequestRecord:
    __slots__ = (
        "attrs",
        "batch_size",
        "deferred",
        "emit_span",
        "end_ns",
        "endpoint",
        "error",
        "first_byte_ns",
        "kind",
        "live_span",
        "model",
        "name",
        "outcome",
        "parent_remote",
        "parent_span_id",
        "payload_in",
        "payload_out",
        "protocol",
        "queue_wait_s",
        "sampled",
        "server_s",
        "span_id",
        "stages",
        "start_ns",
        "status_code",
        "target",
        "tokens",
        "trace_id",
        "trace_state",
        "version",
    )

    def __init__(self, name: str, kind: int, endpoint: str, trace_id: int, parent_span_id: int, sampled: bool) -> None:
        self.name = name
        self.kind = kind  # opentelemetry.trace.SpanKind value
        self.endpoint = endpoint
        self.trace_id = trace_id
        self.parent_span_id = parent_span_id
        self.parent_remote = False
        self.sampled = sampled
        self.trace_state: Any = None
        self.live_span: Any = None  # the OTel span current while it is served (see _runtime)
        self.span_id = new_span_id()
        self.emit_span = True  # False when an existing OTel span already covers the request
        self.deferred = False  # another instrumentation's server span is yet to start (see _runtime)
        self.start_ns = now_ns()
        self.end_ns = 0
        self.first_byte_ns = 0  # streaming responses: when the first body chunk went out
        self.model: str | None = None
        self.version: str | None = None
        self.stages: list[StageRecord] = []
        self.error: BaseException | None = None
        self.outcome: str | None = None
        self.status_code: int | None = None
        self.payload_in = -1
        self.payload_out = -1
        self.tokens = -1
        self.queue_wait_s = -1.0
        self.batch_size = 0
        self.protocol = ""
        self.target = ""  # outgoing calls (kind CLIENT): the server's host:port
        self.server_s = -1.0  # outgoing calls: the server's total, from its Server-Timing
        self.attrs: dict[str, Any] | None = None

    def set_attr(self, key: str, value: Any) -> None:
        if self.attrs is None:
            self.attrs = {}
        self.attrs[key] = value

    def set_model(self, model: str | None, version: str | None = None) -> None:
        """The first model named in a request labels it; later ones don't overwrite it."""
        if model and self.model is None:
            self.model = model
        if version and self.version is None:
            self.version = version


current_request: ContextVar[RequestRecord | None] = ContextVar("infersight_request", default=None)
current_stage: ContextVar[StageRecord | None] = ContextVar("infersight_stage", default=None)
