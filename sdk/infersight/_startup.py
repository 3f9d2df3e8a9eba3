"""``init`` with the optional parts: the GPU sampler, NVTX ranges and the drift monitor.

Kept apart from ``_runtime`` so that the runtime imports none of its parts: the parts' modules
(``drift`` looks up the running monitor) can then import the runtime without a cycle.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from . import _errors, _runtime
from .config import Config

__all__ = ["init"]

logger = logging.getLogger("infersight")


def init(
    config: Config | None = None,
    *,
    registry: CollectorRegistry | None = REGISTRY,
    tracer_provider: Any = None,
    **overrides: Any,
) -> _runtime.Runtime:
    """``_runtime.init`` with the optional parts started. See ``infersight.init``."""
    return _runtime.init(
        config, registry=registry, tracer_provider=tracer_provider, start_parts=start_optional_parts, **overrides
    )


def start_optional_parts(rt: _runtime.Runtime) -> None:
    """GPU sampler, NVTX and drift are optional: a missing extra or a failure disables just it."""
    cfg = rt.config
    if cfg.gpu != "off":
        try:
            from .gpu import setup_gpu

            setup_gpu(rt)
        except ImportError as exc:
            if cfg.gpu == "on":
                logger.warning("infersight: INFERSIGHT_GPU=on but GPU support is unavailable: %s", exc)
        except Exception as exc:
            _errors.report("gpu", exc)
    if cfg.drift:
        try:
            from .drift import setup_drift

            setup_drift(rt)
        except Exception as exc:
            _errors.report("drift", exc)
