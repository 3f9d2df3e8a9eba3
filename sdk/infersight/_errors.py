"""SDK-internal errors: counted, logged once per component, swallowed."""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["ERRORS", "SdkErrors", "counts", "report", "reset"]

logger = logging.getLogger("infersight")


class SdkErrors:
    """The process's SDK errors. Parts report into it whether or not a runtime is running (an
    instrumentation may fail before ``init``); the running runtime connects its
    ``infersight_sdk_errors_total`` counter with ``count_into`` and disconnects it on shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self._counts: dict[str, int] = {}
        self._counter: Any = None  # a prometheus_client Counter labelled by component

    def count_into(self, counter: Any) -> None:
        self._counter = counter

    def counting_into(self, counter: Any) -> bool:
        return self._counter is counter

    def report(self, component: str, exc: BaseException | None = None) -> None:
        """Record an internal error. Never raises."""
        try:
            with self._lock:
                self._counts[component] = self._counts.get(component, 0) + 1
                first = component not in self._logged
                self._logged.add(component)
            if first:
                logger.warning(
                    "infersight: internal error in %s; the request goes on. Further errors here are "
                    "counted in infersight_sdk_errors_total{component=%r}, not logged.",
                    component,
                    component,
                    exc_info=exc,
                )
            counter = self._counter
            if counter is not None:
                counter.labels(component).inc()
        except Exception:
            pass

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._logged.clear()
            self._counts.clear()


ERRORS = SdkErrors()
report = ERRORS.report
counts = ERRORS.counts
reset = ERRORS.reset
