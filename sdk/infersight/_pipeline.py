"""The background worker: drains finished records into spans and metrics, off the request path."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from opentelemetry.trace import SpanKind

from . import _coldstart, _errors
from ._keep import TailKeep
from ._overhead import OverheadMeter
from ._records import RequestRecord, StageRecord, outside_stages_ns, refresh_epoch_offset
from ._spans import PlainStage, SpanEmitter, stage_attributes
from .conventions import ATTR, UNKNOWN
from .hooks import StageHook, call_hooks
from .metrics import InferenceMetrics, RequestPlan

__all__ = ["Worker"]

_CLIENT = SpanKind.CLIENT.value

# Longest the worker keeps the GIL before handing it to request threads. Measured with
# benchmarks/request_path.py (Flask, 2-core box, 3 paired runs): added p99 0.5-1.1 ms instead of
# 3.5-4.6 ms without the hand-off, for ~7% more CPU per request (GIL hand-offs). Shorter holds
# starve the worker behind a CPU-bound request loop: it gets the GIL back only after the 5 ms
# switch interval, so with 0.2 ms holds it drained ~10% of the records it was given.
_HOLD_S = 0.001
_FLUSH_EVERY = 512  # records between metric writes when the queue does not empty
# The worker's own drains write the summed observations at most this often: writing a touched
# series (its locks, an exemplar) costs more than the observations of a few requests, and a
# drain every 0.1 s at low load would pay it for each one. Scrapes, metric pushes and explicit
# drains (tests, shutdown) write them at once.
_METRICS_EVERY_S = 1.0
_clock = time.perf_counter  # a module alias, so tests can drive the hand-off with a fake clock
_thread_time = time.thread_time_ns


class Worker:
    def __init__(
        self,
        metrics: InferenceMetrics | None,
        emitter: SpanEmitter | None,
        hooks: list[StageHook],
        queue_size: int,
        interval_s: float,
        keep: TailKeep | None = None,
        model_for_endpoint: Callable[[str], str | None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.model_for_endpoint = model_for_endpoint
        self.emitter = emitter
        self.keep = keep
        self.hooks = hooks
        self._max = queue_size
        self._interval = interval_s
        self._queue: deque[RequestRecord | StageRecord] = deque()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._metrics_at = 0.0  # _clock() of the last metrics write of a drain
        self.overhead: OverheadMeter | None = None  # set by the runtime: the CPU of each drain

    # Request path: one length check and one append.
    def submit(self, rec: RequestRecord | StageRecord) -> None:
        if len(self._queue) >= self._max:
            if self.metrics is not None:
                n = 1 + len(rec.stages) if isinstance(rec, RequestRecord) else 1
                self.metrics.spans_dropped.labels("queue_full").inc(n)
            return
        self._queue.append(rec)

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="infersight-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_clock = time.monotonic()
        while not self._stopping:
            self._wake.wait(self._interval)
            self._wake.clear()
            self.drain(periodic=True)
            if self.overhead is not None:
                try:
                    self.overhead.maybe_tick()
                except Exception as exc:
                    _errors.report("overhead", exc)
            if time.monotonic() - last_clock > 60:
                refresh_epoch_offset()
                last_clock = time.monotonic()

    def drain(self, periodic: bool = False) -> int:
        """Process every queued record; write the metrics (at most once a second when ``periodic``)."""
        processed = 0
        held_since = _clock()
        cpu_start = _thread_time()
        with self._drain_lock:
            while True:
                try:
                    rec = self._queue.popleft()
                except IndexError:
                    if not periodic or held_since - self._metrics_at >= _METRICS_EVERY_S:
                        self._metrics_at = held_since
                        self._flush_metrics()
                    if self.overhead is not None:
                        self.overhead.add(_thread_time() - cpu_start)
                    return processed
                try:
                    if isinstance(rec, RequestRecord):
                        self._process_request(rec)
                    else:
                        if self.keep is not None:
                            self.keep.apply_stage(rec)
                        self._process_stage(rec, None)
                except Exception as exc:
                    _errors.report("worker", exc)
                processed += 1
                if processed % _FLUSH_EVERY == 0:
                    self._flush_metrics()  # a drain that never empties the queue still shows up
                now = _clock()
                if now - held_since > _HOLD_S:
                    # Hand the GIL to request threads now: otherwise one waits out the whole
                    # switch interval (5 ms) while this thread drains a backlog.
                    time.sleep(0)
                    held_since = _clock()

    def _flush_metrics(self) -> None:
        if self.metrics is not None:
            try:
                self.metrics.flush()
            except Exception as exc:
                _errors.report("worker", exc)

    def stop(self, timeout_s: float) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        self.drain()

    def after_fork_in_child(self) -> None:
        # The parent owns what was queued before the fork; the child starts empty.
        self._queue = deque()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        if self.metrics is not None:  # observations summed, not yet written: the parent's too
            self.metrics.after_fork_in_child()
        if self.overhead is not None:
            self.overhead.after_fork_in_child()
        self.start()

    def _stage_attrs(
        self, stage: StageRecord, model: str, version: str, cpu: float | None, plain: bool
    ) -> dict[str, Any] | PlainStage:
        if plain and not self.hooks:
            return (model, version, cpu)  # encoded from a template, no dict (see _spans)
        attrs = stage_attributes(stage, model, version, cpu)
        if self.hooks:
            call_hooks(self.hooks, "enrich", stage, attrs)
        return attrs

    def _process_stage(
        self,
        stage: StageRecord,
        rec: RequestRecord | None,
        labels: tuple[str, str] | None = None,
        plain: bool = False,
        plan: RequestPlan | None = None,
    ) -> dict[str, Any] | PlainStage | None:
        """A stage's metrics, and its span attributes (None when its request's spans are not
        exported and no hook enriches them: nothing would read them)."""
        owner = rec or stage.request
        if labels is not None and (not stage.model or stage.model == (owner.model if owner else None)):
            model, version = labels  # the request's, already bounded
        elif self.metrics is not None:
            raw_model = stage.model or (owner.model if owner else None)
            model, version = self.metrics.model_labels(raw_model, owner.version if owner else None)
            plan = None  # the request's plan holds its own model's series
        else:
            model = stage.model or (owner.model if owner else None) or UNKNOWN
            version = (owner.version if owner else None) or UNKNOWN
        cpu = stage.cpu_seconds()
        if self.metrics is not None:
            self.metrics.observe_stage(stage, model, cpu, plan)
        if rec is not None and not self.hooks and (self.emitter is None or not rec.sampled):
            return None  # hooks still get theirs: the GPU hook observes metrics while it enriches
        attrs = self._stage_attrs(stage, model, version, cpu, plain)
        if rec is None and self.emitter is not None:
            self.emitter.emit_stage(stage, attrs)
        return attrs

    def _process_client(self, rec: RequestRecord) -> None:
        """An outgoing call: its own histograms, and its CLIENT span (none when another
        instrumentation's span covers the call: then that one is the exemplar)."""
        network = -1.0
        if rec.server_s >= 0:
            network = max(0.0, (rec.end_ns - rec.start_ns) / 1e9 - rec.server_s)
            rec.set_attr(ATTR.SERVER_TIMING_TOTAL, rec.server_s)
            rec.set_attr(ATTR.CLIENT_NETWORK, network)
        if self.metrics is not None:
            self.metrics.observe_client(rec, network)
        if self.emitter is not None and rec.emit_span:
            self.emitter.emit(rec, UNKNOWN, UNKNOWN, [])

    def _cold_start(self, rec: RequestRecord, model: str) -> None:
        """The first request after a model loaded: its cold start's phases, as gauges and a trace."""
        try:
            phases = _coldstart.tracker.observe(rec, model)
            if phases is None:
                return
            if self.metrics is not None:
                self.metrics.record_cold_start(model, _coldstart.seconds_by_phase(phases))
            if self.emitter is not None:
                _coldstart.emit(self.emitter, phases, model, rec)
        except Exception as exc:
            _errors.report("cold_start", exc)

    def _process_request(self, rec: RequestRecord) -> None:
        if rec.kind == _CLIENT:
            self._process_client(rec)
            return
        if rec.model is None and self.model_for_endpoint is not None and rec.endpoint:
            # Off the request path: a request that named no model gets its endpoint's (INFERSIGHT_MODELS).
            rec.set_model(self.model_for_endpoint(rec.endpoint))
        if self.keep is not None:
            self.keep.apply(rec)  # before the metrics, so exemplars only name exported traces
        plan = None
        if self.metrics is not None:
            plan = self.metrics.plan(rec)
            model, version = plan.model, plan.version
            self.metrics.observe_request(rec, plan)
        else:
            model, version = rec.model or UNKNOWN, rec.version or UNKNOWN
        if _coldstart.tracker.pending:
            self._cold_start(rec, model)
        if rec.stages:  # a request with no stage has nothing to tell apart
            outside = outside_stages_ns(rec) / 1e9
            rec.set_attr(ATTR.OUTSIDE_STAGES_SECONDS, outside)
            if plan is not None:
                self.metrics.observe_outside_stages(rec, plan, outside)  # type: ignore[union-attr]
        emitting = self.emitter is not None and rec.sampled
        plain = emitting and self.emitter.encoding()  # type: ignore[union-attr]
        labels = (model, version)
        stage_attrs: list[Any] = []
        if self.hooks:
            stage_attrs = [self._process_stage(stage, rec, labels, plain, plan) for stage in rec.stages]
        else:
            # The common case in one loop (a call per stage less): stages of the request's model.
            metrics, own_model = self.metrics, rec.model
            for stage in rec.stages:
                if stage.model and stage.model != own_model:
                    stage_attrs.append(self._process_stage(stage, rec, labels, plain, plan))
                    continue
                cpu = stage.cpu_seconds()
                if metrics is not None:
                    metrics.observe_stage(stage, model, cpu, plan)
                if plain:
                    stage_attrs.append((model, version, cpu))  # encoded from a template (see _spans)
                elif emitting:
                    stage_attrs.append(stage_attributes(stage, model, version, cpu))
        if emitting:
            self.emitter.emit(rec, model, version, stage_attrs)  # type: ignore[union-attr]
