"""The requests in flight, and a way for background work to step aside while there are any.

The worker's metrics and spans run on the request threads' GIL. Done in between requests they
cost a request nothing; done while one is running they stretch it: a thread that wants the GIL
waits for the holder to release it, for up to the 5 ms switch interval. So the worker drains
while no request is in flight, and when one starts it releases the GIL and does not ask for it
back until the last request in flight finishes, up to a deadline that bounds how long records
wait (a server that is never idle gets its records drained at the deadline).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RequestGate"]


class RequestGate:
    def __init__(self) -> None:
        self.serving: set[Any] = set()  # also read at scrape time by the in-flight gauge
        self.waiters = 0
        self._idle = threading.Event()
        self._lock = threading.Lock()  # guards waiters; background threads only

    def after_fork_in_child(self) -> None:
        # The parent's requests never finish here; its threads are gone.
        self.serving.clear()
        self.waiters = 0
        self._idle = threading.Event()
        self._lock = threading.Lock()

    # Request path: a set add, a set discard, an int read.
    def started(self, rec: Any) -> None:
        self.serving.add(rec)

    def finished(self, rec: Any) -> None:
        serving = self.serving
        serving.discard(rec)
        if self.waiters and not serving:
            self._idle.set()

    # Background threads.
    def step_aside(self, max_wait_s: float) -> None:
        """Release the GIL; while requests are in flight, take it back only once none are or
        after ``max_wait_s``. With none in flight, only let other threads run (sleep(0))."""
        if not self.serving or max_wait_s <= 0:
            time.sleep(0)
            return
        with self._lock:
            self.waiters += 1
            self._idle.clear()
        try:
            if self.serving:  # the last request may have finished since the check above
                self._idle.wait(max_wait_s)
        finally:
            with self._lock:
                self.waiters -= 1

    def wait_for_idle(self, max_wait_s: float, give_up: Callable[[], bool] | None = None) -> bool:
        """Step aside until no request is in flight: True then, False once ``max_wait_s`` has
        passed or ``give_up()`` says so first."""
        deadline = time.perf_counter() + max_wait_s
        while self.serving:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or (give_up is not None and give_up()):
                return False
            self.step_aside(remaining)
        return True
