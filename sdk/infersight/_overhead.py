"""infersight's own CPU, measured and held to a budget.

The worker (``_pipeline``) and the span export (``_tracing.CountingExporter``) report the CPU
time of their own thread (``time.thread_time_ns``) around each drain and each export; once a
second the worker compares their sum with the whole process's CPU (``time.process_time_ns``)
and exports the share as ``infersight_overhead_cpu_ratio``. The request path's own additions
(clock reads, ids, records) are not in it: measuring them would cost as much as they do.

With ``INFERSIGHT_OVERHEAD_BUDGET`` set (say 0.03), the share of fast, successful requests whose
spans are exported (``_keep.TailKeep``) is scaled down while the share is over the budget, in
proportion to the excess, and back up by a quarter per second while it is under 80 % of it.
Errors and slow requests are kept whatever the scale, and exemplars only name kept traces (the
keep decision comes before the metrics), so none of those is ever dropped by the budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["OverheadMeter"]

_MIN_SCALE = 0.001  # never quite 0: a scale of 0 could not grow back multiplicatively
_MIN_CPU_NS = 20_000_000  # judge no window with less process CPU than this: too coarse


class OverheadMeter:
    """Sums the CPU of infersight's threads; ``tick`` turns it into the exported share."""

    def __init__(
        self,
        budget: float,
        gauge: Any | None,
        set_scale: Callable[[float], Any] | None,
        process_clock: Callable[[], int] = time.process_time_ns,
        period_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.gauge = gauge
        self.set_scale = set_scale
        self.scale = 1.0
        self.ratio: float | None = None
        self._process_clock = process_clock
        self._clock = clock
        self._period = period_s
        self._lock = threading.Lock()  # taken once per drain and once per export batch
        self._spent_ns = 0
        self._last_process = process_clock()
        self._last_tick = clock()

    def add(self, ns: int) -> None:
        """CPU one of infersight's threads spent (a drain, an export)."""
        if ns > 0:
            with self._lock:
                self._spent_ns += ns

    def maybe_tick(self) -> None:
        if self._clock() - self._last_tick >= self._period:
            self.tick()

    def tick(self) -> float | None:
        """Close the window: export the share and move the keep scale. None when the process
        used too little CPU since the last window to tell (the window stays open)."""
        self._last_tick = self._clock()
        process = self._process_clock()
        elapsed = process - self._last_process
        if elapsed < _MIN_CPU_NS:
            return None
        with self._lock:
            spent, self._spent_ns = self._spent_ns, 0
        self._last_process = process
        ratio = min(1.0, spent / elapsed)
        self.ratio = ratio
        if self.gauge is not None:
            self.gauge.set(ratio)
        if self.budget > 0 and self.set_scale is not None:
            if ratio > self.budget:
                # In proportion to the excess; part of the overhead (metrics) does not scale,
                # so later windows keep lowering it until the share fits.
                self.scale = max(_MIN_SCALE, self.scale * self.budget / ratio)
            elif ratio < 0.8 * self.budget:
                self.scale = min(1.0, self.scale * 1.25)
            self.set_scale(self.scale)
        return ratio

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._spent_ns = 0
        self._last_process = self._process_clock()
        self._last_tick = self._clock()
