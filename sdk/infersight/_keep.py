"""Tail keep: once a request has ended, decide whether its spans are exported.

Spans are built off the request path after the request ends, so the SDK already knows what a
collector's tail sampler would wait for: the outcome and the duration. Errors and slow requests
(over ``traces_keep_slower_than_s`` or the model's P99 objective) are always kept; the rest at
``traces_keep_ratio``, decided on the trace id as OTel's TraceIdRatioBased sampler does, so services
with the same ratio keep the same traces. Metrics still count every request; exemplars are only
attached for kept traces, so every exemplar links to a trace that was exported.

A kept request span carries ``infersight.trace.kept`` (why), so the shipped collector config
keeps those traces whole instead of sampling them a second time.
"""

from __future__ import annotations

from ._records import RequestRecord, StageRecord
from .config import Config
from .conventions import ATTR

__all__ = ["TailKeep"]

_TRACE_ID_LOW = (1 << 64) - 1


class TailKeep:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.bound = round(config.traces_keep_ratio * (1 << 64))
        self.slower_than_ns = config.traces_keep_slower_than_s * 1e9

    def set_scale(self, scale: float) -> None:
        """Keep ``scale`` times the configured share of fast, successful requests (the overhead
        budget's lever, ``_overhead``); errors and slow requests are kept whatever it is."""
        self.bound = round(min(1.0, max(0.0, self.config.traces_keep_ratio * scale)) * (1 << 64))

    def _by_ratio(self, trace_id: int) -> bool:
        return trace_id & _TRACE_ID_LOW < self.bound

    def _slow(self, duration_ns: int, model: str | None) -> bool:
        if duration_ns >= self.slower_than_ns:
            return True
        configured = self.config.model(model) if model else None
        slo = configured.slo_p99_seconds if configured else None
        return slo is not None and duration_ns > slo * 1e9

    def apply(self, rec: RequestRecord) -> None:
        """Unsample a request and its stages unless it is an error, slow, or in the ratio."""
        if not rec.sampled:
            return
        reason = self._reason(rec)
        if reason is not None:
            rec.set_attr(ATTR.TRACE_KEPT, reason)
            return
        rec.sampled = False
        for stage in rec.stages:
            stage.sampled = False

    def _reason(self, rec: RequestRecord) -> str | None:
        if rec.error is not None or rec.outcome == "error" or (rec.status_code or 0) >= 500:
            return "error"
        if any(stage.error is not None for stage in rec.stages):
            return "error"
        if self._slow(rec.end_ns - rec.start_ns, rec.model):
            return "slow"
        return "ratio" if self._by_ratio(rec.trace_id) else None

    def apply_stage(self, stage: StageRecord) -> None:
        """The same for a stage recorded outside any request."""
        if not stage.sampled or stage.error is not None:
            return
        if self._slow(stage.end_ns - stage.start_ns, stage.model) or self._by_ratio(stage.trace_id):
            return
        stage.sampled = False
