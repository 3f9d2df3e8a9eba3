"""The GIL probe: a thread that sleeps 5 ms and measures how late it wakes. A thread that wants
the GIL waits for the holder to drop it (every switch interval, 5 ms, for a busy thread; never,
inside a long C call that keeps it), so lateness beyond a few hundred microseconds is GIL
contention (or a CPU-starved host). Cheap enough to leave on: 200 wake-ups a second."""

from __future__ import annotations

import threading
import time
from typing import Any

from . import _errors

__all__ = ["GilProbe"]

SLEEP_S = 0.005


class GilProbe:
    def __init__(self, histogram: Any, sleep_s: float = SLEEP_S) -> None:
        self._histogram = histogram  # METRIC.GIL_WAIT, observed in seconds late
        self._sleep_s = sleep_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="infersight-gil-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        clock, sleep, sleep_s, stop = time.perf_counter, time.sleep, self._sleep_s, self._stop
        observe = self._histogram.observe
        try:
            while not stop.is_set():
                before = clock()
                sleep(sleep_s)
                observe(max(0.0, clock() - before - sleep_s))
        except Exception as exc:  # a broken metric must not end in a traceback on stderr
            _errors.report("gil_probe", exc)

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def after_fork_in_child(self) -> None:
        # Threads do not survive a fork: the child starts its own probe.
        self.start()
