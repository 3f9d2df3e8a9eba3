"""Histogram and counter observations summed per drain, written to prometheus_client once.

``Histogram.observe`` takes three locks and builds an exemplar per call, and the worker makes
about six observations per request. Summed here instead (a bisect and a few list writes), each
touched child is written once per drain: the same counts and sums, and each bucket's exemplar is
the last one observed in it, as prometheus_client would have left it. Exemplar ids stay integers
until then, so only the exemplars that survive are formatted.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

from prometheus_client.samples import Exemplar

from . import _compat

__all__ = ["ExemplarIds", "ObservationBatch", "exemplar_labels"]

ExemplarIds = tuple[int, int]  # (trace id, span id)


def exemplar_labels(ids: ExemplarIds) -> dict[str, str]:
    return {"trace_id": f"{ids[0]:032x}", "span_id": f"{ids[1]:016x}"}


class _Histogram:
    __slots__ = ("bounds", "counts", "exemplars", "total")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.total = 0.0
        self.counts = [0] * len(bounds)
        self.exemplars: list[tuple[ExemplarIds, float] | None] = [None] * len(bounds)


class ObservationBatch:
    """Not thread-safe: one worker drain at a time calls ``observe``, ``count`` and ``flush``."""

    def __init__(self) -> None:
        self._histograms: dict[int, tuple[Any, Any, _Histogram]] = {}  # id -> (child, its parts, pending)
        self._counters: dict[int, list[Any]] = {}  # id -> [child, amount, last exemplar ids]

    def observe(self, child: Any, amount: float, exemplar: ExemplarIds | None) -> None:
        entry = self._histograms.get(id(child))
        if entry is None or amount != amount:  # NaN: prometheus_client counts it in no bucket
            parts = _compat.histogram_parts(child) if amount == amount else None
            if parts is None:
                child.observe(amount, exemplar_labels(exemplar) if exemplar else None)
                return
            entry = self._histograms[id(child)] = (child, parts, _Histogram(list(parts[0])))
        pending = entry[2]
        i = bisect_left(pending.bounds, amount)  # the first bucket with amount <= bound
        pending.total += amount
        pending.counts[i] += 1
        if exemplar is not None:
            pending.exemplars[i] = (exemplar, amount)

    def count(self, child: Any, exemplar: ExemplarIds | None, amount: float = 1.0) -> None:
        entry = self._counters.get(id(child))
        if entry is None:
            entry = self._counters[id(child)] = [child, 0.0, None]
        entry[1] += amount
        if exemplar is not None:
            entry[2] = exemplar

    def flush(self) -> None:
        if self._histograms:
            histograms, self._histograms = self._histograms, {}
            now = time.time()
            for _child, (_bounds, total, buckets), h in histograms.values():
                total.inc(h.total)
                for i, n in enumerate(h.counts):
                    if n:
                        buckets[i].inc(n)
                        ex = h.exemplars[i]
                        if ex is not None:
                            buckets[i].set_exemplar(Exemplar(exemplar_labels(ex[0]), ex[1], now))
        if self._counters:
            counters, self._counters = self._counters, {}
            for child, amount, ids in counters.values():
                child.inc(amount, exemplar_labels(ids) if ids else None)
