"""What the client instrumentations (requests, httpx, gRPC channels) share: one outgoing call
as a record of kind CLIENT, its ``traceparent`` injected, and the server's Server-Timing read back.

When an OpenTelemetry client instrumentation also covers the call, there is one CLIENT span,
theirs: either it is current when infersight's hook runs (theirs is outside ours), or it
replaced the ``traceparent`` infersight injected (theirs is inside ours). infersight then
records only its metrics, with that span as the exemplar.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from .. import _errors, _runtime
from .. import _server_timing as server_timing
from .._records import RequestRecord
from ..conventions import ATTR

__all__ = ["Call", "http_attrs", "target_of"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRACEPARENT = "traceparent"


def http_attrs(method: str, target: str, code: int | None) -> dict[str, Any]:
    """An HTTP client span's semantic-convention attributes (``target`` is ``host:port``)."""
    host, _, port = target.rpartition(":")
    attrs: dict[str, Any] = {ATTR.HTTP_REQUEST_METHOD: method, ATTR.SERVER_ADDRESS: host}
    if port.isdigit():
        attrs[ATTR.SERVER_PORT] = int(port)
    if code is not None:
        attrs[ATTR.HTTP_RESPONSE_STATUS_CODE] = code
    return attrs


def target_of(url: str) -> tuple[str, str]:
    """``(host:port, path)`` of a URL, the port spelled out even when it is the scheme's default."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    return f"{parts.hostname or ''}:{port}", parts.path or "/"


def _span_ids(traceparent: Any) -> tuple[int, int, bool] | None:
    if not isinstance(traceparent, str):
        return None
    fields = traceparent.strip().split("-")
    if len(fields) < 4 or len(fields[1]) != 32 or len(fields[2]) != 16:
        return None
    try:
        return int(fields[1], 16), int(fields[2], 16), bool(int(fields[3][:2], 16) & 1)
    except ValueError:
        return None


class Call:
    """One outgoing call: ``inject`` before sending, ``finish`` once its answer (or error) is in.
    Never raises; with infersight off, it does nothing."""

    __slots__ = ("_injected", "rec")

    def __init__(self, name: str, target: str, endpoint: str) -> None:
        # Off inside OTel's suppression (an exporter sending spans over HTTP): exporting would
        # otherwise make a call to record, whose export makes another.
        self.rec: RequestRecord | None = (
            _runtime.start_client(name, target, endpoint) if is_instrumentation_enabled() else None
        )
        self._injected: str | None = None

    def inject(self, carrier: MutableMapping[str, Any]) -> None:
        rec = self.rec
        if rec is None or not rec.emit_span:
            return  # off, or the other instrumentation's span (current) already injected its own
        try:
            flags = TraceFlags(TraceFlags.SAMPLED if rec.sampled else TraceFlags.DEFAULT)
            ctx = SpanContext(rec.trace_id, rec.span_id, False, flags, rec.trace_state)
            propagate.inject(carrier, context=set_span_in_context(NonRecordingSpan(ctx)))
            self._injected = carrier.get(_TRACEPARENT)
        except Exception as exc:
            _errors.report("client", exc)

    def finish(
        self,
        status_code: int | None,
        failed: bool,
        timing: str | None,
        sent: MutableMapping[str, Any] | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        """``timing``: the response's Server-Timing; ``sent``: the headers as they went out, where
        an instrumentation inside ours may have put its own ``traceparent``."""
        rec = self.rec
        if rec is None:
            return
        try:
            if sent is not None and self._injected is not None:
                went = sent.get(_TRACEPARENT)
                if went != self._injected:
                    ids = _span_ids(went)
                    if ids is not None:  # their span is the call's: ours would be a second one
                        rec.trace_id, rec.span_id, rec.sampled = ids
                        rec.emit_span = False
            if attrs:
                rec.attrs = attrs
            _runtime.finish_client(rec, status_code, failed, server_timing.total_seconds(timing))
        except Exception as exc:
            _errors.report("client", exc)
