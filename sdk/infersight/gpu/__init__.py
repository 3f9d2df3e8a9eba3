"""GPU telemetry: NVML device metrics, GPM kernel counters, GPU counters and CUDA event timing
on ``model`` stage spans, NVTX ranges. ``infersight.init`` calls ``setup_gpu`` unless
``gpu="off"``; see docs/gpu.md.
"""

from __future__ import annotations

import logging
from typing import Any

from . import _nvml
from .collector import GpuCollector, UnavailableCollector
from .nvtx_ranges import NvtxRanges
from .sampler import Sampler
from .spans import SpanCounters

__all__ = ["GpuCollector", "NvtxRanges", "Sampler", "SpanCounters", "setup_gpu"]

logger = logging.getLogger("infersight")


def setup_gpu(rt: Any, nvml: _nvml.NVML | None = None) -> Sampler | None:
    """Start the sampler and add the stage hooks to ``rt`` (a Runtime). Never raises.

    ``nvml`` replaces the NVML backend (default: what ``_nvml.get()`` gives, the real pynvml
    unless a test called ``_nvml.use(fake)``). Returns the running sampler, or None without GPU.
    """
    cfg = rt.config
    if cfg.nvtx:
        ranges = NvtxRanges.create()
        if ranges is not None:
            rt.add_hook(ranges)
        else:
            logger.warning("infersight: INFERSIGHT_NVTX is on but the nvtx package won't import.")
    if cfg.gpu == "off":
        return None
    try:
        backend = nvml if nvml is not None else _nvml.get()
    except ImportError as exc:
        level = logging.WARNING if cfg.gpu == "on" else logging.INFO
        logger.log(level, "infersight: GPU metrics are off: nvidia-ml-py is not installed (%s).", exc)
        _unavailable(rt, {"init": 1})
        return None
    slow_every = max(1, round(cfg.gpu_slow_interval_s / cfg.gpu_interval_s))
    sampler = Sampler(
        backend, cfg.gpu_interval_s, cfg.gpu, process_memory_every=slow_every, hourly_cost=cfg.gpu_hourly_cost
    )
    if not sampler.start():
        _unavailable(rt, sampler.errors())
        return None
    try:
        if rt.metrics is not None:  # metrics off: the sampler still serves span counters
            rt.register(GpuCollector(sampler))
            rt.exposition.multiprocess_collectors.append(GpuCollector(sampler))
        hook = SpanCounters(sampler, rt)
    except Exception:
        sampler.stop()  # no thread left behind; the runtime counts the error
        raise
    rt.add_hook(hook)
    rt.gpu = sampler
    return sampler


def _unavailable(rt: Any, errors: dict[str, int]) -> None:
    """GPU asked for (``on``) but unreadable: export that, so ``GPUSamplerDown`` can fire.
    With ``auto`` a machine without a GPU is normal and exports nothing."""
    if rt.config.gpu != "on" or rt.metrics is None:
        return
    rt.register(UnavailableCollector(errors))
    rt.exposition.multiprocess_collectors.append(UnavailableCollector(errors))
