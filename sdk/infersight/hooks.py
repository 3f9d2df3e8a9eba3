"""Extension points that run at stage boundaries (GPU counters, CUDA events, NVTX).

``on_stage_start``/``on_stage_end`` run on the request path: they must be cheap and make no
network or NVML call (a GPM snapshot is the one allowed exception). ``enrich`` runs on the
background worker and may add span attributes and observe metrics. infersight guards every
call: an exception is counted as an SDK error and swallowed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, Protocol, runtime_checkable

from . import _errors
from ._records import StageRecord

__all__ = ["StageHook", "call_hooks"]


@runtime_checkable
class StageHook(Protocol):
    def on_stage_start(self, stage: StageRecord) -> None: ...

    def on_stage_end(self, stage: StageRecord) -> None: ...

    def enrich(self, stage: StageRecord, attributes: dict[str, Any]) -> None: ...


def call_hooks(
    hooks: Iterable[StageHook], method: Literal["on_stage_start", "on_stage_end", "enrich"], *args: Any
) -> None:
    """Call ``method`` on every hook. One that raises is reported (infersight_sdk_errors_total,
    component ``hook.<class>``) and the others still run."""
    for hook in hooks:
        try:
            getattr(hook, method)(*args)
        except Exception as exc:
            _errors.report(f"hook.{type(hook).__name__}", exc)
