"""What the request path records: plain slotted objects, turned into spans and metrics later.

The request path only reads the clock, draws ids and appends to these records. The
background worker (``_pipeline``) materialises OTel spans and Prometheus observations.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from random import getrandbits
from typing import Any

__all__ = [
    "RequestRecord",
    "StageRecord",
    "current_request",
    "current_stage",
    "epoch_offset_ns",
    "now_ns",
    "outside_stages_ns",
    "wall_ns",
]

now_ns = time.perf_counter_ns

# perf_counter is monotonic; spans need wall-clock epoch times. The worker refreshes the offset.
_epoch_offset_ns = time.time_ns() - time.perf_counter_ns()


def refresh_epoch_offset() -> None:
    global _epoch_offset_ns
    _epoch_offset_ns = time.time_ns() - time.perf_counter_ns()


def wall_ns(perf_ns: int) -> int:
    return perf_ns + _epoch_offset_ns


def epoch_offset_ns() -> int:
    """What ``wall_ns`` adds: read once for a request's several spans."""
    return _epoch_offset_ns


def new_span_id() -> int:
    return getrandbits(64) or 1


def new_trace_id() -> int:
    return getrandbits(128) or 1


class StageRecord:
    __slots__ = (
        "attrs",
        "base_attrs",
        "batch_size",
        "cpu_end_ns",
        "cpu_start_ns",
        "cpu_thread",
        "end_ns",
        "error",
        "extras",
        "model",
        "name",
        "origin",
        "otel_token",
        "parent_span_id",
        "queue_wait_s",
        "request",
        "sampled",
        "span_id",
        "stage_token",
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
        self.span_id = getrandbits(64) or 1
        self.start_ns = 0  # set by whoever starts it (start_stage: after its hooks)
        self.end_ns = 0
        self.error: BaseException | None = None
        self.attrs: dict[str, Any] | None = None
        self.base_attrs: dict[str, Any] | None = None  # shared by many stages: never written to
        # Filled by stage hooks (GPU counters, CUDA events); read by the worker.
        self.extras: dict[str, Any] | None = None
        self.batch_size = 0
        # A queue wait that ended as this stage began, when no request record of this process
        # holds it (a LitServe inference worker: the request is served in another process).
        self.queue_wait_s = -1.0
        # Thread CPU time at the boundaries (time.thread_time_ns), when INFERSIGHT_STAGE_CPU_TIME.
        self.cpu_start_ns = -1
        self.cpu_end_ns = -1
        self.cpu_thread = 0  # threading.get_ident() of the start: the end reads the clock only there
        # While it is current (see _runtime.enter_stage): the context variables' tokens to undo.
        self.stage_token: Any = None
        self.otel_token: Any = None
        # The stage (a Stage already in use) that this record was made for, entered again.
        self.origin: StageRecord | None = None

    def set_attr(self, key: str, value: Any) -> None:
        if self.attrs is None:
            self.attrs = {}
        self.attrs[key] = value

    def cpu_seconds(self) -> float | None:
        """CPU time of the stage's thread during the stage; None when not measured, when it ended
        on another thread than it started on, or when the reads cannot be the stage's own (more
        CPU than wall time, or less than none)."""
        if self.cpu_start_ns < 0 or self.cpu_end_ns < 0:
            return None
        cpu = self.cpu_end_ns - self.cpu_start_ns
        # thread_time ticks coarser than perf_counter on some systems: 1 ms of slack.
        if cpu < 0 or cpu > self.end_ns - self.start_ns + 1_000_000:
            return None
        return min(cpu, self.end_ns - self.start_ns) / 1e9


def outside_stages_ns(rec: RequestRecord) -> int:
    """The part of a request no stage of it covers (stages may nest or overlap), in ns."""
    start, end = rec.start_ns, rec.end_ns
    covered, reach = 0, start
    for stage in rec.stages:  # most often one after another, each inside the request: no sort
        if stage.start_ns < reach or stage.end_ns > end or stage.end_ns < stage.start_ns:
            break
        covered += stage.end_ns - stage.start_ns
        reach = stage.end_ns
    else:
        return max(0, end - start - covered)
    covered, reach = 0, start
    for st_start, st_end in sorted((s.start_ns, s.end_ns) for s in rec.stages):
        st_start, st_end = max(st_start, reach), min(st_end, end)
        if st_end > st_start:
            covered += st_end - st_start
            reach = st_end
    return max(0, end - start - covered)


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
        "http",
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
        self.span_id = getrandbits(64) or 1
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
        # An HTTP server's (method, path, scheme, client address, route template or None): its
        # span attributes, made by the worker, and only for a span that is kept.
        self.http: tuple[str, str, str, str | None, str | None] | None = None

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
