"""GPU counters on every ``model`` stage span: a StageHook.

At the stage's boundaries (request path) it only reads what is cheap: the current CUDA device
and, when torch has initialised CUDA, a CUDA event per boundary. The one NVML call allowed
there is the optional GPM snapshot (``gpu_span_snapshots``). Everything else happens in
``enrich`` on the background worker: the GPM delta over the span (spans of 100 ms or more)
or the sampler window around it, the CUDA busy time, and the stage's GPU time added to
``infersight_model_gpu_seconds_total{model}``: measured with CUDA events, split evenly across
the requests of a batch, or else estimated as wall time x the GPU's utilization around it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .._observations import exemplar_labels
from ..conventions import (
    ATTR,
    GPU_SECONDS_BATCH_SHARE,
    GPU_SECONDS_ESTIMATED,
    GPU_SECONDS_MEASURED,
    METRIC,
    SPAN,
    UNKNOWN,
)
from .gpm import GPM_METRICS, MIN_INTERVAL_NS, SamplePool, metrics_between
from .sampler import Sampler

__all__ = ["SpanCounters"]

_KEY = "gpu"  # in StageRecord.extras
_CUDA_WAIT_S = 1.0  # the worker waits at most this long for a stage's last kernel
_SNAPSHOT_FAILURES_BEFORE_OFF = 3
_PREFILL = 8  # GPM samples allocated at setup: 4 concurrent model stages without allocating
_RATIO_KEYS = frozenset(m.key for m in GPM_METRICS if m.ratio)


class _Snapshot:
    """Two GPM samples from the pool; back in the pool when released or dropped with the record."""

    __slots__ = ("end", "pool", "start")

    def __init__(self, pool: SamplePool) -> None:
        self.pool = pool
        self.start: Any = None
        self.end: Any = None

    def release(self) -> None:
        for name in ("start", "end"):
            sample = getattr(self, name)
            if sample is not None:
                setattr(self, name, None)
                self.pool.release(sample)

    def __del__(self) -> None:
        # A record dropped before the worker saw it (queue full) must not leak its samples.
        try:
            self.release()
        except Exception:
            pass


class _StageGpu:
    """Shared by every request of a batch (``Batch`` copies the extras): the first ``enrich``
    reads the events and keeps the result for the others."""

    __slots__ = ("busy", "end_event", "gpu", "snapshot", "start_event")

    def __init__(self, gpu: int | None, start_event: Any, snapshot: _Snapshot | None) -> None:
        self.gpu = gpu
        self.start_event = start_event
        self.end_event: Any = None
        self.snapshot = snapshot
        self.busy: float | None = None


class SpanCounters:
    """StageHook for the ``model`` stage. ``rt`` is the Runtime (for config and metrics)."""

    def __init__(self, sampler: Sampler, rt: Any) -> None:
        cfg = rt.config
        self.sampler = sampler
        self.snapshots = bool(cfg.gpu_span_snapshots)
        self.cuda_events = bool(cfg.cuda_events)
        self.exemplars = bool(rt.metrics is not None and rt.metrics.exemplars)
        self._snapshot_failures = 0
        self.busy_hist: Any = None
        self.sm_hist: Any = None
        self.gpu_seconds: Any = None
        if rt.metrics is not None:
            self.busy_hist = rt.make_metric(METRIC.STAGE_GPU_BUSY)
            self.sm_hist = rt.make_metric(METRIC.STAGE_GPU_SM_ACTIVE)
            self.gpu_seconds = rt.make_metric(METRIC.MODEL_GPU_SECONDS)
        if self.snapshots and any(g.gpm is not None for g in sampler.gpus):
            try:
                sampler.pool.prefill(_PREFILL)
            except Exception:
                sampler.count_error("nvmlGpmSampleAlloc")

    # ---- request path --------------------------------------------------------------------

    def on_stage_start(self, stage: Any) -> None:
        if stage.name != SPAN.MODEL:
            return
        cuda_index: int | None = None
        start_event: Any = None
        torch = sys.modules.get("torch")  # never import torch here: only use it if the app did
        cuda = getattr(torch, "cuda", None)  # None too while torch is still being imported
        if cuda is not None and cuda.is_initialized():
            cuda_index = cuda.current_device()
            if self.cuda_events:
                start_event = cuda.Event(enable_timing=True)
                start_event.record()
        gpu = self.sampler.nvml_index(cuda_index)
        snapshot = self._snapshot(gpu, None)
        if stage.extras is None:
            stage.extras = {}
        stage.extras[_KEY] = _StageGpu(gpu, start_event, snapshot)

    def on_stage_end(self, stage: Any) -> None:
        state = stage.extras.get(_KEY) if stage.extras else None
        if state is None:
            return
        if state.start_event is not None:
            state.end_event = sys.modules["torch"].cuda.Event(enable_timing=True)
            state.end_event.record()
        if state.snapshot is not None and self._snapshot(state.gpu, state.snapshot) is None:
            state.snapshot = None

    def _snapshot(self, gpu: int | None, snapshot: _Snapshot | None) -> _Snapshot | None:
        """Take the start (``snapshot`` None) or end GPM sample. None when off or failed."""
        if not self.snapshots or gpu is None or self.sampler.closed:
            return None
        state = self.sampler.gpu(gpu)
        if state is None or state.gpm is None or not state.up:
            return None
        snap = snapshot if snapshot is not None else _Snapshot(self.sampler.pool)
        try:
            sample = self.sampler.pool.acquire()
            if sample is None:
                snap.release()
                return None  # too many stages in flight: the sampler window will do
            if snapshot is None:
                snap.start = sample
            else:
                snap.end = sample
            self.sampler.nvml.nvmlGpmSampleGet(state.handle, sample)
        except Exception:
            snap.release()
            self.sampler.count_error("nvmlGpmSampleGet")
            self._snapshot_failures += 1
            if self._snapshot_failures >= _SNAPSHOT_FAILURES_BEFORE_OFF:
                self.snapshots = False  # the sampler window still gives counters
            return None
        return snap

    # ---- background worker ---------------------------------------------------------------

    def enrich(self, stage: Any, attributes: dict[str, Any]) -> None:
        state = stage.extras.get(_KEY) if stage.extras else None
        if state is None:
            return
        wall_ns = stage.end_ns - stage.start_ns
        gpu = self.sampler.gpu(state.gpu)
        if gpu is not None and gpu.uuid:
            attributes[ATTR.GPU_UUID] = gpu.uuid
        delta = self._delta(state, wall_ns)
        window = self.sampler.window(state.gpu, stage.start_ns, stage.end_ns) if state.gpu is not None else None
        counters: dict[str, float] = {}
        if window:
            counters.update(window)
        if delta:
            counters.update({k: v for k, v in delta.items() if k in _RATIO_KEYS})
        if counters:
            attributes[ATTR.GPU_COUNTER_SOURCE] = "gpm_delta" if delta else "sampler_window"
            for key, value in counters.items():
                attributes[ATTR.GPU_PREFIX + key] = value
        fresh = state.start_event is not None
        busy = self._busy_seconds(state) if fresh else state.busy
        state.busy = busy
        if busy is not None:
            attributes[ATTR.GPU_BUSY_SECONDS] = busy
            attributes[ATTR.GPU_WALL_SECONDS] = wall_ns / 1e9
        model = str(attributes.get(ATTR.MODEL_NAME) or UNKNOWN)
        self._gpu_seconds(gpu, model, busy, wall_ns, counters.get("utilization"), attributes)
        ex = exemplar_labels((stage.trace_id, stage.span_id)) if self.exemplars and stage.sampled else None
        if busy is not None and fresh and self.busy_hist is not None:  # once per batch
            self.busy_hist.labels(model, stage.name).observe(busy, ex)
        sm_active = counters.get("sm_active")
        if sm_active is not None and self.sm_hist is not None:
            self.sm_hist.labels(model, stage.name).observe(sm_active, ex)

    def _gpu_seconds(
        self,
        gpu: Any,
        model: str,
        busy: float | None,
        wall_ns: int,
        utilization: float | None,
        attributes: dict[str, Any],
    ) -> None:
        """This request's GPU time in the stage: its span attributes and the per-model counter."""
        if gpu is None:
            return
        size = attributes.get(ATTR.BATCH_SIZE)
        share = int(size) if isinstance(size, int) and size > 1 else 1
        if busy is not None:
            seconds = busy / share
            source = GPU_SECONDS_BATCH_SHARE if share > 1 else GPU_SECONDS_MEASURED
        elif utilization is not None:
            # No CUDA events (torch not on CUDA here, or events off): the GPU was busy this share
            # of the stage's time. Other processes' kernels are not ours: when NVML gives this
            # process's own SM share (over the last slow interval), the smaller one counts. A
            # share of 0 is stale (idle then, running a stage now): the device's figure stands.
            own = gpu.slow.get(METRIC.GPU_PROCESS_SM_UTILIZATION)
            if own:
                utilization = min(utilization, own)
            seconds = wall_ns / 1e9 * utilization / share
            source = GPU_SECONDS_ESTIMATED
        else:
            return
        attributes[ATTR.GPU_SECONDS] = seconds
        attributes[ATTR.GPU_SECONDS_SOURCE] = source
        if self.gpu_seconds is not None and seconds > 0:
            self.gpu_seconds.labels(model, gpu.label, gpu.uuid).inc(seconds)

    def _delta(self, state: _StageGpu, wall_ns: int) -> dict[str, float] | None:
        snap = state.snapshot
        if snap is None:
            return None
        state.snapshot = None
        try:
            if snap.start is None or snap.end is None or wall_ns < MIN_INTERVAL_NS:
                return None  # too short for GPM: the sampler window instead
            if self.sampler.closed:
                return None
            try:
                return metrics_between(self.sampler.nvml, snap.start, snap.end) or None
            except Exception:
                self.sampler.count_error("nvmlGpmMetricsGet")
                return None
        finally:
            snap.release()

    @staticmethod
    def _busy_seconds(state: _StageGpu) -> float | None:
        """GPU time between the stage's two CUDA events; waits (bounded) for the last kernel."""
        start, end = state.start_event, state.end_event
        state.start_event = state.end_event = None
        if start is None or end is None:
            return None
        deadline = time.monotonic() + _CUDA_WAIT_S
        while not end.query():
            if time.monotonic() > deadline:
                return None  # a kernel still running after 1 s: don't hold up the worker
            time.sleep(0.001)
        end.synchronize()  # returns at once now; makes elapsed_time valid
        return float(start.elapsed_time(end)) / 1000.0  # ms -> s
