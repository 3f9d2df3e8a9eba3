"""Dynamic batching: queue wait per request, batch size per batch, one model stage per request."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from . import _errors, _runtime
from ._records import RequestRecord, StageRecord, current_request, now_ns
from .conventions import ATTR, SPAN
from .hooks import call_hooks

__all__ = ["Batch", "batch", "record_queue_wait"]


def record_queue_wait(seconds: float, request: RequestRecord | None = None) -> None:
    """Record how long a request waited in the server's queue (default: the current request)."""
    rec = request if request is not None else current_request.get()
    if rec is not None and seconds >= 0:
        rec.queue_wait_s = float(seconds)


class Batch:
    """``with infersight.batch(handles, model="m"):`` around one batched model call.

    ``handles`` are ``infersight.current_request_handle()`` values captured when each request
    was queued. Each request gets its own model-stage span (same timing, ``batch.size``), its
    queue wait (enqueue to batch start, unless recorded already), and one batch-size observation.
    """

    def __init__(
        self,
        requests: Sequence[RequestRecord | None],
        model: str | None = None,
        stage: str = SPAN.MODEL,
        enqueued_ns: Sequence[int] | None = None,
    ) -> None:
        self._requests = [r for r in requests if r is not None]
        self._size = len(requests)
        self._model = model
        self._stage = stage
        self._enqueued = enqueued_ns
        self._records: list[StageRecord] = []

    def __enter__(self) -> Batch:
        rt = _runtime.get_runtime()
        if rt is None:
            return self
        try:
            start = now_ns()
            for i, rec in enumerate(self._requests):
                st = StageRecord(self._stage, self._model, rec, rec.span_id, rec.trace_id, rec.sampled)
                st.start_ns = start
                # One batch-size observation per batch, not per request.
                st.batch_size = self._size if i == 0 else 0
                st.set_attr(ATTR.BATCH_SIZE, self._size)
                if self._model:
                    rec.set_model(self._model)
                if rec.queue_wait_s < 0:
                    since = self._enqueued[i] if self._enqueued else rec.start_ns
                    rec.queue_wait_s = max(0.0, (start - since) / 1e9)
                    rec.batch_size = self._size
                self._records.append(st)
            if self._records and rt.hooks:
                call_hooks(rt.hooks, "on_stage_start", self._records[0])
        except Exception as exc:
            _errors.report("batch", exc)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        rt = _runtime.get_runtime()
        if rt is None or not self._records:
            return
        try:
            end = now_ns()
            first = self._records[0]
            first.end_ns = end
            if rt.hooks:
                call_hooks(rt.hooks, "on_stage_end", first)
            for st in self._records:
                st.end_ns = end
                st.error = ev
                if st is not first and first.extras:
                    st.extras = dict(first.extras)
                if st.request is not None and not st.request.end_ns:
                    st.request.stages.append(st)
                else:
                    rt.worker.submit(st)
        except Exception as exc:
            _errors.report("batch", exc)


def batch(requests: Sequence[RequestRecord | None], model: str | None = None, stage: str = SPAN.MODEL) -> Batch:
    return Batch(requests, model, stage)
