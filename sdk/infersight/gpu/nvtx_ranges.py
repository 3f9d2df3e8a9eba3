"""NVTX ranges around every stage, named ``"<stage> <trace id>"``, for Nsight Systems timelines.

NVTX push/pop ranges form a stack per OS thread. A stage may end out of order (interleaved
coroutines on one event loop) or on another thread (a generator finished elsewhere); popping
then would close someone else's range. So each thread keeps its own stack of the ranges it
pushed: a stage that ends marks its entry done, and the thread pops while its top is done.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["NvtxRanges"]

_KEY = "nvtx"  # in StageRecord.extras
_DOMAIN = "infersight"


class _Entry:
    __slots__ = ("done", "stack")

    def __init__(self, stack: list[_Entry]) -> None:
        self.stack = stack
        self.done = False


class NvtxRanges:
    """StageHook. Build with ``NvtxRanges.create()``, which is None when ``nvtx`` won't import."""

    def __init__(self, nvtx: Any) -> None:
        self._nvtx = nvtx
        self._local = threading.local()

    @classmethod
    def create(cls) -> NvtxRanges | None:
        try:
            import nvtx
        except Exception:
            return None
        return cls(nvtx)

    def _stack(self) -> list[_Entry]:
        try:
            stack: list[_Entry] = self._local.stack
        except AttributeError:
            stack = self._local.stack = []
        return stack

    def on_stage_start(self, stage: Any) -> None:
        stack = self._stack()
        self._nvtx.push_range(f"{stage.name} {stage.trace_id:032x}", domain=_DOMAIN)
        entry = _Entry(stack)
        stack.append(entry)
        if stage.extras is None:
            stage.extras = {}
        stage.extras[_KEY] = entry

    def on_stage_end(self, stage: Any) -> None:
        entry = stage.extras.get(_KEY) if stage.extras else None
        if entry is None:
            return
        entry.done = True
        stack = self._stack()
        if entry.stack is not stack:
            return  # ended on another thread: its own thread pops it when it next can
        while stack and stack[-1].done:
            stack.pop()
            self._nvtx.pop_range(domain=_DOMAIN)

    def enrich(self, stage: Any, attributes: dict[str, Any]) -> None:
        return None

    def depth(self) -> int:
        """Ranges this thread has open (for tests)."""
        return len(self._stack())
