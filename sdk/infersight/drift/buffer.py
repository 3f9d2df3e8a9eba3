"""Per-model sample buffers: the request path only appends a raw sample to a bounded deque;
the background thread drains it into feature rows kept in a window of the most recent ones."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator

from .features import RawSample, Row, Schema

__all__ = ["SampleBuffer"]


class SampleBuffer:
    """One model's samples. ``pending`` and ``window`` are both bounded, so memory is too:
    when the background thread falls behind, the oldest raw samples are dropped, not queued."""

    def __init__(self, model: str, window: int, pending: int) -> None:
        self.model = model
        self.schema = Schema()
        self.pending: deque[RawSample] = deque(maxlen=pending)
        self.window: deque[Row] = deque(maxlen=window)
        self._seq = itertools.count(1)
        # Written by request threads (atomic attribute store), read by the background thread.
        self.last_seq = 0
        self.counted = 0  # captures already added to the counter metric
        self.rows_since_run = 0
        self.tokenizer_seen = False

    def add(self, sample: RawSample) -> None:
        """Request path: two C-level operations, no lock (deque.append is thread-safe)."""
        self.pending.append(sample)
        self.last_seq = next(self._seq)

    def drain(self) -> Iterator[RawSample]:
        pending = self.pending
        while True:
            try:
                yield pending.popleft()
            except IndexError:
                return

    def take_captured(self) -> int:
        """Captures since the last call. ``last_seq`` may briefly lag a racing writer; it
        only ever moves forward here."""
        seen = self.last_seq
        if seen <= self.counted:
            return 0
        new, self.counted = seen - self.counted, seen
        return new

    def extend(self, rows: list[Row]) -> None:
        self.window.extend(rows)
        self.rows_since_run += len(rows)

    def clear(self) -> None:
        self.pending.clear()
        self.window.clear()
        self.rows_since_run = 0
