"""SDK-internal errors: counted, logged once per component, swallowed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("infersight")

_lock = threading.Lock()
_logged: set[str] = set()
_counts: dict[str, int] = {}
# Set by the runtime once metrics exist: called with the component name.
on_error: Callable[[str], Any] | None = None


def report(component: str, exc: BaseException | None = None) -> None:
    """Record an internal error. Never raises."""
    try:
        with _lock:
            _counts[component] = _counts.get(component, 0) + 1
            first = component not in _logged
            _logged.add(component)
        if first:
            logger.warning(
                "infersight: internal error in %s; the request goes on. Further errors here are "
                "counted in infersight_sdk_errors_total{component=%r}, not logged.",
                component, component, exc_info=exc,
            )  # fmt: skip
        if on_error is not None:
            on_error(component)
    except Exception:
        pass


def counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def reset() -> None:
    with _lock:
        _logged.clear()
        _counts.clear()
