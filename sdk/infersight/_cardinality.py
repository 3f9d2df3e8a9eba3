"""Bound label values that come from traffic (routes, model names), so a flood can't explode
the series count. Values past the limit collapse into ``other`` and the overflow is counted."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .conventions import OVERFLOW_LABEL_VALUE

__all__ = ["LabelLimiter"]


class LabelLimiter:
    def __init__(self, limit: int, on_overflow: Callable[[str], None] | None = None) -> None:
        self._limit = limit
        self._seen: dict[str, set[str]] = {}
        self._on_overflow = on_overflow
        self._lock = threading.Lock()

    def bound(self, label: str, value: str) -> str:
        seen = self._seen.get(label)
        if seen is not None and value in seen:
            return value
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if value in seen or len(seen) < self._limit:
                seen.add(value)
                return value
        if self._on_overflow is not None:
            self._on_overflow(label)
        return OVERFLOW_LABEL_VALUE

    def preload(self, label: str, value: str) -> None:
        """Configured values (models from the config) always keep their own series."""
        with self._lock:
            self._seen.setdefault(label, set()).add(value)
