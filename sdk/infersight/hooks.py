"""Extension points that run at stage boundaries (GPU counters, CUDA events, NVTX).

``on_stage_start``/``on_stage_end`` run on the request path: they must be cheap and make no
network or NVML call (a GPM snapshot is the one allowed exception). ``enrich`` runs on the
background worker and may add span attributes and observe metrics. infersight guards every
call: an exception is counted as an SDK error and swallowed.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._records import StageRecord

__all__ = ["StageHook"]


@runtime_checkable
class StageHook(Protocol):
    def on_stage_start(self, stage: StageRecord) -> None: ...

    def on_stage_end(self, stage: StageRecord) -> None: ...

    def enrich(self, stage: StageRecord, attributes: dict[str, Any]) -> None: ...
