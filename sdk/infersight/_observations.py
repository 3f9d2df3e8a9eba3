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
    __slots__ = ("bounds", "buckets", "counts", "dirty", "exemplars", "total", "total_value")

    def __init__(self, bounds: list[float], total_value: Any, buckets: Any) -> None:
        self.bounds = bounds
        self.total_value = total_value  # the child's sum value and per-bucket values
        self.buckets = buckets
        self.total = 0.0
        self.counts = [0] * len(bounds)
        self.exemplars: list[tuple[ExemplarIds, float] | None] = [None] * len(bounds)
        self.dirty = False


class _Counter:
    __slots__ = ("amount", "child", "dirty", "ids")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.amount = 0.0
        self.ids: ExemplarIds | None = None
        self.dirty = False


class ObservationBatch:
    """Not thread-safe: one worker drain at a time calls ``observe``, ``count`` and ``flush``.

    A series' pending sums live as long as the series (its child holds them in place): a drain
    of a few records would otherwise pay for finding a child's parts and building its entry
    again, which cost more than the observations themselves. ``flush`` writes the touched ones.
    """

    def __init__(self) -> None:
        self._histograms: dict[int, tuple[Any, _Histogram]] = {}  # id(child) -> (child, pending)
        self._counters: dict[int, tuple[Any, _Counter]] = {}
        self._touched: list[_Histogram] = []
        self._touched_counters: list[_Counter] = []

    def observe(self, child: Any, amount: float, exemplar: ExemplarIds | None) -> None:
        entry = self._histograms.get(id(child))
        if entry is None or amount != amount:  # NaN: prometheus_client counts it in no bucket
            parts = _compat.histogram_parts(child) if amount == amount else None
            if parts is None:
                child.observe(amount, exemplar_labels(exemplar) if exemplar else None)
                return
            entry = self._histograms[id(child)] = (child, _Histogram(list(parts[0]), parts[1], parts[2]))
        pending = entry[1]
        if not pending.dirty:
            pending.dirty = True
            self._touched.append(pending)
        i = bisect_left(pending.bounds, amount)  # the first bucket with amount <= bound
        pending.total += amount
        pending.counts[i] += 1
        if exemplar is not None:
            pending.exemplars[i] = (exemplar, amount)

    def count(self, child: Any, exemplar: ExemplarIds | None, amount: float = 1.0) -> None:
        entry = self._counters.get(id(child))
        if entry is None:
            entry = self._counters[id(child)] = (child, _Counter(child))
        pending = entry[1]
        if not pending.dirty:
            pending.dirty = True
            self._touched_counters.append(pending)
        pending.amount += amount
        if exemplar is not None:
            pending.ids = exemplar

    def forget_pending(self) -> None:
        """Drop what is summed but not yet written: in a forked child it is the parent's, which
        writes it itself (the child writing it too would count it twice, once per fork)."""
        for h in self._touched:
            h.dirty, h.total = False, 0.0
            h.counts = [0] * len(h.bounds)
            h.exemplars = [None] * len(h.bounds)
        for c in self._touched_counters:
            c.dirty, c.amount, c.ids = False, 0.0, None
        self._touched, self._touched_counters = [], []

    def flush(self) -> None:
        if self._touched:
            touched, self._touched = self._touched, []
            now = time.time()
            for h in touched:
                h.dirty = False
                h.total_value.inc(h.total)
                h.total = 0.0
                counts, exemplars, buckets = h.counts, h.exemplars, h.buckets
                for i, n in enumerate(counts):
                    if n:
                        buckets[i].inc(n)
                        counts[i] = 0
                        ex = exemplars[i]
                        if ex is not None:
                            buckets[i].set_exemplar(Exemplar(exemplar_labels(ex[0]), ex[1], now))
                            exemplars[i] = None
        if self._touched_counters:
            counters, self._touched_counters = self._touched_counters, []
            for c in counters:
                c.dirty = False
                amount, ids = c.amount, c.ids
                c.amount, c.ids = 0.0, None
                c.child.inc(amount, exemplar_labels(ids) if ids else None)
