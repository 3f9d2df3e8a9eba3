"""infersight: traces, Prometheus latency histograms with exemplars, GPU counters and drift for
ML inference servers.

The one line: ``import infersight.auto``. For custom code::

    import infersight

    infersight.init(service="ranker", models={"ranker": {"version": "3", "slo_p99_seconds": 0.1}})

    @infersight.preprocess
    def tokenize(text): ...

    with infersight.request(model="ranker"):
        with infersight.model():
            ...
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from . import (
    _coldstart,  # first: its import time is where a cold start's "imports" phase begins
    _forksafe,  # noqa: F401  (fork handlers, registered before _runtime's)
)
from ._records import RequestRecord, current_request
from ._records import now_ns as _now_ns
from ._runtime import get_runtime, shutdown
from ._startup import init as _init
from ._version import __version__
from .batching import Batch, batch, record_queue_wait
from .config import Config, ConfigError, ModelConfig
from .stages import (
    Request,
    Stage,
    current_request_handle,
    model,
    postprocess,
    preprocess,
    request,
    stage,
)

__all__ = [
    "Batch",
    "Config",
    "ConfigError",
    "ModelConfig",
    "Request",
    "RequestRecord",
    "Stage",
    "__version__",
    "batch",
    "current_request_handle",
    "get_runtime",
    "init",
    "model",
    "postprocess",
    "preprocess",
    "record_model_load",
    "record_queue_wait",
    "request",
    "set_model",
    "shutdown",
    "stage",
    "start_metrics_server",
]


def init(
    config: Config | None = None,
    *,
    registry: CollectorRegistry | None = REGISTRY,
    tracer_provider: Any = None,
    **settings: Any,
) -> None:
    """Start infersight. Settings are ``Config`` fields; unset ones come from the environment.

    ``infersight.init(service="api", models={"sst2": {"version": "2", "slo_p99_seconds": 0.1}},
    metrics_port=9464, exemplars=True)``. Raises ``ConfigError`` naming a bad setting.
    Calling it again with other settings restarts infersight with them.
    """
    _init(config, registry=registry, tracer_provider=tracer_provider, **settings)


def set_model(name: str, version: str | None = None) -> None:
    """Label the current request with a model (the first name set wins)."""
    rec = current_request.get()
    if rec is not None:
        rec.set_model(name, version)


def record_model_load(model: str, seconds: float, version: str | None = None) -> None:
    """Record how long a model took to load (cold start), for models not loaded by a pipeline.
    Its first request then ends the cold start: ``infersight_cold_start_seconds`` and a trace."""
    rt = get_runtime()
    if rt is not None and rt.metrics is not None:
        rt.metrics.record_model_load(model, version, seconds)
    if rt is not None:
        end = _now_ns()
        _coldstart.tracker.loaded(model, _coldstart.Load(end - int(seconds * 1e9), end))


def start_metrics_server(port: int | None = None, addr: str | None = None) -> int:
    """Serve /metrics on its own port (for servers that aren't Flask). Returns the bound port."""
    rt = get_runtime()
    if rt is None:
        raise RuntimeError("infersight.init() first")
    return int(rt.start_metrics_server(port, addr).port)
