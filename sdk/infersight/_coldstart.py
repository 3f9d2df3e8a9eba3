"""A cold start taken apart: process start, imports, model load (files read, moved to the device,
warm-up calls) and the first request, as one span tree and a gauge per phase.

The loading thread marks the load and its parts (``begin_load``/``part``/``end_load``, from the
``transformers`` instrumentation or ``infersight.record_model_load``); nothing here runs on the
request path. The worker hands each request record of a model with a load pending to
``observe``: pipeline calls outside any request are the warm-up, the first real request ends
the cold start, and the tree and gauges are made then, on the worker.

The process's start comes from ``/proc/self/stat`` (its start in clock ticks since boot) against
``/proc/uptime`` (10 ms resolution, no psutil); elsewhere the tree starts at infersight's import.
Loads are rare, so a lock guards the pending ones.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._records import RequestRecord, new_span_id, new_trace_id, now_ns
from .conventions import (
    ATTR,
    COLD_FIRST_REQUEST,
    COLD_IMPORTS,
    COLD_MODEL_LOAD,
    COLD_PROCESS_START,
    COLD_TOTAL,
    COLD_WARM_UP,
    SPAN,
)

if TYPE_CHECKING:
    from ._spans import SpanEmitter

__all__ = [
    "IMPORTED_NS",
    "ColdStarts",
    "Load",
    "Phase",
    "emit",
    "now_ns",
    "process_started_ns",
    "seconds_by_phase",
    "tracker",
]

IMPORTED_NS = now_ns()  # infersight's first import, on the perf clock the records use


def process_started_ns() -> int | None:
    """When this process started, on the perf clock; None without ``/proc``."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            stat = f.read()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime_s = float(f.read().split()[0])
        now = now_ns()
        # Field 22 (starttime); fields after the command name, which may hold spaces, start at 3.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        age_s = uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return now - int(age_s * 1e9) if age_s >= 0 else None


@dataclass
class Load:
    """One model load: its interval, and its parts ``(phase, start_ns, end_ns)``."""

    start_ns: int
    end_ns: int = 0
    parts: list[tuple[str, int, int]] = field(default_factory=list)
    warm_up: list[tuple[int, int]] = field(default_factory=list)
    process: bool = False  # the first load since infersight started: process start and imports too


@dataclass
class Phase:
    name: str
    start_ns: int
    end_ns: int
    parent: str | None  # the phase it nests in; None: the root's child


class ColdStarts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pending: dict[str, Load] = {}
        self._process_reported = False
        self.process_started_ns = process_started_ns()

    @property
    def pending(self) -> bool:
        return bool(self._pending)  # read by the worker per request: one truthiness check

    def restart(self) -> None:
        """infersight started (again): the next load reports the process's start and imports."""
        with self._lock:
            self._process_reported = False
            self._pending.clear()

    def begin_load(self) -> Load | None:
        """On the loading thread; None inside another load (a pipeline building a pipeline)."""
        if getattr(self._local, "load", None) is not None:
            return None
        load = self._local.load = Load(now_ns())
        return load

    def loading(self) -> bool:
        return getattr(self._local, "load", None) is not None

    def part(self, phase: str, start_ns: int, end_ns: int) -> None:
        """A part of the load running on this thread (reading files, moving to the device)."""
        load: Load | None = getattr(self._local, "load", None)
        if load is not None:
            load.parts.append((phase, start_ns, end_ns))

    def end_load(self, load: Load | None, model: str | None) -> None:
        if load is None:
            return
        self._local.load = None
        if model:
            self.loaded(model, load)

    def loaded(self, model: str, load: Load) -> None:
        """``load`` finished: the cold start of ``model`` waits for its first request."""
        load.end_ns = load.end_ns or now_ns()
        with self._lock:
            if not self._process_reported:
                load.process = True
                self._process_reported = True
            self._pending[model] = load

    def observe(self, rec: RequestRecord, model: str) -> list[Phase] | None:
        """The worker's view of a finished request: the phases once the cold start is complete."""
        with self._lock:
            load = self._pending.get(model)
            if load is None or rec.end_ns < load.end_ns:
                return None
            if rec.endpoint == SPAN.PIPELINE:  # the pipeline called outside any request: warm-up
                load.warm_up.append((rec.start_ns, rec.end_ns))
                return None
            del self._pending[model]
        return self._phases(load, rec)

    def _phases(self, load: Load, rec: RequestRecord) -> list[Phase]:
        phases: list[Phase] = []
        begin = load.start_ns
        if load.process:
            imported = IMPORTED_NS
            started = self.process_started_ns
            if started is not None and started < imported:
                phases.append(Phase(COLD_PROCESS_START, started, imported, None))
                begin = started
            else:
                begin = imported
            if imported < load.start_ns:
                phases.append(Phase(COLD_IMPORTS, imported, load.start_ns, None))
        load_end = max([load.end_ns, *(end for _, end in load.warm_up)])
        phases.append(Phase(COLD_MODEL_LOAD, load.start_ns, load_end, None))
        phases += [Phase(name, start, end, COLD_MODEL_LOAD) for name, start, end in load.parts]
        phases += [Phase(COLD_WARM_UP, start, end, COLD_MODEL_LOAD) for start, end in load.warm_up]
        phases.append(Phase(COLD_FIRST_REQUEST, rec.start_ns, rec.end_ns, None))
        phases.insert(0, Phase(COLD_TOTAL, min(begin, rec.start_ns), rec.end_ns, ""))
        return phases


def seconds_by_phase(phases: list[Phase]) -> dict[str, float]:
    """The gauges' values: each phase's seconds, a phase that ran several times summed."""
    out: dict[str, float] = {}
    for phase in phases:
        out[phase.name] = out.get(phase.name, 0.0) + (phase.end_ns - phase.start_ns) / 1e9
    return out


def emit(emitter: SpanEmitter, phases: list[Phase], model: str, rec: RequestRecord) -> None:
    """One trace: ``cold_start`` with a child per phase, the load's parts under ``model_load``."""
    from opentelemetry.trace import SpanContext, TraceFlags

    trace_id = new_trace_id()
    ids: dict[str, SpanContext] = {}

    def ctx() -> SpanContext:
        return SpanContext(trace_id, new_span_id(), is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    for phase in phases:  # the root first, then model_load before its parts
        own = ctx()
        if phase.parent == "":
            name, parent = SPAN.COLD_START, None
        else:
            name, parent = phase.name, ids.get(phase.parent or COLD_TOTAL)
        ids.setdefault(phase.name, own)
        attrs: dict[str, Any] = {ATTR.MODEL_NAME: model, ATTR.COLD_START_PHASE: phase.name}
        if phase.name == COLD_FIRST_REQUEST and rec.sampled:
            attrs[ATTR.COLD_START_REQUEST_TRACE] = f"{rec.trace_id:032x}"
        emitter.emit_internal(name, own, parent, attrs, phase.start_ns, phase.end_ns)


tracker = ColdStarts()
