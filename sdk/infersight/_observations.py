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

__all__ = ["ExemplarIds", "ObservationBatch", "Series", "exemplar_labels"]

ExemplarIds = tuple[int, int]  # (trace id, span id)


def exemplar_labels(ids: ExemplarIds) -> dict[str, str]:
    return {"trace_id": f"{ids[0]:032x}", "span_id": f"{ids[1]:016x}"}


class _Histogram:
    """One series' pending sums. ``add`` is the worker's whole cost of an observation: the
    metrics' request plans hold these, so a request finds its series without a lookup."""

    __slots__ = ("bounds", "buckets", "child", "counts", "dirty", "exemplars", "total", "total_value", "touched")

    def __init__(self, child: Any, bounds: list[float], total_value: Any, buckets: Any, touched: list[Any]) -> None:
        self.child = child
        self.bounds = bounds
        self.total_value = total_value  # the child's sum value and per-bucket values
        self.buckets = buckets
        self.touched = touched  # the batch's list of series to write at the next flush
        self.total = 0.0
        self.counts = [0] * len(bounds)
        self.exemplars: list[tuple[ExemplarIds, float] | None] = [None] * len(bounds)
        self.dirty = False

    def add(self, amount: float, exemplar: ExemplarIds | None) -> None:
        if amount != amount:  # NaN: prometheus_client counts it in no bucket
            self.child.observe(amount, exemplar_labels(exemplar) if exemplar else None)
            return
        if not self.dirty:
            self.dirty = True
            self.touched.append(self)
        i = bisect_left(self.bounds, amount)  # the first bucket with amount <= bound
        self.total += amount
        self.counts[i] += 1
        if exemplar is not None:
            self.exemplars[i] = (exemplar, amount)

    def forget(self) -> None:
        self.dirty, self.total = False, 0.0
        self.counts = [0] * len(self.bounds)
        self.exemplars = [None] * len(self.bounds)

    def write(self, now: float) -> None:
        self.dirty = False
        self.total_value.inc(self.total)
        self.total = 0.0
        counts, exemplars, buckets = self.counts, self.exemplars, self.buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
                ex = exemplars[i]
                if ex is not None:
                    buckets[i].set_exemplar(Exemplar(exemplar_labels(ex[0]), ex[1], now))
                    exemplars[i] = None


class _Direct:
    """A series whose parts moved (another prometheus_client): observed per call, as before."""

    __slots__ = ("child",)

    def __init__(self, child: Any) -> None:
        self.child = child

    def add(self, amount: float, exemplar: ExemplarIds | None) -> None:
        self.child.observe(amount, exemplar_labels(exemplar) if exemplar else None)


class _Counter:
    __slots__ = ("amount", "child", "dirty", "ids", "touched")

    def __init__(self, child: Any, touched: list[Any]) -> None:
        self.child = child
        self.touched = touched
        self.amount = 0.0
        self.ids: ExemplarIds | None = None
        self.dirty = False

    def add(self, exemplar: ExemplarIds | None, amount: float = 1.0) -> None:
        if not self.dirty:
            self.dirty = True
            self.touched.append(self)
        self.amount += amount
        if exemplar is not None:
            self.ids = exemplar

    def forget(self) -> None:
        self.dirty, self.amount, self.ids = False, 0.0, None

    def write(self, now: float) -> None:
        self.dirty = False
        amount, ids = self.amount, self.ids
        self.amount, self.ids = 0.0, None
        self.child.inc(amount, exemplar_labels(ids) if ids else None)


Series = _Histogram | _Direct


class ObservationBatch:
    """Not thread-safe: one worker drain at a time observes, counts and flushes.

    A series' pending sums live as long as the series (held by its child's id): a drain of a
    few records would otherwise pay for finding a child's parts and building its entry again,
    which cost more than the observations themselves. ``flush`` writes the touched ones.
    """

    def __init__(self) -> None:
        self._histograms: dict[int, tuple[Any, Series]] = {}  # id(child) -> (child, pending)
        self._counters: dict[int, tuple[Any, _Counter]] = {}
        self._touched: list[Any] = []  # the same list for the batch's life: series hold it

    def histogram(self, child: Any) -> Series:
        """The pending sums of a histogram child, to ``add`` observations to."""
        entry = self._histograms.get(id(child))
        if entry is None:
            parts = _compat.histogram_parts(child)
            if parts is None:
                pending: Series = _Direct(child)
            else:
                pending = _Histogram(child, list(parts[0]), parts[1], parts[2], self._touched)
            entry = self._histograms[id(child)] = (child, pending)
        return entry[1]

    def counter(self, child: Any) -> _Counter:
        entry = self._counters.get(id(child))
        if entry is None:
            entry = self._counters[id(child)] = (child, _Counter(child, self._touched))
        return entry[1]

    def observe(self, child: Any, amount: float, exemplar: ExemplarIds | None) -> None:
        self.histogram(child).add(amount, exemplar)

    def count(self, child: Any, exemplar: ExemplarIds | None, amount: float = 1.0) -> None:
        self.counter(child).add(exemplar, amount)

    def forget_pending(self) -> None:
        """Drop what is summed but not yet written: in a forked child it is the parent's, which
        writes it itself (the child writing it too would count it twice, once per fork)."""
        for series in self._touched:
            series.forget()
        self._touched.clear()

    def flush(self) -> None:
        if self._touched:
            touched = self._touched[:]
            self._touched.clear()
            now = time.time()
            for series in touched:
                series.write(now)
